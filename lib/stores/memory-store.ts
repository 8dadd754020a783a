import { LRUCache } from "lru-cache";
import { InvalidOptionError } from "../errors";
import { guardOf, isRowVersion } from "../keys/key-layout";
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

interface Version {
  value: number;
  /** Row versions only: when it expires (Date.now() milliseconds). */
  expiresAt?: number;
}

/** Seconds a bumped row version lives, as in RedisStore. */
const ROW_VERSION_TTL = 300;
/** Expired row versions are swept once this many versions exist beyond the last sweep. */
const SWEEP_EVERY = 10_000;

/**
 * An in-process store: a byte-bounded LRU with the same version rules as RedisStore. It suits a
 * single process; several processes each keep their own, so writes in one never reach another.
 */
export class MemoryStore implements CacheStore {
  readonly available = true;
  private readonly entries: LRUCache<string, MemoryEntry>;
  private readonly versions = new Map<string, Version>();
  private readonly clocks = new Map<string, number>();
  private sweepAt = SWEEP_EVERY;

  constructor(options: MemoryStoreOptions = {}) {
    const maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
      throw new InvalidOptionError(
        `MemoryStore: maxBytes must be a positive integer, got ${String(maxBytes)}.`,
      );
    }
    this.entries = new LRUCache({
      maxSize: maxBytes,
      sizeCalculation: (e) => Math.max(1, e.value.length),
    });
  }

  async lookup(key: string, clockKey: string): Promise<Lookup> {
    const entry = this.entries.get(key);
    if (
      entry?.deps.every((dep) => (this.version(dep) ?? Number.POSITIVE_INFINITY) <= entry.stamp)
    ) {
      return { hit: true, value: entry.value, deps: entry.deps };
    }
    if (entry) this.entries.delete(key);
    return { hit: false, stamp: this.now(clockKey) };
  }

  async stamp(clockKey: string): Promise<number> {
    return this.now(clockKey);
  }

  // Table versions are never evicted here, so a missing one was never bumped (0). A row version
  // expires: a missing one takes its table version's value, which every bump of it moved too.
  async set(entry: StoreEntry, _clockKey: string): Promise<boolean> {
    let current = true;
    for (const dep of entry.deps) {
      const value = this.version(dep) ?? this.recreate(dep, entry.ttlSeconds);
      if (value > entry.stamp) current = false;
      else this.extend(dep, entry.ttlSeconds);
    }
    if (!current) return false;
    this.entries.set(entry.key, entry, { ttl: entry.ttlSeconds * 1000 });
    return true;
  }

  async bump(versionKeys: readonly string[], clockKey: string): Promise<void> {
    const next = this.now(clockKey) + 1;
    this.clocks.set(clockKey, next);
    const expiresAt = Date.now() + ROW_VERSION_TTL * 1000;
    for (const key of versionKeys) {
      this.versions.set(key, isRowVersion(key) ? { value: next, expiresAt } : { value: next });
      const guard = guardOf(key);
      if (guard) this.versions.set(guard, { value: next });
    }
    if (this.versions.size >= this.sweepAt) this.sweep();
  }

  async delete(key: string): Promise<void> {
    this.entries.delete(key);
  }

  async clear(space: KeySpace): Promise<void> {
    for (const key of [...this.entries.keys()])
      if (key.startsWith(space.entryPrefix)) this.entries.delete(key);
    // Versions move forward rather than vanish, so a value computed before the clear is refused.
    const versions = [...this.versions.keys()].filter((key) => key.startsWith(space.versionPrefix));
    await this.bump(versions, space.clockKey);
  }

  private now(clockKey: string): number {
    return this.clocks.get(clockKey) ?? 0;
  }

  private version(key: string): number | undefined {
    const version = this.versions.get(key);
    if (version?.expiresAt !== undefined && version.expiresAt <= Date.now()) {
      this.versions.delete(key);
      return undefined;
    }
    return version?.value;
  }

  private recreate(key: string, ttlSeconds: number): number {
    const guard = guardOf(key);
    const value = guard ? (this.version(guard) ?? 0) : 0;
    this.versions.set(
      key,
      isRowVersion(key) ? { value, expiresAt: Date.now() + ttlSeconds * 1000 } : { value },
    );
    return value;
  }

  /** A row version lives at least as long as the entries that depend on it. */
  private extend(key: string, ttlSeconds: number): void {
    const version = this.versions.get(key);
    if (version?.expiresAt !== undefined)
      version.expiresAt = Math.max(version.expiresAt, Date.now() + ttlSeconds * 1000);
  }

  private sweep(): void {
    const now = Date.now();
    for (const [key, version] of this.versions)
      if (version.expiresAt !== undefined && version.expiresAt <= now) this.versions.delete(key);
    this.sweepAt = this.versions.size + SWEEP_EVERY;
  }
}
