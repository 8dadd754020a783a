import { expect } from "chai";
import Redis from "ioredis";
import { Client } from "pg";
import { ChangeFeed } from "../lib";
import { Post } from "./support/entities";
import { DeliveryLog, nextEvent, openFeedApp, outsideWrite } from "./support/feed-fixture";
import { FeedWorker, type WorkerConfig } from "./support/feed-worker";
import { type App, uniqueNamespace } from "./support/fixture";
import { LogicalPostgres } from "./support/logical-postgres";
import { RedisProcess } from "./support/redis-process";
import { RedisProxy } from "./support/redis-proxy";
import { PostRepository } from "./support/repositories";
import { warm } from "./support/warm";

/**
 * The feed under faults. Reads are checked through a second instance (`reader`) on the same
 * Redis that makes no call during an outage: an instance that saw the store fail distrusts it
 * afterwards by itself, which would hide an invalidation the feed lost.
 */
describe("change feed under faults: nothing committed is lost", function () {
  this.timeout(120_000);
  const ns = uniqueNamespace();
  let pg: LogicalPostgres;
  let redisServer: RedisProcess;
  let reader: App;
  let posts: PostRepository;
  let slotNumber = 0;

  before(async () => {
    pg = await LogicalPostgres.start();
    redisServer = await RedisProcess.start();
    reader = await openFeedApp(pg, ns, {
      fresh: true,
      redis: new Redis(redisServer.url, { maxRetriesPerRequest: 1 }),
    });
    posts = new PostRepository(Post, reader.dataSource.manager);
  });
  after(async () => {
    await reader?.close();
    await redisServer?.stop();
    await pg?.stop();
  });
  beforeEach(async () => {
    await pg.sql(`TRUNCATE "${ns}".post CASCADE`);
    await pg.sql(`INSERT INTO "${ns}".post (title, published) VALUES ('one', true), ('two', true)`);
    await reader.cache.clear();
  });

  const titles = (rows: Post[]) => rows.map((p) => p.title);
  /** An instance of the application on this spec's own Redis, which the faults stop and freeze. */
  const openApp = () =>
    openFeedApp(pg, ns, { redis: new Redis(redisServer.url, { maxRetriesPerRequest: 1 }) });
  const feedOf = (app: App, slot: string) =>
    new ChangeFeed({ cache: app.cache, connection: pg.config, slot, retryInterval: 200 });
  const nextSlot = () => `faults_${ns}_${++slotNumber}`;
  const worker = (slot: string, redisUrl = redisServer.url): FeedWorker =>
    FeedWorker.start({
      pgUrl: pg.url,
      redisUrl,
      namespace: ns,
      schema: ns,
      slot,
      retryInterval: 200,
    } satisfies WorkerConfig);
  const insert = (title: string) =>
    outsideWrite(pg, `INSERT INTO "${ns}".post (title, published) VALUES ('${title}', true)`);

  it("a consumer killed (SIGKILL) holding a commit it could not deliver: its successor delivers it", async () => {
    const slot = nextSlot();
    const proxy = await RedisProxy.start(redisServer.url);
    const first = worker(slot, proxy.url);
    let second: FeedWorker | undefined;
    try {
      await first.waitFor("active");
      expect(titles(await warm(reader, () => posts.findAll()))).to.deep.equal(["one", "two"]);
      for (const connection of proxy.connections) connection.hold();
      const { xid } = await insert("three");
      await first.waitFor("undelivered");
      await first.kill();
      // Were the commit confirmed, the server would not send it again and this would time out.
      second = worker(slot);
      await second.delivered(xid);
      expect(titles(await posts.findAll())).to.deep.equal(["one", "two", "three"]);
    } finally {
      await first.kill();
      await second?.kill();
      for (const connection of proxy.connections) connection.release();
      await proxy.close();
      await pg.sql(`SELECT pg_drop_replication_slot('${slot}')`);
    }
  });

  it("Redis down while changes arrive: nothing is confirmed, and everything is delivered once it is back", async () => {
    const slot = nextSlot();
    const holder = await openApp();
    let feed = feedOf(holder, slot);
    try {
      await feed.start();
      let log = new DeliveryLog(feed);
      expect(titles(await warm(reader, () => posts.findAll()))).to.deep.equal(["one", "two"]);

      // Down, then back while the feed runs: it keeps retrying and delivers.
      redisServer.freeze();
      const failed = nextEvent(feed, "feedError");
      const three = await insert("three");
      await failed;
      redisServer.thaw();
      await log.covering(three.xid);
      expect(titles(await posts.findAll())).to.deep.equal(["one", "two", "three"]);

      // Down, and the feed stops before it is back: what it could not deliver stays in the slot.
      redisServer.freeze();
      const failedAgain = nextEvent(feed, "feedError");
      const four = await insert("four");
      await failedAgain;
      await feed.stop();
      redisServer.thaw();
      feed = feedOf(holder, slot);
      log = new DeliveryLog(feed);
      await feed.start();
      await log.covering(four.xid);
      expect(titles(await posts.findAll())).to.deep.equal(["one", "two", "three", "four"]);
    } finally {
      redisServer.thaw();
      await feed.dropSlot();
      await holder.close();
    }
  });

  it("confirms exactly a commit's end: a commit right after a delivered one is sent again after a restart", async () => {
    const slot = nextSlot();
    const holder = await openApp();
    let feed = feedOf(holder, slot);
    const first = new Client(pg.config);
    const second = new Client(pg.config);
    try {
      await feed.start();
      let log = new DeliveryLog(feed);
      await Promise.all([first.connect(), second.connect()]);
      expect(titles(await warm(reader, () => posts.findAll()))).to.deep.equal(["one", "two"]);
      // Two transactions whose rows are written before either commits: the second's COMMIT
      // record then directly follows the first's in the WAL.
      for (const [client, title] of [
        [first, "three"],
        [second, "four"],
      ] as const) {
        await client.query("BEGIN");
        await client.query(`INSERT INTO "${ns}".post (title, published) VALUES ('${title}', true)`);
      }
      const xidOf = async (client: Client) =>
        Number(
          (
            await client.query(
              `SELECT (pg_current_xact_id()::text::bigint % 4294967296)::int8 AS xid`,
            )
          ).rows[0].xid,
        );
      const xid1 = await xidOf(first);
      const xid2 = await xidOf(second);
      await first.query("COMMIT");
      const { delivery } = await log.covering(xid1);
      redisServer.freeze();
      const failed = nextEvent(feed, "feedError");
      const [{ at }] = (await second.query(`SELECT pg_current_wal_insert_lsn()::text AS at`)).rows;
      await second.query("COMMIT");
      expect(at, "the second COMMIT record starts where the first ended").to.equal(delivery.lsn);
      await failed;
      await feed.stop();
      redisServer.thaw();
      feed = feedOf(holder, slot);
      log = new DeliveryLog(feed);
      await feed.start();
      await log.covering(xid2);
      expect(titles(await posts.findAll())).to.deep.equal(["one", "two", "three", "four"]);
    } finally {
      redisServer.thaw();
      await Promise.all([first.end(), second.end()]);
      await feed.dropSlot();
      await holder.close();
    }
  });

  it("PostgreSQL restarted: the feed reconnects and delivers what committed before and after", async () => {
    const slot = nextSlot();
    const holder = await openApp();
    const feed = feedOf(holder, slot);
    const log = new DeliveryLog(feed);
    try {
      await feed.start();
      expect(titles(await warm(reader, () => posts.findAll()))).to.deep.equal(["one", "two"]);
      const before = await insert("three");
      await pg.restart();
      const after = await insert("four");
      await log.covering(before.xid, 60_000);
      await log.covering(after.xid, 60_000);
      expect(titles(await readAfterRestart())).to.deep.equal(["one", "two", "three", "four"]);
    } finally {
      await feed.dropSlot();
      await holder.close();
    }
  });

  it("takeover: when the holder dies, a standby takes the slot within a bounded time and delivers", async () => {
    const slot = nextSlot();
    const holder = worker(slot);
    const standbyApp = await openApp();
    const standby = feedOf(standbyApp, slot);
    const log = new DeliveryLog(standby);
    try {
      await holder.waitFor("active");
      const waiting = nextEvent(standby, "standby");
      await standby.start();
      await waiting;
      expect(standby.isActive).to.equal(false);
      const took = nextEvent(standby, "active");
      const killedAt = performance.now();
      await holder.kill();
      await took;
      const takeoverMs = performance.now() - killedAt;
      console.log(
        `      takeover after SIGKILL of the holder: ${takeoverMs.toFixed(0)} ms (retryInterval 200 ms)`,
      );
      // The bound: a retry interval, a connection, and the server noticing the dead peer; generous for a busy machine.
      expect(takeoverMs).to.be.below(10_000);
      expect(titles(await warm(reader, () => posts.findAll()))).to.deep.equal(["one", "two"]);
      const { xid } = await insert("three");
      await log.covering(xid);
      expect(titles(await posts.findAll())).to.deep.equal(["one", "two", "three"]);
    } finally {
      await holder.kill();
      await standby.dropSlot();
      await standbyApp.close();
    }
  });

  /** The reader's pool still holds connections the restart cut; the pool drops each on its first use. */
  async function readAfterRestart(): Promise<Post[]> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await posts.findAll();
      } catch (error) {
        if (attempt >= 10) throw error;
      }
    }
  }
});
