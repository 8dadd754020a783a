import type { EventEmitter } from "node:events";
import type { QueryCacheEvents } from "../events";
import type { CacheMetrics } from "../metrics/cache-metrics";

export interface CacheStats {
  hits: number;
  misses: number;
  /** Entries written to the store. */
  sets: number;
  /** Dependency versions bumped in the store by writes and invalidate(). */
  invalidations: number;
  /** Store calls that failed or timed out; the callers got fresh data instead. */
  errors: number;
  /** Results returned but not stored: unserializable, oversize, read in a transaction, or outdated on arrival. */
  skipped: number;
}

/**
 * The one place where a hit, a miss, a store write and a store error are counted: stats(), the
 * events and the per-method metrics move together, whichever path (in-process tier, store,
 * bypass after an outage) served the call.
 * @internal
 */
export class Counters {
  readonly totals: CacheStats = {
    hits: 0,
    misses: 0,
    sets: 0,
    invalidations: 0,
    errors: 0,
    skipped: 0,
  };

  constructor(
    private readonly metrics: CacheMetrics,
    private readonly events: Pick<EventEmitter<QueryCacheEvents>, "emit">,
  ) {}

  /** A call served from the cache; `label` names the method for the per-method metrics (get() has none). */
  hit(key: string, label: string | undefined, started: number): void {
    this.totals.hits++;
    this.events.emit("hit", key);
    if (label !== undefined) this.metrics.hit(label, started);
  }

  /** A call the cache could not serve, with no computation of its own to time (get()). */
  miss(key: string): void {
    this.totals.misses++;
    this.events.emit("miss", key);
  }

  /**
   * A miss whose computation `run` starts at once: counted before it runs, so concurrent callers
   * see it, and timed (or counted as failed) once it settles.
   */
  async computing<T>(
    key: string,
    label: string,
    started: number,
    run: () => Promise<T>,
  ): Promise<T> {
    this.miss(key);
    let value: T;
    try {
      value = await run();
    } catch (error) {
      this.metrics.failed(label);
      throw error;
    }
    this.metrics.miss(label, started);
    return value;
  }

  /** A computed result the store took (a set), or one that was returned but not stored. */
  stored(label: string, accepted: boolean): void {
    if (accepted) this.totals.sets++;
    else this.totals.skipped++;
    this.metrics.stored(label, accepted);
  }

  invalidated(versionKeys: readonly string[]): void {
    this.totals.invalidations += versionKeys.length;
    this.metrics.invalidated(versionKeys);
  }

  storeError(error: Error): void {
    this.totals.errors++;
    this.metrics.storeError(error);
    this.events.emit("storeError", error);
  }
}
