import { performance } from "node:perf_hooks";
import type { QueryCache } from "../lib";
import { splitFreshness } from "../lib/serialization/freshness";
import { bodyRuns, FRONT_PAGE, type FrontPageRepository, newPost, Post } from "./blog";
import { type Contender, type Timed, timeAlternating, timeEach, timeEachSync } from "./rounds";
import {
  AUTHORS,
  type Bench,
  DEPENDENT_COUNTS,
  dependentTable,
  FLOOR_KEY,
  NAMESPACE,
  statementCount,
  TYPEORM_CACHE_ID,
} from "./setup";

/** Operations per contender (per operation of an alternating group) per round: more where one is cheap. */
const BATCH = { hit: 200, local: 1000, query: 40, write: 30, cpu: 200 };
/** Calls in a row of one operation when cheap ones alternate (see timeAlternating). */
const BLOCK = 10;
/** Contender 9: calls in flight, the share of writes, and how long each batch runs. */
export const MIX = { inFlight: 64, writeShare: 0.05, ms: 600 };
const TYPEORM_CACHE = { id: TYPEORM_CACHE_ID, milliseconds: 600_000 };
/** A script that only reads the entry and returns it: what moving the value through Lua costs. */
const LUA_GET = "return redis.call('GET', KEYS[1])";
/** The front page stored under a key of the low-level API, to time cache.get() apart from @Cached. */
const API_KEY = "front-page";

/** What a contender saw besides time: how many of its calls were what it claims to measure. */
export interface Check {
  ok: number;
  of: number;
  what: string;
}

export interface Mixes {
  cached: { hits: number; misses: number; writes: number; reads: number; computations: number };
  uncached: { writes: number; reads: number };
}

export interface Roster {
  contenders: Contender[];
  checks: Map<string, Check>;
  mixes: Mixes;
  /** Contender 8: Redis commands the cache sent for the writes to each table, by entries depending on it. */
  roundTrips: Map<number, { writes: number; commands: number }>;
  /** Sizes of what the floor and a hit carry, in bytes. */
  sizes: { floorJson: number; entry: number; payload: number };
  entryKey: string;
}

let published = 0;
function publish(): Partial<Post> {
  published++;
  return newPost(published, 1 + (published % AUTHORS));
}

export async function buildRoster(bench: Bench): Promise<Roster> {
  const { repos, cache, redis } = bench;
  const checks = new Map<string, Check>();
  const check = (id: string, what: string) => {
    const c = { ok: 0, of: 0, what };
    checks.set(id, c);
    return c;
  };

  // The floor holds the same rows as the hit, as JSON.
  const rows = await repos.plain.find(FRONT_PAGE);
  const floorJson = JSON.stringify(rows);
  await redis.set(FLOOR_KEY, floorJson, "EX", 3600);

  let entryKey = "";
  const onHit = (key: string) => {
    entryKey = key;
  };
  cache.on("hit", onHit);
  await warmRedis(cache, repos.cached);
  cache.off("hit", onHit);
  const entry = (await redis.get(entryKey)) ?? "";
  const payload = splitFreshness(entry.slice(entry.indexOf("\n") + 1)).json;
  // Spelled out as lib/keys/key-layout.ts lays it out: KeyLayout is not public.
  const clockKey = `${NAMESPACE}:{${NAMESPACE}:v}:clock`;

  const contenders: Contender[] = [];
  const add = (c: Contender) => contenders.push(c);

  // Targets compare these in pairs (hit / floor, TypeORM's hit / ours), so they alternate call by call.
  const typeormHits = check("typeorm-hit", "calls that ran no SQL");
  const redisHits = check("redis-hit", "hits that ran no SQL");
  add({
    id: "hits",
    prepare: async () => {
      await warmRedis(cache, repos.cached);
      await repos.typeorm.find({ ...FRONT_PAGE, cache: TYPEORM_CACHE });
    },
    run: async () => {
      const hits = cache.stats().hits;
      const sql = statementCount(bench.cached);
      const typeormSql = statementCount(bench.typeorm);
      const times = await timeAlternating(
        BATCH.hit,
        {
          floor: { op: async () => JSON.parse((await redis.get(FLOOR_KEY))!) },
          "redis-hit": { op: () => repos.cached.frontPage() },
          "typeorm-hit": { op: () => repos.typeorm.find({ ...FRONT_PAGE, cache: TYPEORM_CACHE }) },
        },
        BLOCK,
      );
      redisHits.of += BATCH.hit;
      if (statementCount(bench.cached) === sql) redisHits.ok += cache.stats().hits - hits;
      typeormHits.of += BATCH.hit;
      if (statementCount(bench.typeorm) === typeormSql) typeormHits.ok += BATCH.hit;
      return times;
    },
  });

  if (bench.localCache) {
    const localHits = check("local-hit", "calls that sent nothing to Redis and ran no SQL");
    add({
      id: "local-hit",
      prepare: () => warmLocal(bench),
      run: async () => {
        const commands = bench.localCommands.count;
        const sql = statementCount(bench.local);
        const times = await timeEach(BATCH.local, () => repos.local.frontPage());
        localHits.of += times.length;
        if (bench.localCommands.count === commands && statementCount(bench.local) === sql)
          localHits.ok += times.length;
        return times;
      },
    });
  }

  // A miss as users meet it: the entry was invalidated by a write. The invalidation itself is
  // off the clock (contenders 7 and 8 time writes); what is timed is lookup, query, encode and set.
  const misses = check("miss", "misses that stored their result");
  add({
    id: "queries",
    run: async () => {
      const before = cache.stats();
      const times = await timeAlternating(BATCH.query, {
        uncached: { op: () => repos.plain.find(FRONT_PAGE) },
        miss: { op: () => repos.cached.frontPage(), untimed: () => cache.invalidate(Post) },
      });
      const after = cache.stats();
      misses.of += BATCH.query;
      misses.ok += Math.min(after.misses - before.misses, after.sets - before.sets);
      return times;
    },
  });

  add({
    id: "saves",
    run: () =>
      timeAlternating(BATCH.write, {
        "save-with": { op: () => repos.cachedPosts.save(repos.cachedPosts.create(publish())) },
        "save-without": { op: () => repos.plain.save(repos.plain.create(publish())) },
      }),
  });

  const roundTrips = new Map<number, { writes: number; commands: number }>();
  const writes: Record<string, Timed> = {};
  const invalidations: Record<string, Timed> = {};
  for (const count of DEPENDENT_COUNTS) {
    const table = dependentTable(count);
    const seen = { writes: 0, commands: 0 };
    roundTrips.set(count, seen);
    writes[`write-${count}`] = {
      op: async () => {
        const commands = bench.cacheCommands.count;
        await bench.cached.query(`INSERT INTO ${table} (note) VALUES ($1)`, ["bench"]);
        seen.writes++;
        seen.commands += bench.cacheCommands.count - commands;
      },
    };
    invalidations[`invalidate-${count}`] = { op: () => cache.invalidate(table) };
  }
  add({ id: "writes", run: () => timeAlternating(BATCH.write, writes) });
  add({ id: "invalidations", run: () => timeAlternating(BATCH.write, invalidations, BLOCK) });

  const mixes: Mixes = {
    cached: { hits: 0, misses: 0, writes: 0, reads: 0, computations: 0 },
    uncached: { writes: 0, reads: 0 },
  };
  add({
    id: "mix-cached",
    run: async () => {
      const before = cache.stats();
      const runs = bodyRuns.frontPage;
      const done = await mix(
        () => repos.cached.frontPage(),
        () => repos.cachedPosts.save(repos.cachedPosts.create(publish())),
      );
      const after = cache.stats();
      mixes.cached.hits += after.hits - before.hits;
      mixes.cached.misses += after.misses - before.misses;
      mixes.cached.computations += bodyRuns.frontPage - runs;
      mixes.cached.reads += done.reads;
      mixes.cached.writes += done.writes;
      return [done.perSecond];
    },
  });
  add({
    id: "mix-uncached",
    run: async () => {
      const done = await mix(
        () => repos.plain.find(FRONT_PAGE),
        () => repos.plain.save(repos.plain.create(publish())),
      );
      mixes.uncached.reads += done.reads;
      mixes.uncached.writes += done.writes;
      return [done.perSecond];
    },
  });

  // The hit path taken apart: each step of a Redis hit beside the matching step of the floor.
  const versionKeys = entry.slice(0, entry.indexOf("\n")).split(" ").slice(2);
  add({
    id: "p-get-entry",
    prepare: () => warmRedis(cache, repos.cached),
    run: () => timeEach(BATCH.hit, () => redis.get(entryKey)),
  });
  add({
    id: "p-eval-get",
    prepare: () => warmRedis(cache, repos.cached),
    run: () => timeEach(BATCH.hit, () => redis.eval(LUA_GET, 1, entryKey)),
  });
  add({
    id: "p-get-mget",
    prepare: () => warmRedis(cache, repos.cached),
    run: () => timeEach(BATCH.hit, () => redis.mget(entryKey, clockKey, ...versionKeys)),
  });
  add({
    id: "p-lookup",
    prepare: () => warmRedis(cache, repos.cached),
    run: () => timeEach(BATCH.hit, () => cache.store.lookup(entryKey, clockKey)),
  });
  add({
    id: "p-get-api",
    prepare: () => warmApiKey(cache, rows),
    run: () => timeEach(BATCH.hit, () => cache.get(API_KEY)),
  });
  add({ id: "p-parse-entry", run: async () => timeEachSync(BATCH.cpu, () => JSON.parse(payload)) });
  add({ id: "p-get-floor", run: () => timeEach(BATCH.hit, () => redis.get(FLOOR_KEY)) });
  add({
    id: "p-parse-floor",
    run: async () => timeEachSync(BATCH.cpu, () => JSON.parse(floorJson)),
  });

  return {
    contenders,
    checks,
    mixes,
    roundTrips,
    sizes: {
      floorJson: Buffer.byteLength(floorJson),
      entry: Buffer.byteLength(entry),
      payload: Buffer.byteLength(payload),
    },
    entryKey,
  };
}

/** Reads the front page until Redis serves it (a write by another contender may have outdated it). */
export async function warmRedis(cache: QueryCache, repo: FrontPageRepository): Promise<void> {
  for (let i = 0; i < 5; i++) {
    const hits = cache.stats().hits;
    await repo.frontPage();
    if (cache.stats().hits > hits) return;
  }
  throw new Error("the front page was never served from Redis");
}

/** Reads the front page until the in-process tier serves it: no command reaches Redis. */
export async function warmLocal(bench: Bench): Promise<void> {
  for (let i = 0; i < 5; i++) {
    const commands = bench.localCommands.count;
    await bench.repos.local.frontPage();
    if (bench.localCommands.count === commands) return;
  }
  throw new Error("the front page was never served from the in-process tier");
}

async function warmApiKey(cache: QueryCache, rows: Post[]): Promise<void> {
  for (let i = 0; i < 5; i++) {
    if ((await cache.get(API_KEY)) !== undefined) return;
    await cache.set(API_KEY, rows, { dependsOn: [Post], ttl: 600 });
  }
  throw new Error(`cache.get("${API_KEY}") never hit`);
}

/** MIX.inFlight callers, each reading or (one time in twenty) writing, for MIX.ms. */
async function mix(
  read: () => Promise<unknown>,
  write: () => Promise<unknown>,
): Promise<{ perSecond: number; reads: number; writes: number }> {
  let reads = 0;
  let writes = 0;
  let seed = 0x9e3779b9;
  const random = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const start = performance.now();
  const end = start + MIX.ms;
  const caller = async () => {
    while (performance.now() < end) {
      if (random() < MIX.writeShare) {
        await write();
        writes++;
      } else {
        await read();
        reads++;
      }
    }
  };
  await Promise.all(Array.from({ length: MIX.inFlight }, caller));
  const seconds = (performance.now() - start) / 1000;
  return { perSecond: (reads + writes) / seconds, reads, writes };
}
