import { CircuitOpenError, StoreTimeoutError, StoreUnavailableError } from "../errors";
import { CircuitBreaker } from "./circuit-breaker";
import type { CacheStore } from "./store";

/**
 * Fail-open access to a store: every call either answers within the timeout or resolves to
 * `undefined`, and the failure goes to onError instead of the caller. A circuit breaker skips a
 * store that keeps failing, so that while it is down calls fail at once instead of each waiting
 * for the timeout.
 */
export class StoreGuard {
  /**
   * Set when the store went down (unreachable, or failing until the breaker opened): writes made
   * meanwhile by any process may not have reached it, so its entries are not to be trusted until
   * the cache has recovered (see QueryCache). Single slow calls do not count.
   */
  down = false;

  constructor(
    readonly store: CacheStore,
    private readonly timeoutMs: number,
    private readonly onError: (error: Error) => void,
    readonly breaker: CircuitBreaker = new CircuitBreaker(),
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
    if (!this.store.available) {
      this.down = true;
      return Promise.reject(new StoreUnavailableError());
    }
    if (!this.breaker.admit())
      return Promise.reject(
        new CircuitOpenError(this.breaker.failureThreshold, this.breaker.coolDownMs),
      );
    return new Promise<T>((resolve, reject) => {
      // The first outcome counts: an answer arriving after the timeout is still a failure for the
      // breaker, since the caller had to do without it.
      let settled = false;
      const settle = (succeeded: boolean): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        if (succeeded) this.breaker.succeeded();
        else this.breaker.failed();
        if (this.breaker.isOpen) this.down = true;
        return true;
      };
      const timer = setTimeout(() => {
        if (settle(false)) reject(new StoreTimeoutError(this.timeoutMs));
      }, this.timeoutMs);
      fn(this.store).then(
        (value) => {
          if (settle(true)) resolve(value);
        },
        (error) => {
          if (settle((error as { storeAnswered?: boolean }).storeAnswered === true)) reject(error);
        },
      );
    });
  }
}
