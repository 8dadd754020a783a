import "reflect-metadata";
import { randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Redis } from "ioredis";
import { Pool } from "pg";
import { DataSource } from "typeorm";
import {
  type CacheStore,
  MemcachedStore,
  PostgresStore,
  QueryCache,
  QueryCacheSubscriber,
  RedisStore,
} from "../lib";
import { MemcachedProcess } from "../spec/support/memcached-process";
import { median, quantile, timeAlternating, timeEach } from "./rounds";

/** Calls timed per figure; each figure is the median (and p99) of these. */
const CALLS = Number(process.env.STORE_CALLS ?? 2000);
/** Entries stored to measure each store's memory per entry. */
const ENTRIES = 2000;
const RESULTS = join(__dirname, "..", "..", "bench", "results");

/** A front page's worth of rows: what a typical cached result looks like once serialized. */
const VALUE = Array.from({ length: 20 }, (_, i) => ({
  id: i + 1,
  title: `Post number ${i + 1}`,
  excerpt: "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ".repeat(3),
  author: { id: 1 + (i % 10), name: `Author ${1 + (i % 10)}` },
  views: i * 17,
}));

interface Backend {
  name: string;
  store: CacheStore;
  /** The store's own floor: a plain read of the same JSON by the same client, and JSON.parse. */
  floor: { put(json: string): Promise<void>; get(): Promise<unknown> };
  /** Bytes the store holds for `ENTRIES` entries written by `fill`, divided by their number. */
  bytesPerEntry(fill: () => Promise<void>): Promise<number | undefined>;
  close(): Promise<void>;
}

interface StoreFigures {
  name: string;
  floor: number[];
  hit: number[];
  miss: number[];
  save: number[];
  bytesPerEntry?: number;
}

/**
 * `npm run bench` adds this section: the Memcached and PostgreSQL stores beside Redis, each hit
 * against that store's own floor, what a miss (lookup, stamp and store) and a save's
 * invalidation cost, and memory per entry; then where a PostgreSQL bump belongs, by measurement.
 * Prints a table and writes bench/results/stores.md.
 */
export async function benchStores(
  pgUrl: string,
  redisUrl: string,
  say: (line: string) => void,
): Promise<void> {
  say("  stores: Redis, Memcached and PostgreSQL side by side...");
  const backends: Backend[] = [await redisBackend(redisUrl), await postgresBackend(pgUrl)];
  const memcached = await memcachedBackend().catch((error: Error) => {
    say(`  stores: Memcached skipped (${error.message})`);
    return undefined;
  });
  if (memcached) backends.splice(1, 0, memcached);
  const dataSource = await new DataSource({
    type: "postgres",
    url: pgUrl,
    subscribers: [QueryCacheSubscriber],
    logging: false,
  }).initialize();
  const figures: StoreFigures[] = [];
  try {
    for (const backend of backends) figures.push(await measure(dataSource, backend));
    const placement = await bumpPlacement(pgUrl);
    const table = report(figures, placement);
    writeFileSync(join(RESULTS, "stores.md"), table);
    say("");
    say(table);
  } finally {
    for (const backend of backends) await backend.close();
    await dataSource.destroy();
  }
}

async function measure(dataSource: DataSource, backend: Backend): Promise<StoreFigures> {
  const namespace = `benchstores${randomUUID().slice(0, 6)}`;
  const cache = new QueryCache({ dataSource, store: backend.store, namespace, storeTimeout: 5000 });
  try {
    await backend.floor.put(JSON.stringify(VALUE));
    while (!(await cache.set("hit", VALUE))) {
      // The namespace's first entry creates its versions and is refused.
    }
    const timed = await timeAlternating(
      CALLS,
      { floor: { op: () => backend.floor.get() }, hit: { op: () => cache.get("hit") } },
      50,
    );
    let n = 0;
    const miss = await timeEach(CALLS / 4, () => cache.wrap(`miss:${n++}`, () => VALUE));
    const save = await timeEach(CALLS / 4, () => cache.invalidate("bench_table"));
    let i = 0;
    const bytesPerEntry = await backend.bytesPerEntry(async () => {
      for (let done = 0; done < ENTRIES; done += 100) {
        await Promise.all(Array.from({ length: 100 }, () => cache.set(`mem:${i++}`, VALUE)));
      }
    });
    return { name: backend.name, floor: timed.floor, hit: timed.hit, miss, save, bytesPerEntry };
  } finally {
    await cache.clear();
    await cache.close();
  }
}

async function redisBackend(url: string): Promise<Backend> {
  const redis = new Redis(url);
  const floorKey = `benchstores:floor:${randomUUID()}`;
  return {
    name: "Redis",
    store: new RedisStore(redis),
    floor: {
      put: async (json) => void (await redis.set(floorKey, json, "EX", 600)),
      get: async () => JSON.parse((await redis.get(floorKey)) ?? "null"),
    },
    bytesPerEntry: async (fill) => {
      await fill();
      // MEMORY USAGE of a sample of the entries just written (shared Redis: a global delta would count others' keys).
      const [, keys] = await redis.scan("0", "MATCH", "benchstores*:e:*mem:*", "COUNT", 10_000);
      const sizes = await Promise.all(keys.slice(0, 200).map((k) => redis.memory("USAGE", k)));
      return sizes.length
        ? sizes.reduce((a: number, b) => a + Number(b ?? 0), 0) / sizes.length
        : undefined;
    },
    close: async () => {
      await redis.del(floorKey);
      redis.disconnect();
    },
  };
}

async function memcachedBackend(): Promise<Backend> {
  const server = await MemcachedProcess.start();
  const store = new MemcachedStore({ servers: [server.address] });
  const memjs = require("memjs") as {
    Client: { create(servers: string, options: object): RawMemjs };
  };
  const client = memjs.Client.create(server.address, { logger: { log: () => undefined } });
  const stats = async () => {
    const all = await new Promise<Record<string, string>>((resolve) =>
      client.stats((_error, _server, values) => resolve(values)),
    );
    return { bytes: Number(all.bytes), items: Number(all.curr_items) };
  };
  return {
    name: "Memcached",
    store,
    floor: {
      put: async (json) => void (await client.set("floor", json, { expires: 600 })),
      get: async () => JSON.parse(String((await client.get("floor")).value)),
    },
    bytesPerEntry: async (fill) => {
      const before = await stats();
      await fill();
      const after = await stats();
      return after.items > before.items
        ? (after.bytes - before.bytes) / (after.items - before.items)
        : undefined;
    },
    close: async () => {
      await store.close();
      client.quit();
      await server.kill();
    },
  };
}

interface RawMemjs {
  get(key: string): Promise<{ value: Buffer | null }>;
  set(key: string, value: string, options: { expires?: number }): Promise<boolean>;
  stats(
    callback: (error: Error | null, server: string, values: Record<string, string>) => void,
  ): void;
  quit(): void;
}

async function postgresBackend(url: string): Promise<Backend> {
  const schema = `benchstores_${randomUUID().slice(0, 6)}`;
  const pool = new Pool({
    connectionString: url,
    max: 4,
    options: "-c plan_cache_mode=force_generic_plan",
  });
  const store = new PostgresStore({ pool, schema });
  await pool.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
  await pool.query(
    `CREATE UNLOGGED TABLE "${schema}".floor (key text PRIMARY KEY, value text NOT NULL)`,
  );
  const size = async () =>
    Number(
      (await pool.query(`SELECT pg_total_relation_size('"${schema}".autocache_entries') AS n`))
        .rows[0].n,
    );
  return {
    name: "PostgreSQL (UNLOGGED tables)",
    store,
    floor: {
      put: async (json) =>
        void (await pool.query(`INSERT INTO "${schema}".floor VALUES ('floor', $1)`, [json])),
      get: async () =>
        JSON.parse(
          (
            await pool.query({
              name: "benchstores_floor",
              text: `SELECT value FROM "${schema}".floor WHERE key = $1`,
              values: ["floor"],
            })
          ).rows[0].value,
        ),
    },
    bytesPerEntry: async (fill) => {
      const before = await size();
      await fill();
      return ((await size()) - before) / ENTRIES;
    },
    close: async () => {
      await store.close();
      await pool.query(`DROP SCHEMA "${schema}" CASCADE`);
      await pool.end();
    },
  };
}

interface Placement {
  writers: number;
  transactions: number;
  inside: { perSecond: number; p50: number };
  after: { perSecond: number; p50: number };
}

/**
 * Where a PostgresStore bump belongs. `writers` connections each run transactions that update a
 * row of their own, then spend 5 ms (sleeping, so the figure does not depend on the CPU); the bump
 * runs either inside the transaction, right after the write as an invalidation atomic with the
 * commit would, or after the COMMIT. Inside, the clock row every bump updates stays locked until
 * the COMMIT, so writers of any table queue behind each other.
 */
async function bumpPlacement(url: string): Promise<Placement> {
  const schema = `benchstores_${randomUUID().slice(0, 6)}`;
  const writers = 8;
  const transactions = 60;
  const pool = new Pool({ connectionString: url, max: writers + 1 });
  const store = new PostgresStore({ pool, schema });
  try {
    await store.stamp("clock");
    await pool.query(`CREATE TABLE "${schema}".rows (id int PRIMARY KEY, n int NOT NULL)`);
    await pool.query(
      `INSERT INTO "${schema}".rows SELECT i, 0 FROM generate_series(1, ${writers}) i`,
    );
    const bump = `SELECT "${schema}".autocache_raise('clock', ARRAY['v:rows'])`;
    const run = async (inside: boolean) => {
      const latencies: number[] = [];
      const started = performance.now();
      await Promise.all(
        Array.from({ length: writers }, async (_, w) => {
          const client = await pool.connect();
          try {
            for (let t = 0; t < transactions; t++) {
              const start = performance.now();
              await client.query("BEGIN");
              await client.query(`UPDATE "${schema}".rows SET n = n + 1 WHERE id = $1`, [w + 1]);
              if (inside) await client.query(bump);
              await client.query("SELECT pg_sleep(0.005)");
              await client.query("COMMIT");
              if (!inside) await client.query(bump);
              latencies.push((performance.now() - start) * 1000);
            }
          } finally {
            client.release();
          }
        }),
      );
      const seconds = (performance.now() - started) / 1000;
      return { perSecond: (writers * transactions) / seconds, p50: median(latencies) };
    };
    await run(false);
    const after = await run(false);
    const inside = await run(true);
    return { writers, transactions, inside, after };
  } finally {
    await store.close();
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await pool.end();
  }
}

function report(figures: readonly StoreFigures[], placement: Placement): string {
  const us = (values: readonly number[]) =>
    `${median(values).toFixed(0)} µs (p99 ${quantile(values, 0.99).toFixed(0)})`;
  const lines = [
    "## Stores side by side",
    "",
    `Medians of ${CALLS} calls (misses and saves: ${CALLS / 4}) through a QueryCache's low-level API, on a ${JSON.stringify(VALUE).length.toLocaleString("en-US")}-byte value.`,
    "The floor is the store's own plain read of the same JSON with the same client, and JSON.parse.",
    "",
    "| store | floor (plain get + parse) | hit | hit over floor | miss (lookup + stamp + store) | save's invalidation | memory per entry |",
    "| --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const f of figures) {
    const over = median(f.hit) - median(f.floor);
    const bytes =
      f.bytesPerEntry === undefined
        ? "n/a"
        : `${Math.round(f.bytesPerEntry).toLocaleString("en-US")} B`;
    lines.push(
      `| ${f.name} | ${us(f.floor)} | ${us(f.hit)} | +${over.toFixed(0)} µs | ${us(f.miss)} | ${us(f.save)} | ${bytes} |`,
    );
  }
  lines.push(
    "",
    "## Where a PostgreSQL bump belongs",
    "",
    `${placement.writers} writers × ${placement.transactions} transactions, each updating its own row, then 5 ms of work before COMMIT:`,
    "",
    "| bump | transactions/s | median transaction |",
    "| --- | --- | --- |",
    `| after COMMIT (what the library does) | ${placement.after.perSecond.toFixed(0)} | ${(placement.after.p50 / 1000).toFixed(1)} ms |`,
    `| inside the transaction, right after the write | ${placement.inside.perSecond.toFixed(0)} | ${(placement.inside.p50 / 1000).toFixed(1)} ms |`,
    "",
  );
  return lines.join("\n");
}

/** `node dist/bench/stores.js` runs this section alone. */
if (require.main === module) {
  void (async () => {
    const { getServices, stopServices } = await import("../example/services");
    const { pgUrl, redisUrl } = await getServices();
    try {
      await benchStores(pgUrl, redisUrl, console.log);
    } finally {
      await stopServices();
    }
  })().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
