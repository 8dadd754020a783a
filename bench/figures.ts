import { Session } from "node:inspector/promises";
import { basename } from "node:path";
import { performance } from "node:perf_hooks";
import { setImmediate as nextTurn } from "node:timers/promises";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { bodyRuns, newPost, Post } from "./blog";
import { warmLocal, warmRedis } from "./contenders";
import { quantile } from "./rounds";
import {
  AUTHORS,
  type Bench,
  dependentTable,
  FLOOR_KEY,
  openInstance,
  statementCount,
  TYPEORM_KEYS,
} from "./setup";

/** Figures measured once rather than in rounds: set-ups, counts, memory, and a CPU profile of the hit path. */

// Calls in flight while filling: more would queue past the cache's storeTimeout on a busy machine.
const FILL_BATCH = 250;
const PROGRESS_EVERY = 10_000;

/**
 * Stores `count` entries depending on one table through the library's own path (cache.set with
 * dependsOn), a batch of calls in flight at a time so their round trips overlap.
 */
export async function fillDependents(
  bench: Bench,
  count: number,
  progress: (done: number) => void,
): Promise<{ stored: number; seconds: number }> {
  const table = dependentTable(count);
  const start = performance.now();
  // A version that does not exist yet makes set() refuse (and create it): write the table first.
  await bench.cache.invalidate(table);
  let stored = 0;
  let pending = Array.from({ length: count }, (_, i) => i);
  for (let attempt = 0; attempt < 3 && pending.length > 0; attempt++) {
    const refused: number[] = [];
    for (let i = 0; i < pending.length; i += FILL_BATCH) {
      const batch = pending.slice(i, i + FILL_BATCH);
      const results = await Promise.all(
        batch.map((n) =>
          bench.cache.set(
            `dep:${count}:${n}`,
            { n, note: "depends on one table" },
            { dependsOn: [table], ttl: 900 },
          ),
        ),
      );
      results.forEach((ok, j) => {
        if (ok) stored++;
        else refused.push(batch[j]);
      });
      if (count >= PROGRESS_EVERY && (i + FILL_BATCH) % PROGRESS_EVERY === 0) progress(stored);
    }
    pending = refused;
  }
  return { stored, seconds: (performance.now() - start) / 1000 };
}

export interface Stampede {
  calls: number;
  bursts: number;
  /** Most runs of the method body (each one a database query) in any burst. */
  maxBodyRuns: number;
  maxStatements: number;
  /** Statements one run of the find sends (TypeORM splits take + relations into two). */
  statementsPerRun: number;
}

/** 1,000 concurrent calls on one key just after it was invalidated, a few times over. */
export async function stampede(bench: Bench, calls = 1000, bursts = 3): Promise<Stampede> {
  const { cache, cached, repos } = bench;
  await cache.invalidate(Post);
  let sql = statementCount(cached);
  await repos.cached.frontPage();
  const statementsPerRun = statementCount(cached) - sql;
  let maxBodyRuns = 0;
  let maxStatements = 0;
  for (let b = 0; b < bursts; b++) {
    await cache.invalidate(Post);
    const runs = bodyRuns.frontPage;
    sql = statementCount(cached);
    await Promise.all(Array.from({ length: calls }, () => repos.cached.frontPage()));
    maxBodyRuns = Math.max(maxBodyRuns, bodyRuns.frontPage - runs);
    maxStatements = Math.max(maxStatements, statementCount(cached) - sql);
  }
  return { calls, bursts, maxBodyRuns, maxStatements, statementsPerRun };
}

export interface Memory {
  redisEntry: number;
  redisFloor: number;
  typeormEntries: number;
  /** Heap and external memory per front-page entry held by the in-process tier. */
  localPerEntry?: number;
  localEntries?: number;
}

export async function memory(bench: Bench, entryKey: string): Promise<Memory> {
  const { redis } = bench;
  await warmRedis(bench.cache, bench.repos.cached);
  const usage = async (key: string) =>
    Number((await redis.call("MEMORY", "USAGE", key, "SAMPLES", "0")) ?? 0);
  let typeormEntries = 0;
  for (const key of TYPEORM_KEYS) typeormEntries += await usage(key);
  const out: Memory = {
    redisEntry: await usage(entryKey),
    redisFloor: await usage(FLOOR_KEY),
    typeormEntries,
  };
  if (bench.localCache) Object.assign(out, await localMemory(bench));
  return out;
}

/**
 * Fills the tier with copies of the front page under keys of their own and divides the growth of
 * the heap (and of memory outside it, for Buffers) by the number of copies it then serves.
 */
async function localMemory(
  bench: Bench,
  copies = 500,
): Promise<{ localPerEntry?: number; localEntries: number }> {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  const used = () => {
    gc();
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.external;
  };
  const repo = bench.repos.local;
  const before = used();
  // The first pass misses and stores each copy in Redis; the next ones give the tier its chance to keep them.
  for (let pass = 0; pass < 3; pass++) for (let i = 0; i < copies; i++) await repo.frontPageCopy(i);
  let served = 0;
  for (let i = 0; i < copies; i++) {
    const commands = bench.localCommands.count;
    await repo.frontPageCopy(i);
    if (bench.localCommands.count === commands) served++;
  }
  const after = used();
  return {
    localPerEntry: served > 0 ? (after - before) / served : undefined,
    localEntries: served,
  };
}

export interface Propagation {
  samples: number;
  /** From a write's return to the first read the tier no longer answers (it dropped the entry). */
  p50Ms: number;
  p99Ms: number;
  /** Reads after the drop that still returned the front page from before the write. */
  staleAfterDrop: number;
  /** Whether a write by an instance without the tier reached the tier within STALE_LIMIT_MS. */
  fromInstanceWithoutTier: boolean;
}

const STALE_LIMIT_MS = 2000;

/**
 * How long the in-process tier of one instance keeps serving the front page after another
 * instance's write has returned: the tier's staleness bound, as measured here. The writer is a
 * third instance with the tier on; then one write comes from the Redis-only instance, to see
 * whether instances without the tier announce their writes too.
 */
export async function propagation(bench: Bench, samples = 60): Promise<Propagation | undefined> {
  if (!bench.localCache) return undefined;
  const writer = await openInstance(bench.pgUrl, bench.redisUrl, true);
  try {
    const posts = writer.dataSource.getRepository(Post);
    const delays: number[] = [];
    let staleAfterDrop = 0;
    for (let s = 0; s < samples; s++) {
      const seen = await untilDropped(
        bench,
        (post) => posts.save(posts.create(post)),
        1_000_000 + s,
      );
      if (!seen)
        throw new Error(
          `the in-process tier kept serving the front page ${STALE_LIMIT_MS} ms after another instance's write`,
        );
      delays.push(seen.ms);
      if (!seen.fresh) staleAfterDrop++;
    }
    const redisOnly = await untilDropped(
      bench,
      (post) => bench.repos.cachedPosts.save(bench.repos.cachedPosts.create(post)),
      2_000_000,
    );
    return {
      samples,
      p50Ms: quantile(delays, 0.5),
      p99Ms: quantile(delays, 0.99),
      staleAfterDrop,
      fromInstanceWithoutTier: redisOnly !== undefined,
    };
  } finally {
    await writer.close();
  }
}

/**
 * Writes a new post, then reads the front page through the tier until a read goes past it (sends
 * a command to Redis): the milliseconds from the write's return to the start of that read, and
 * whether it returned the new post. Undefined when the tier still answered after STALE_LIMIT_MS.
 */
async function untilDropped(
  bench: Bench,
  save: (post: Partial<Post>) => Promise<unknown>,
  n: number,
): Promise<{ ms: number; fresh: boolean } | undefined> {
  await warmLocal(bench);
  const post = newPost(n, 1 + (n % AUTHORS));
  await save(post);
  const written = performance.now();
  for (;;) {
    const commands = bench.localCommands.count;
    const started = performance.now();
    const front = await bench.repos.local.frontPage();
    if (bench.localCommands.count > commands)
      return { ms: started - written, fresh: front[0]?.title === post.title };
    if (started - written > STALE_LIMIT_MS) return undefined;
    await nextTurn();
  }
}

export interface HitProfile {
  calls: number;
  /** Microseconds Redis spent per call, by command, from INFO commandstats. */
  serverUsPerCall: Record<string, number>;
  /** Share of sampled time by where it went. */
  categories: { name: string; share: number }[];
  /** The functions with the most self time. */
  functions: { name: string; share: number }[];
}

/** A CPU profile of back-to-back @Cached hits from Redis, with what Redis itself spent per call. */
export async function profileHits(bench: Bench, calls = 4000): Promise<HitProfile> {
  const { cache, repos, redis } = bench;
  await warmRedis(cache, repos.cached);
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 50 });
  const statsBefore = parseCommandStats(String(await redis.info("commandstats")));
  await session.post("Profiler.start");
  for (let i = 0; i < calls; i++) await repos.cached.frontPage();
  const { profile } = await session.post("Profiler.stop");
  const statsAfter = parseCommandStats(String(await redis.info("commandstats")));
  await session.post("Profiler.disable");
  session.disconnect();

  const serverUsPerCall: Record<string, number> = {};
  for (const [name, after] of Object.entries(statsAfter)) {
    const before = statsBefore[name] ?? { calls: 0, usec: 0 };
    if (name === "info" || after.calls - before.calls < calls / 2) continue;
    serverUsPerCall[name] = (after.usec - before.usec) / calls;
  }

  const self = new Map<number, number>();
  for (const id of profile.samples ?? []) self.set(id, (self.get(id) ?? 0) + 1);
  const total = profile.samples?.length ?? 1;
  const byCategory = new Map<string, number>();
  const byFunction = new Map<string, number>();
  for (const node of profile.nodes) {
    const n = self.get(node.id) ?? 0;
    if (n === 0) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const category = categorize(functionName, url);
    byCategory.set(category, (byCategory.get(category) ?? 0) + n);
    const fn =
      `${functionName || "(anonymous)"} ${url ? `${basename(url)}:${lineNumber + 1}` : ""}`.trim();
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + n);
  }
  const ranked = (m: Map<string, number>, top: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, n]) => ({ name, share: n / total }));
  return {
    calls,
    serverUsPerCall,
    categories: ranked(byCategory, 12),
    functions: ranked(byFunction, 15),
  };
}

function categorize(functionName: string, url: string): string {
  if (functionName === "(idle)") return "idle: waiting for Redis to answer";
  if (functionName === "(garbage collector)") return "garbage collector";
  if (functionName === "(program)") return "V8 and native code";
  // Node writes a command to the socket synchronously; on loopback the syscall also wakes Redis.
  if (functionName === "writeUtf8String") return "socket write of the command (syscall)";
  if (url.includes("/lib/serialization/")) return "library: decode (lib/serialization)";
  if (url.includes("/lib/stores/")) return "library: store (lib/stores)";
  if (url.includes("/lib/keys/")) return "library: keys (lib/keys)";
  if (url.includes("/lib/decorator/")) return "library: decorator (lib/decorator)";
  if (url.includes("/dist/lib/")) return `library: ${basename(url, ".js")}`;
  if (url.includes("node_modules/ioredis") || url.includes("node_modules/redis-parser"))
    return "ioredis and its parser";
  if (url.includes("node_modules/typeorm")) return "typeorm";
  if (url.includes("/bench/")) return "bench loop";
  if (url.startsWith("node:")) return "Node.js internals";
  if (functionName === "parse" || functionName === "stringify") return "JSON (V8 builtin)";
  return url ? basename(url) : functionName || "(other)";
}

function parseCommandStats(info: string): Record<string, { calls: number; usec: number }> {
  const out: Record<string, { calls: number; usec: number }> = {};
  for (const line of info.split("\n")) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line.trim());
    if (m) out[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
  }
  return out;
}
