import type Redis from "ioredis";
import type { CacheStore, KeySpace, Lookup, StoreEntry } from "../../lib";
import { RedisStore } from "../../lib";

/**
 * Deliberately broken stores, each breaking one promise of the store contract
 * (lib/stores/store.ts), so the spec can show the checker catches the stale reads they cause.
 * They wrap a real RedisStore; only the broken method differs.
 */
abstract class BrokenStore implements CacheStore {
  protected readonly inner: RedisStore;

  constructor(readonly redis: Redis) {
    this.inner = new RedisStore(redis);
  }

  get available(): boolean {
    return this.inner.available;
  }

  lookup(key: string, clockKey: string): Promise<Lookup> {
    return this.inner.lookup(key, clockKey);
  }

  stamp(clockKey: string): Promise<number> {
    return this.inner.stamp(clockKey);
  }

  set(entry: StoreEntry, clockKey: string): Promise<boolean> {
    return this.inner.set(entry, clockKey);
  }

  bump(versionKeys: readonly string[], clockKey: string): Promise<void> {
    return this.inner.bump(versionKeys, clockKey);
  }

  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }

  clear(space: KeySpace): Promise<void> {
    return this.inner.clear(space);
  }
}

/**
 * The classic stale set: the entry is stamped when it is stored rather than before its query ran,
 * so a write that committed while a slow reader was between its query and its set goes unnoticed.
 */
export class StampAtSetStore extends BrokenStore {
  override async set(entry: StoreEntry, clockKey: string): Promise<boolean> {
    return this.inner.set({ ...entry, stamp: await this.inner.stamp(clockKey) }, clockKey);
  }
}

/** Invalidation after the commit returned: bump() resolves at once and lands `delayMs` later. */
export class LateBumpStore extends BrokenStore {
  private readonly pending = new Set<Promise<void>>();

  constructor(
    redis: Redis,
    private readonly delayMs: number,
  ) {
    super(redis);
  }

  override bump(versionKeys: readonly string[], clockKey: string): Promise<void> {
    const late = new Promise<void>((r) => setTimeout(r, this.delayMs))
      .then(() => this.inner.bump(versionKeys, clockKey))
      .catch(() => undefined)
      .finally(() => this.pending.delete(late));
    this.pending.add(late);
    return Promise.resolve();
  }

  async drain(): Promise<void> {
    await Promise.all([...this.pending]);
  }
}

/** Invalidations lost: every other bump() is dropped (as if the store forgot it). */
export class LostBumpStore extends BrokenStore {
  private calls = 0;

  override bump(versionKeys: readonly string[], clockKey: string): Promise<void> {
    return this.calls++ % 2 === 0 ? Promise.resolve() : this.inner.bump(versionKeys, clockKey);
  }
}

/** No version check on lookup: an entry is served for as long as it exists, however outdated. */
export class UncheckedLookupStore extends BrokenStore {
  override async lookup(key: string, clockKey: string): Promise<Lookup> {
    const entry = await this.redis.get(key);
    if (entry === null) return this.inner.lookup(key, clockKey);
    // The entry as RedisStore writes it: "ac1 <stamp> <version key>...\n<payload>".
    const nl = entry.indexOf("\n");
    return { hit: true, value: entry.slice(nl + 1), deps: entry.slice(0, nl).split(" ").slice(2) };
  }
}
