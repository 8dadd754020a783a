/**
 * What a cache store does. Entries carry a stamp (taken before their value was computed) and the
 * names of the dependency versions they rely on; an entry is served only while every one of those
 * versions exists and is not newer than its stamp. Invalidation moves versions forward, so it
 * costs one write per dependency, whatever the number of entries that depend on it.
 */
export interface CacheStore {
  /**
   * Reads an entry. A hit returns it with its dependencies; anything else (absent, expired,
   * outdated, unreadable) is a miss that returns the stamp a value computed from now on carries.
   */
  lookup(key: string, clockKey: string): Promise<Lookup>;
  /** The stamp a value computed from now on carries. */
  stamp(clockKey: string): Promise<number>;
  /**
   * Creates the namespace's clock when it has none, so that the first computation's versions can
   * be proven and its entry admitted. Optional: a store whose clock starts with it needs none.
   */
  open?(clockKey: string): Promise<void>;
  /**
   * Stores an entry unless one of its dependencies changed after `stamp`, or has no version and
   * the store cannot prove it was not bumped after `stamp` (it then creates it, so a computation
   * stamped after can be admitted). Resolves whether the entry was stored.
   */
  set(entry: StoreEntry, clockKey: string): Promise<boolean>;
  /**
   * Moves every named version past every stamp handed out so far, with the table version that
   * guards each finer one ("<table>#..."; see KeyLayout), and when `channel` is given, announces
   * them there for follow(). Row versions ("<table>#<column>=<value>") expire; the others stay.
   */
  bump(versionKeys: readonly string[], clockKey: string, channel?: string): Promise<void>;
  delete(key: string): Promise<void>;
  /**
   * Deletes every entry under `space.entryPrefix` and bumps (announcing them on `space.channel`)
   * every version under `space.versionPrefix`.
   */
  clear(space: KeySpace): Promise<void>;
  /** False when the store is known to be unreachable, so callers skip it without waiting. */
  readonly available: boolean;
  /**
   * Follows the versions other processes bump, for an in-process tier. Optional: stores that
   * cannot (a MemoryStore, which has no other processes) leave it out.
   */
  follow?(channel: string, handlers: FollowHandlers): { close(): Promise<void> };
}

export interface FollowHandlers {
  /** Version keys that were bumped, by any process. */
  invalidated(versionKeys: string[]): void;
  /** Whether every bump from now on will be reported; false after a disconnect. */
  state(live: boolean): void;
}

export type Lookup =
  | { readonly hit: true; readonly value: string; readonly deps: readonly string[] }
  | { readonly hit: false; readonly stamp: number };

export interface StoreEntry {
  readonly key: string;
  readonly value: string;
  readonly deps: readonly string[];
  readonly stamp: number;
  readonly ttlSeconds: number;
}

/** Where one namespace keeps its keys. */
export interface KeySpace {
  /** The key whose value every stamp and version is drawn above. */
  readonly clockKey: string;
  readonly entryPrefix: string;
  /** Starts every version key (and the clock key, which clear leaves alone). */
  readonly versionPrefix: string;
  /** Where bumps are announced, so that clear() reaches other processes' in-process tiers too. */
  readonly channel: string;
}
