import type Redis from "ioredis";
import { Client } from "pg";
import { DataSource } from "typeorm";
import { getServices } from "../../example/services";
import { ChangeFeed, type Delivery, QueryCache, QueryCacheSubscriber, RedisStore } from "../../lib";
import { FeedWorker } from "../support/feed-worker";
import { openRedis, uniqueNamespace } from "../support/fixture";
import { Account, freshnessEntities, TABLES } from "./entities";
import type { Environment } from "./harness";
import type { WriteRecord } from "./history";
import { Random } from "./random";
import type { Profile } from "./workload";

export interface OutsideOptions {
  /** The database the run uses (it needs wal_level=logical when the feed is on). */
  readonly pgUrl: string;
  readonly writes: number;
  readonly seed: number;
  readonly profile: Profile;
  /**
   * Whether a ChangeFeed follows the database for the run's namespace: in this process, or in a
   * worker process that is killed (SIGKILL) halfway through the writes and replaced.
   */
  readonly feed: "off" | "in-process" | "killed-midway";
}

/** What the outside writers measured: for each committed write, commit returned to delivery. */
export interface OutsideResult {
  readonly committed: number;
  readonly failed: number;
  readonly delaysMs: number[];
}

type Write = (t: (name: string) => string, id: string, rng: Random, p: Profile) => string[];

/**
 * Writes past the library, each in a transaction of its own, labelled (fr.op) so the history
 * checker attributes them: plain pg clients running UPDATE, INSERT, DELETE and COPY FROM. A
 * write counts as returned (its record's `end`) once the feed delivered its invalidations (when
 * the feed is on): the checker then proves no read that started after that saw older data, and
 * commit-to-delivery is the delay reported.
 */
const PLAIN_WRITES: readonly Write[] = [
  (t, _id, rng, p) => [
    `UPDATE ${t(TABLES.account)} SET balance = balance + 1 WHERE id = ${rng.int(1, p.accounts)}`,
  ],
  (t, _id, rng, p) => [
    `UPDATE ${t(TABLES.account)} SET grp = ${rng.int(0, p.groups - 1)} WHERE id = ${rng.int(1, p.accounts)}`,
  ],
  (t, id, rng, p) => [
    `INSERT INTO ${t(TABLES.item)} (id, account_id, qty) VALUES (${1_000_000 + Number(id.slice(1))}, ${rng.int(1, p.accounts)}, 1) ON CONFLICT DO NOTHING`,
  ],
  (t, _id, rng, p) => [`DELETE FROM ${t(TABLES.item)} WHERE id = ${rng.int(1, p.items)}`],
  (t, id, rng, p) => [
    `COPY ${t(TABLES.item)} (id, account_id, qty) FROM PROGRAM 'printf "${2_000_000 + Number(id.slice(1))}\\t${rng.int(1, p.accounts)}\\t2\\n"'`,
  ],
];

/**
 * Runs beside the workload (FreshnessOptions.during): `writes` outside writes, a fifth of them by
 * a second application (its own DataSource and QueryCache, another namespace, writing through
 * TypeORM), the rest by plain pg clients. Each is pushed to the recorder as it ends.
 */
export function outsideWriters(options: OutsideOptions): {
  during: (env: Environment) => Promise<void>;
  result: OutsideResult;
} {
  const result = { committed: 0, failed: 0, delaysMs: [] as number[] };
  const during = async (env: Environment) => {
    const clock = env.recorder;
    const delivered = new Map<number, number>();
    const waiting = new Map<number, () => void>();
    const slot = `fr_${env.namespace}`.toLowerCase();
    const deliveredNow = (xids: readonly number[]) => {
      const at = clock.now();
      for (const xid of xids) {
        delivered.set(xid, at);
        waiting.get(xid)?.();
      }
    };
    let feed: ChangeFeed | undefined;
    let worker: FeedWorker | undefined;
    const startWorker = async () => {
      const { redisUrl } = await getServices();
      worker = FeedWorker.start({
        pgUrl: options.pgUrl,
        redisUrl,
        namespace: env.namespace,
        schema: env.namespace,
        slot,
        retryInterval: 200,
      });
      // Seen by this process a moment after the worker delivered: the checker is as lenient as that moment.
      worker.on("delivered", (xids: string[]) => deliveredNow(xids.map(Number)));
      await worker.waitFor("active");
    };
    if (options.feed === "in-process") {
      feed = new ChangeFeed({
        cache: env.apps[0].cache,
        connection: { connectionString: options.pgUrl },
        slot,
      });
      feed.on("delivered", (delivery: Delivery) => deliveredNow(delivery.xids));
      await feed.start();
    } else if (options.feed === "killed-midway") {
      await startWorker();
    }
    const other = await openOtherApp(options.pgUrl, env.namespace);
    try {
      const t = (name: string) => `"${env.namespace}"."${name}"`;
      for (let n = 0; n < options.writes; n++) {
        const rng = Random.forOperation(options.seed, 1_000_000 + n);
        const id = `o${n + 1}`;
        const start = clock.now();
        let xid: number | undefined;
        let committedAt: number;
        let label: string;
        try {
          if (rng.chance(0.2)) {
            label = "outside: another namespace's update";
            xid = await other.write(id, rng.int(1, options.profile.accounts));
            committedAt = clock.now();
          } else {
            const write = PLAIN_WRITES[rng.int(0, PLAIN_WRITES.length - 1)];
            const statements = write(t, id, rng, options.profile);
            label = `outside: ${statements[0].split(" ")[0]}`;
            ({ xid, committedAt } = await plainWrite(options.pgUrl, id, statements, () =>
              clock.now(),
            ));
          }
        } catch (error) {
          result.failed++;
          clock.writes.push({
            id,
            label: "outside",
            start,
            commitFrom: start,
            end: clock.now(),
            outcome: "failed",
            error: (error as Error).message,
          });
          continue;
        }
        // Killed as soon as the commit returned: most likely holding it undelivered.
        if (worker && n === Math.floor(options.writes / 2)) {
          await worker.kill();
          await startWorker();
        }
        let end = committedAt;
        // A transaction that changed no row is not in the stream at all, and has nothing to invalidate.
        if (options.feed !== "off" && xid !== undefined) {
          if (!delivered.has(xid)) await deliveryOf(xid, waiting);
          end = Math.max(committedAt, delivered.get(xid) as number);
          result.delaysMs.push(end - committedAt);
        }
        result.committed++;
        const record: WriteRecord = {
          id,
          label,
          start,
          commitFrom: start,
          end,
          outcome: "committed",
        };
        clock.writes.push(record);
      }
    } finally {
      await other.close();
      await worker?.kill();
      if (feed) await feed.dropSlot();
      else if (worker) await dropSlotOf(options.pgUrl, slot);
    }
  };
  return { during, result };
}

async function dropSlotOf(pgUrl: string, slot: string): Promise<void> {
  const client = new Client({ connectionString: pgUrl });
  await client.connect();
  try {
    // The killed worker's connection may take a moment to be noticed; the slot is free once it is.
    for (let attempt = 0; ; attempt++) {
      try {
        await client.query(`SELECT pg_drop_replication_slot($1)`, [slot]);
        return;
      } catch (error) {
        if (attempt >= 50) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  } finally {
    await client.end();
  }
}

/** Resolves once the feed delivered this transaction; a feed that lost it fails the run. */
function deliveryOf(xid: number, waiting: Map<number, () => void>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the change feed never delivered transaction ${xid}`)),
      30_000,
    );
    waiting.set(xid, () => {
      clearTimeout(timer);
      waiting.delete(xid);
      resolve();
    });
  });
}

/**
 * One transaction by a plain pg client, labelled for the log; resolves with its id if it changed
 * rows, and when its COMMIT returned.
 */
async function plainWrite(
  pgUrl: string,
  id: string,
  statements: readonly string[],
  now: () => number,
): Promise<{ xid?: number; committedAt: number }> {
  const client = new Client({ connectionString: pgUrl });
  await client.connect();
  try {
    await client.query("BEGIN");
    await client.query(`SELECT set_config('fr.op', $1, true)`, [id]);
    let changed = 0;
    for (const sql of statements) changed += (await client.query(sql)).rowCount ?? 0;
    const xid = await currentXid(client);
    await client.query("COMMIT");
    return { xid: changed > 0 ? xid : undefined, committedAt: now() };
  } catch (error) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw error;
  } finally {
    await client.end();
  }
}

/** A second application on the same tables, with a QueryCache of another namespace. */
async function openOtherApp(pgUrl: string, schema: string) {
  const dataSource = await new DataSource({
    type: "postgres",
    url: pgUrl,
    schema,
    entities: freshnessEntities,
    subscribers: [QueryCacheSubscriber],
  }).initialize();
  const redis: Redis = await openRedis();
  const cache = new QueryCache({
    dataSource,
    store: new RedisStore(redis),
    namespace: uniqueNamespace(),
  });
  return {
    write: (id: string, account: number) =>
      dataSource.transaction(async (em) => {
        await em.query(`SELECT set_config('fr.op', $1, true)`, [id]);
        const { affected } = await em.increment(Account, { id: account }, "balance", 1);
        const [{ xid }] = await em.query(
          `SELECT (pg_current_xact_id()::text::bigint % 4294967296)::int8 AS xid`,
        );
        return affected ? Number(xid) : undefined;
      }),
    async close() {
      await cache.close();
      await dataSource.destroy();
      redis.disconnect();
    },
  };
}

async function currentXid(client: Client): Promise<number> {
  const { rows } = await client.query(
    `SELECT (pg_current_xact_id()::text::bigint % 4294967296)::int8 AS xid`,
  );
  return Number(rows[0].xid);
}
