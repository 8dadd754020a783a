import { AsyncLocalStorage } from "node:async_hooks";

/** How a computation may be cached, as its caller chose. */
export interface TrackingPolicy {
  /** Whether the caller named extra dependencies, which vouch for functions the library cannot see into. */
  readonly vouched: boolean;
  /** Whether a result computed after a failed query (a fallback) may be stored. */
  readonly cacheFallback: boolean;
  /**
   * Whether the version keys of another cache's tables are valid here: true when it shares this
   * cache's store and namespace, so writes through its DataSource move versions this entry checks.
   */
  sharesVersions(cache: object): boolean;
}

/**
 * What one cached computation has read so far. It lives in AsyncLocalStorage, so the SQL each
 * concurrent call runs lands in that call's context and nowhere else.
 */
export class TrackingContext {
  /** Version keys of everything read. */
  readonly deps = new Set<string>();
  /** Why the result must not be stored, once something has made it so. */
  uncacheable?: string;
  /** Whether any query of the computation itself was seen (a nested cached call passes deps instead). */
  sawQuery = false;

  constructor(
    /** The cache the computation belongs to. */
    readonly owner: object,
    readonly policy: TrackingPolicy,
  ) {}

  get vouched(): boolean {
    return this.policy.vouched;
  }

  addDeps(deps: Iterable<string>): void {
    for (const dep of deps) this.deps.add(dep);
  }

  refuse(reason: string): void {
    this.uncacheable ??= reason;
  }

  /**
   * What a nested computation (a cached call, a get() or wrap() hit) hands to the one that called
   * it: everything it depends on, and its refusal when it could not be tracked, since the caller's
   * result holds what it returned.
   */
  absorb(deps: Iterable<string>, refusal?: string): void {
    this.addDeps(deps);
    if (refusal) this.refuse(refusal);
  }
}

const storage = new AsyncLocalStorage<TrackingContext>();

export const tracking = {
  current(): TrackingContext | undefined {
    return storage.getStore();
  },
  run<T>(context: TrackingContext, fn: () => T): T {
    return storage.run(context, fn);
  },
  /** Runs fn outside any computation, so its queries are charged to none. */
  outside<T>(fn: () => T): T {
    return storage.exit(fn);
  },
};
