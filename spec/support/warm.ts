import { expect } from "chai";
import type { Cluster, Redis } from "ioredis";
import { type App, selectCount } from "./fixture";
import { PATIENCE_MS, sleep } from "./wait";

/**
 * Calls a cached read until the cache serves it, and proves that hit ran no SQL. (A table's very
 * first entry may be refused while its version is created, so the first read can stay a miss.)
 */
export async function warm<T>(
  app: Pick<App, "cache" | "dataSource">,
  read: () => Promise<T>,
  tries = 3,
  why = "",
): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const hits = app.cache.stats().hits;
    const selects = selectCount(app.dataSource);
    const value = await read();
    if (app.cache.stats().hits > hits) {
      expect(selectCount(app.dataSource), "a hit runs no SQL").to.equal(selects);
      return value;
    }
  }
  throw new Error(
    `the read was not served from the cache in ${tries} calls${why ? `: ${why}` : ""}`,
  );
}

/**
 * Calls a cached read until it is served from the cache (a hit that runs no SQL), checking every
 * answer on the way, hit or not. For phases where caching resumes at a moment the spec does not
 * control (a reconnect, a retried invalidation); `warm` is for reads that must hit at once.
 */
export async function readUntilHit<T>(
  app: Pick<App<Redis | Cluster>, "cache" | "dataSource"> &
    Partial<Pick<App<Redis | Cluster>, "storeErrors" | "redis">>,
  read: () => Promise<T>,
  check: (value: T) => void,
  timeoutMs = PATIENCE_MS,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hits = app.cache.stats().hits;
    const selects = selectCount(app.dataSource);
    const value = await read();
    check(value);
    if (app.cache.stats().hits > hits) {
      expect(selectCount(app.dataSource), "a hit runs no SQL").to.equal(selects);
      return value;
    }
    if (Date.now() > deadline) {
      const last = app.storeErrors?.at(-1);
      throw new Error(
        `the read was never served from the cache in ${timeoutMs} ms (stats ${JSON.stringify(app.cache.stats())}, ` +
          `health ${JSON.stringify(app.cache.health())}, redis status "${app.redis?.status}", ` +
          `last store error: ${last ? `${last.name}: ${last.message}` : "none"})`,
      );
    }
    await sleep(50);
  }
}
