import { AsyncLocalStorage } from "node:async_hooks";

/**
 * What one cached computation has read so far. It lives in AsyncLocalStorage, so the SQL each
 * concurrent call runs lands in that call's context and nowhere else.
 */
export class TrackingContext {
  /** Version keys of everything read. */
  readonly deps = new Set<string>();
  /** Why the result must not be stored, once something has made it so. */
  uncacheable?: string;

  constructor(
    /** The cache the computation belongs to; SQL through another DataSource is not tracked by it. */
    readonly owner: object,
    /** Whether the caller named extra dependencies, which vouch for functions the library cannot see into. */
    readonly vouched: boolean,
  ) {}

  addDeps(deps: Iterable<string>): void {
    for (const dep of deps) this.deps.add(dep);
  }

  refuse(reason: string): void {
    this.uncacheable ??= reason;
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
