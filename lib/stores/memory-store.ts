import { LRUCache } from "lru-cache";
import { InvalidOptionError } from "../errors";
import type { CacheStore, KeySpace, Lookup, StoreEntry } from "./store";

export interface MemoryStoreOptions {
  /** Upper bound of the summed size of stored values, in bytes (UTF-16 length). Default 64 MiB. */
  maxBytes?: number;
}

interface MemoryEntry {
  readonly value: string;
  readonly deps: readonly string[];
  readonly stamp: number;
}

/**
 * An in-process store: a byte-bounded LRU with the same version rules as RedisStore. It suits a
 * single process; several processes each keep their own, so writes in one never reach another.
 */
export class MemoryStore implements CacheStore {
  readonly available = true;
  private readonly entries: LRUCache<string, MemoryEntry>;
  private readonly versions = new Map<string, number>();
  private readonly clocks = new Map<string, number>();

  constructor(options: MemoryStoreOptions = {}) {
    const maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
      throw new InvalidOptionError(`MemoryStore: maxBytes must be a positive integer, got ${String(maxBytes)}.`);
    }
    this.entries = new LRUCache({ maxSize: maxBytes, sizeCalculation: (e) => Math.max(1, e.value.length) });
  }

  async lookup(key: string, clockKey: string): Promise<Lookup> {
    const entry = this.entries.get(key);
    if (entry && this.isCurrent(entry.deps, entry.stamp)) return { hit: true, value: entry.value, deps: entry.deps };
    if (entry) this.entries.delete(key);
    return { hit: false, stamp: this.now(clockKey) };
  }

  async stamp(clockKey: string): Promise<number> {
    return this.now(clockKey);
  }

  async set(entry: StoreEntry, _clockKey: string): Promise<boolean> {
    if (!this.isCurrent(entry.deps, entry.stamp)) return false;
    this.entries.set(entry.key, entry, { ttl: entry.ttlSeconds * 1000 });
    return true;
  }

  async bump(versionKeys: readonly string[], clockKey: string): Promise<void> {
    const next = this.now(clockKey) + 1;
    this.clocks.set(clockKey, next);
    for (const key of versionKeys) this.versions.set(key, next);
  }

  async delete(key: string): Promise<void> {
    this.entries.delete(key);
  }

  async clear(space: KeySpace): Promise<void> {
    for (const key of [...this.entries.keys()]) if (key.startsWith(space.entryPrefix)) this.entries.delete(key);
    // Versions move forward rather than vanish, so a value computed before the clear is refused.
    const versions = [...this.versions.keys()].filter((key) => key.startsWith(space.versionPrefix));
    await this.bump(versions, space.clockKey);
  }

  private now(clockKey: string): number {
    return this.clocks.get(clockKey) ?? 0;
  }

  // Versions live as long as the process and are never evicted, so an absent one was never bumped.
  private isCurrent(deps: readonly string[], stamp: number): boolean {
    for (const dep of deps) if ((this.versions.get(dep) ?? 0) > stamp) return false;
    return true;
  }
}
