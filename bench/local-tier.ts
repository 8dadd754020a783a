import { setTimeout as sleep } from "node:timers/promises";
import { QueryCache, type QueryCacheOptions } from "../lib";
import type { CommandCounter } from "./setup";

/**
 * The in-process tier (issue 4) is being built beside this bench. This file is the only place that
 * finds out whether QueryCache has it, so contender 5 reads "n/a (tier not available)" until it
 * ships; then openLocalTier becomes a plain `new QueryCache({ ...options, local: { maxBytes } })`.
 *
 * Available means: the constructor takes the option, and a warm read then sends no command to
 * Redis (a constructor that ignored the option would otherwise pass for one with a tier). The
 * tier may need a moment to subscribe to invalidations before it serves, hence the retries.
 */
export async function openLocalTier(
  options: QueryCacheOptions,
  maxBytes: number,
  warmRead: () => Promise<unknown>,
  commands: CommandCounter,
): Promise<{ cache?: QueryCache; reason?: string }> {
  let cache: QueryCache;
  try {
    cache = new QueryCache({ ...options, local: { maxBytes } } as QueryCacheOptions);
  } catch (error) {
    return { reason: `QueryCache rejected { local }: ${(error as Error).message}` };
  }
  for (let attempt = 0; attempt < 30; attempt++) {
    const before = commands.count;
    await warmRead();
    if (commands.count === before) return { cache };
    await sleep(100);
  }
  await cache.close();
  return { reason: "QueryCache took { local } but warm reads kept going to Redis for 3 s" };
}
