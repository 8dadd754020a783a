import type { CacheStore } from "./store";

/** A store call that did not answer in time. */
export class StoreTimeoutError extends Error {
  constructor(ms: number) {
    super(`the cache store did not answer within ${ms} ms`);
    this.name = "StoreTimeoutError";
  }
}

/** A store known to be down, skipped without waiting. */
export class StoreUnavailableError extends Error {
  constructor() {
    super("the cache store is not connected");
    this.name = "StoreUnavailableError";
  }
}

/**
 * Fail-open access to a store: every call either answers within the timeout or resolves to
 * `undefined`, and the failure goes to onError instead of the caller.
 */
export class StoreGuard {
  constructor(
    readonly store: CacheStore,
    private readonly timeoutMs: number,
    private readonly onError: (error: Error) => void,
  ) {}

  async call<T>(fn: (store: CacheStore) => Promise<T>): Promise<T | undefined> {
    try {
      return await this.strict(fn);
    } catch (error) {
      this.onError(error as Error);
      return undefined;
    }
  }

  /** Like call, but rejects on failure, for callers that must know (and retry). */
  strict<T>(fn: (store: CacheStore) => Promise<T>): Promise<T> {
    if (!this.store.available) return Promise.reject(new StoreUnavailableError());
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new StoreTimeoutError(this.timeoutMs)), this.timeoutMs);
      fn(this.store).then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }
}
