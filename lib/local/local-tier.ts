import { LRUCache } from "lru-cache";

interface LocalEntry {
  readonly value: unknown;
  readonly deps: readonly string[];
}

/**
 * Hot entries kept in process memory, decoded, in front of the shared store: a hit is a Map
 * lookup. Entries are dropped when this process invalidates one of their dependencies, when
 * another process's invalidation arrives over the feed, and all at once when the feed
 * disconnects; while the feed is down, nothing is served or kept here.
 *
 * Callers of one entry share one object: treat results from this tier as read-only.
 */
export class LocalTier {
  private readonly entries: LRUCache<string, LocalEntry>;
  private readonly byDep = new Map<string, Set<string>>();
  /** Moves on every drop, so an entry read from the store before a drop is not kept after it. */
  private generation = 0;
  private live = false;

  constructor(maxBytes: number) {
    // Sizes are the serialized sizes given to set(): a decoded value's own size is not knowable.
    this.entries = new LRUCache<string, LocalEntry>({
      maxSize: maxBytes,
      // Invalidation, not the ttl, keeps entries fresh: reading the clock once per 100 ms is enough.
      ttlResolution: 100,
      dispose: (entry, key) => this.unindex(key, entry.deps),
    });
  }

  /** Marks the moment before a store read; pass it to set() with what was read. */
  mark(): number {
    return this.generation;
  }

  /** What the tier holds: entries, and their serialized bytes. */
  get size(): { entries: number; bytes: number } {
    return { entries: this.entries.size, bytes: this.entries.calculatedSize };
  }

  get(key: string): LocalEntry | undefined {
    return this.live ? this.entries.get(key) : undefined;
  }

  set(
    key: string,
    value: unknown,
    deps: readonly string[],
    bytes: number,
    ttlMs: number,
    mark: number,
  ): void {
    if (!this.live || mark !== this.generation) return;
    this.entries.set(key, { value, deps }, { size: Math.max(1, bytes), ttl: ttlMs });
    // An entry larger than the whole tier is refused; it must not be indexed either.
    if (!this.entries.has(key)) return;
    for (const dep of deps) {
      let keys = this.byDep.get(dep);
      if (!keys) this.byDep.set(dep, (keys = new Set()));
      keys.add(key);
    }
  }

  /** Drops one entry, as delete(key) does. */
  forget(key: string): void {
    this.generation++;
    this.entries.delete(key);
  }

  /** Drops every entry that depends on any of these version keys. */
  drop(deps: Iterable<string>): void {
    this.generation++;
    for (const dep of deps) {
      const keys = this.byDep.get(dep);
      if (keys) for (const key of [...keys]) this.entries.delete(key);
    }
  }

  /** The feed went down (live false) or came up (true): either way, nothing held may be trusted. */
  reset(live: boolean): void {
    this.generation++;
    this.live = live;
    this.entries.clear();
    this.byDep.clear();
  }

  private unindex(key: string, deps: readonly string[]): void {
    for (const dep of deps) {
      const keys = this.byDep.get(dep);
      keys?.delete(key);
      if (keys?.size === 0) this.byDep.delete(dep);
    }
  }
}
