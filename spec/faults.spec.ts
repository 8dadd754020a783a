import { expect } from "chai";
import Redis from "ioredis";
import { QueryFailedError, Repository } from "typeorm";
import { freePort } from "../example/loopback";
import { Cached, MemoryStore, QueryCache } from "../lib";
import type { QueryCacheOptions } from "../lib/options";
import { Post } from "./support/entities";
import {
  type App,
  dropNamespace,
  openApp,
  openDataSource,
  selectCount,
  uniqueNamespace,
} from "./support/fixture";
import { RedisProcess } from "./support/redis-process";
import type { PostRepository } from "./support/repositories";
import { Gate, sleep, timed, until } from "./support/wait";
import { readUntilHit } from "./support/warm";

const thrownByMethod = new RangeError("boom from the method");

/** Cached methods whose SQL PostgreSQL rejects, counting how often they really run. */
class FaultyRepository extends Repository<Post> {
  runs = 0;

  @Cached(60)
  syntaxError(): Promise<unknown> {
    this.runs++;
    return this.query("SELECT * FROM WHERE");
  }

  @Cached(60)
  missingTable(): Promise<unknown> {
    this.runs++;
    return this.query(`SELECT * FROM "no_such_table_autocache"`);
  }

  @Cached(60)
  divisionByZero(): Promise<unknown> {
    this.runs++;
    return this.query("SELECT 1 / count(*) AS x FROM (SELECT 1 WHERE false) AS empty");
  }

  @Cached(60)
  throws(): Promise<unknown> {
    this.runs++;
    throw thrownByMethod;
  }
}

function clientOf(server: RedisProcess): Redis {
  return new Redis(server.url, { maxRetriesPerRequest: 1 });
}

/**
 * What "bounded time" means here: far above a store timeout, far below what waiting for Redis
 * would cost (a connect timeout of 10 s, or a pause that lasts until the spec ends it). It only
 * catches waiting; a busy machine stays well inside it.
 */
const BOUNDED_MS = 5000;

const viewsOf = (rows: Post[]) => rows.map((p) => p.views);

describe("faults: the cache fails open, answers in bounded time and never serves stale data", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace();
  let app: App;
  let posts: PostRepository;
  const servers: RedisProcess[] = [];
  const nodes: App[] = [];

  async function server(): Promise<RedisProcess> {
    const started = await RedisProcess.start();
    servers.push(started);
    return started;
  }

  /** Another application process over the tables of `app`, on its own Redis client. */
  async function node(redis: Redis, options: Partial<QueryCacheOptions> = {}): Promise<App> {
    const opened = await openApp(ns, { redis, cache: options, connect: false, setUp: true });
    nodes.push(opened);
    return opened;
  }

  before(async () => {
    // The tables live in the schema named after the namespace (see openApp).
    app = await openApp(ns, { fresh: true });
    posts = app.posts;
  });

  afterEach(async () => {
    for (const opened of nodes.splice(0)) await opened.close().catch(() => undefined);
    for (const started of servers.splice(0)) await started.stop();
  });

  after(async () => {
    await dropNamespace(app.redis, ns);
    await app.close();
  });

  describe("Redis unreachable from the start", () => {
    const clients: [string, (port: number) => Redis][] = [
      [
        "a lazyConnect client without offline queue",
        (port) =>
          new Redis({
            host: "127.0.0.1",
            port,
            lazyConnect: true,
            maxRetriesPerRequest: 1,
            enableOfflineQueue: false,
          }),
      ],
      [
        "a client that keeps reconnecting",
        (port) =>
          new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 1, retryStrategy: () => 50 }),
      ],
    ];

    for (const [name, makeClient] of clients) {
      it(`answers from the database, without errors and in bounded time, with ${name}`, async () => {
        const down = await node(makeClient(await freePort()));
        const title = `unreachable ${name}`;
        const durations: number[] = [];
        const read = async () => {
          const { value, ms } = await timed(() => down.posts.byTitle({ title }));
          durations.push(ms);
          return viewsOf(value);
        };

        const first = await timed(() => down.posts.save({ title, views: 1 }));
        durations.push(first.ms);
        expect(await read()).to.deep.equal([1]);
        const selects = selectCount(down.dataSource);
        expect(await read()).to.deep.equal([1]);
        expect(
          selectCount(down.dataSource) - selects,
          "without a store every call reads the database",
        ).to.equal(1);

        const write = await timed(() => down.posts.update({ title }, { views: 2 }));
        durations.push(write.ms);
        for (let i = 0; i < 5; i++) expect(await read()).to.deep.equal([2]);
        // Every read path of the low-level API too.
        expect(
          await down.cache.wrap(`w:${title}`, async () =>
            viewsOf(await down.posts.findBy({ title })),
          ),
        ).to.deep.equal([2]);
        expect(await down.cache.get(`k:${title}`)).to.equal(undefined);
        expect(await down.cache.set(`k:${title}`, 1)).to.equal(false);

        expect(
          Math.max(...durations),
          `slowest call ${Math.max(...durations).toFixed(0)} ms`,
        ).to.be.below(BOUNDED_MS);
        expect(down.cache.stats().errors).to.be.greaterThan(0);
        expect(down.storeErrors.length).to.be.greaterThan(0);
        expect(down.storeErrors[0]).to.be.instanceOf(Error);
      });
    }

    it("counts a call that bypasses the unreachable store as every other miss: the miss event, stats() and the per-method metrics", async () => {
      const down = await node(
        new Redis({
          host: "127.0.0.1",
          port: await freePort(),
          lazyConnect: true,
          maxRetriesPerRequest: 1,
          enableOfflineQueue: false,
        }),
      );
      const title = "counted while unreachable";
      await down.posts.save({ title, views: 1 });
      const methodMisses = () =>
        Object.values(down.cache.stats({ byMethod: true }).byMethod).reduce(
          (sum, method) => sum + method.misses,
          0,
        );
      const before = { ...down.cache.stats(), byMethod: methodMisses() };
      const misses: string[] = [];
      down.cache.on("miss", (key) => misses.push(key));
      // The first read finds the store down; the next ones compute without it, until it is trusted again.
      for (let i = 0; i < 4; i++)
        expect(viewsOf(await down.posts.byTitle({ title }))).to.deep.equal([1]);
      const after = down.cache.stats();
      expect(after.hits - before.hits, "nothing is served from an unreachable store").to.equal(0);
      expect(after.misses - before.misses, "one miss per call").to.equal(4);
      expect(misses, "one miss event per counted miss").to.have.length(4);
      expect(methodMisses() - before.byMethod, "the per-method misses").to.equal(4);
    });

    it("starts caching once a reconnecting client reaches Redis, and serves only fresh data", async () => {
      const port = await freePort();
      const late = await node(
        new Redis({ host: "127.0.0.1", port, maxRetriesPerRequest: 1, retryStrategy: () => 50 }),
      );
      const title = "comes up later";
      await late.posts.save({ title, views: 1 });
      expect(viewsOf(await late.posts.byTitle({ title }))).to.deep.equal([1]);
      await late.posts.update({ title }, { views: 2 }); // its invalidation stays pending

      servers.push(await RedisProcess.start(port));
      await until("the client is ready", () => late.redis.status === "ready");
      await readUntilHit(
        late,
        () => late.posts.byTitle({ title }),
        (rows) => expect(viewsOf(rows)).to.deep.equal([2]),
      );
      await late.posts.update({ title }, { views: 3 });
      expect(viewsOf(await late.posts.byTitle({ title }))).to.deep.equal([3]);
    });

    it("starts caching with a lazyConnect client nobody connected yet (ioredis connects on the first command)", async () => {
      const up = await server();
      const lazy = await node(
        new Redis({ host: "127.0.0.1", port: up.port, lazyConnect: true, maxRetriesPerRequest: 1 }),
      );
      const title = "lazy client";
      await lazy.posts.save({ title, views: 1 });
      await readUntilHit(
        lazy,
        () => lazy.posts.byTitle({ title }),
        (rows) => expect(viewsOf(rows)).to.deep.equal([1]),
      );
    });
  });

  describe("Redis frozen (SIGSTOP: connections open, nothing answers)", () => {
    it("answers fresh data within the store timeout, and a write made while it is frozen is never hidden", async () => {
      const frozen = await server();
      const a = await node(clientOf(frozen), { storeTimeout: 200 });
      const b = await node(clientOf(frozen), { storeTimeout: 200 });
      const title = "frozen";
      await a.posts.save({ title, views: 1 });
      const expectViews = (views: number) => (rows: Post[]) =>
        expect(viewsOf(rows)).to.deep.equal([views]);
      await readUntilHit(a, () => a.posts.byTitle({ title }), expectViews(1));
      await readUntilHit(b, () => b.posts.byTitle({ title }), expectViews(1));

      // Frozen until the spec thaws it: a call that waited for Redis would not return before that.
      frozen.freeze();
      try {
        const durations: number[] = [];
        const read = async (n: App) => {
          const { value, ms } = await timed(() => n.posts.byTitle({ title }));
          durations.push(ms);
          return viewsOf(value);
        };

        expect(await read(a)).to.deep.equal([1]);
        expect(
          durations[0],
          "Redis really is frozen: the lookup waited for the store timeout",
        ).to.be.at.least(150);
        await a.posts.update({ title }, { views: 2 });
        expect(await read(a), "the writer reads its write while Redis is frozen").to.deep.equal([
          2,
        ]);
        expect(
          await read(b),
          "another process reads the write while Redis is frozen",
        ).to.deep.equal([2]);
        expect(await read(a)).to.deep.equal([2]);
        expect(a.cache.stats().errors, "timeouts are counted").to.be.greaterThan(0);
      } finally {
        frozen.thaw();
      }
      expect(await a.posts.byTitle({ title }).then(viewsOf), "after the thaw").to.deep.equal([2]);
      expect(
        await b.posts.byTitle({ title }).then(viewsOf),
        "after the thaw, another process",
      ).to.deep.equal([2]);
      // The pending invalidation is delivered: both processes cache again, with the new data.
      await readUntilHit(a, () => a.posts.byTitle({ title }), expectViews(2));
      await readUntilHit(b, () => b.posts.byTitle({ title }), expectViews(2));
      expect(a.storeErrors.some((e) => e.name === "StoreTimeoutError")).to.equal(true);

      // And invalidation works as before.
      await a.posts.update({ title }, { views: 3 });
      expect(await b.posts.byTitle({ title }).then(viewsOf)).to.deep.equal([3]);
    });
  });

  describe("Redis killed and restarted empty", () => {
    it("answers during the outage, and serves nothing stale after the restart", async () => {
      const redis = await server();
      const a = await node(clientOf(redis));
      const b = await node(clientOf(redis));
      const title = "restart";
      const expectViews = (views: number) => (rows: Post[]) =>
        expect(viewsOf(rows)).to.deep.equal([views]);
      await a.posts.save({ title, views: 1 });
      await readUntilHit(a, () => a.posts.byTitle({ title }), expectViews(1));
      await readUntilHit(b, () => b.posts.byTitle({ title }), expectViews(1));
      // A computation that reads before the outage and finishes after the restart.
      const gate = new Gate();
      b.posts.gate = gate;
      const straddling = b.posts.held(title);
      await gate.arrived();

      await redis.kill();
      await until(
        "both clients saw the outage",
        () => a.redis.status !== "ready" && b.redis.status !== "ready",
      );
      const durations: number[] = [];
      const read = async (n: App) => {
        const { value, ms } = await timed(() => n.posts.byTitle({ title }));
        durations.push(ms);
        return viewsOf(value);
      };
      const write = await timed(() => a.posts.update({ title }, { views: 2 }));
      durations.push(write.ms);
      const during = a.cache.health();
      expect(during.storeReachable, "health() during the outage").to.equal(false);
      expect(
        during.undeliveredInvalidations,
        "the write's invalidation waits to be delivered",
      ).to.be.greaterThan(0);
      expect(await read(a), "the writer, during the outage").to.deep.equal([2]);
      expect(await read(b), "another process, during the outage").to.deep.equal([2]);
      expect(
        Math.max(...durations),
        `slowest call during the outage: ${Math.max(...durations).toFixed(0)} ms`,
      ).to.be.below(BOUNDED_MS);

      await redis.start();
      await until(
        "both clients reconnected",
        () => a.redis.status === "ready" && b.redis.status === "ready",
      );
      gate.open();
      expect(
        viewsOf(await straddling),
        "a call that began before the write may answer what it read",
      ).to.deep.equal([1]);
      await b.cache.settled();

      expect(await read(a)).to.deep.equal([2]);
      expect(await read(b)).to.deep.equal([2]);
      // Had its result been stored under its old stamp, this same call would now be a stale hit.
      expect(
        viewsOf(await b.posts.held(title)),
        "the straddling computation was not stored",
      ).to.deep.equal([2]);
      await readUntilHit(a, () => a.posts.byTitle({ title }), expectViews(2));
      await readUntilHit(b, () => b.posts.byTitle({ title }), expectViews(2));
      await readUntilHit(b, () => b.posts.held(title), expectViews(2));
      expect(a.cache.health(), "health() once the store is trusted again").to.deep.equal({
        storeReachable: true,
        undeliveredInvalidations: 0,
      });

      await a.posts.update({ title }, { views: 3 });
      expect(await read(b), "invalidation across processes works again").to.deep.equal([3]);
      expect(viewsOf(await b.posts.held(title))).to.deep.equal([3]);
    });
  });

  describe("single flight", () => {
    it("runs one SELECT for 50 concurrent calls on a cold key", async () => {
      const title = "flight";
      await posts.save({ title, views: 7 }); // creates the version of the post table
      await posts.byTitle({ title: "flight warm-up" }); // creates the version every entry depends on

      const before = selectCount(app.dataSource);
      const results = await Promise.all(Array.from({ length: 50 }, () => posts.byTitle({ title })));
      expect(selectCount(app.dataSource) - before, "SELECTs for 50 concurrent calls").to.equal(1);
      for (const rows of results) expect(viewsOf(rows)).to.deep.equal([7]);
      results[0][0].views = 99;
      expect(results[1][0].views, "every caller gets its own copy").to.equal(7);

      const again = selectCount(app.dataSource);
      expect(viewsOf(await posts.byTitle({ title }))).to.deep.equal([7]);
      expect(selectCount(app.dataSource) - again, "the shared result was stored").to.equal(0);
    });

    it("does not stampede the database when the table has no version in Redis yet (first use, or after Redis restarted)", async () => {
      const fresh = await server();
      const cold = await node(clientOf(fresh));
      const title = "stampede";
      await app.dataSource.getRepository(Post).save({ title, views: 5 });

      const before = selectCount(cold.dataSource);
      const results = await Promise.all(
        Array.from({ length: 50 }, () => cold.posts.byTitle({ title })),
      );
      for (const rows of results) expect(viewsOf(rows)).to.deep.equal([5]);
      // The first store write is refused by design (a missing version may hide a write), so one
      // more computation is fair; 50 is a stampede.
      expect(
        selectCount(cold.dataSource) - before,
        "SELECTs for 50 concurrent calls",
      ).to.be.at.most(2);
    });
  });

  describe("PostgreSQL errors", () => {
    let faulty: FaultyRepository;
    before(() => {
      faulty = new FaultyRepository(Post, app.dataSource.manager);
    });

    const cases: [string, (r: FaultyRepository) => Promise<unknown>, string, string][] = [
      ["a syntax error", (r) => r.syntaxError(), "SELECT * FROM WHERE", "42601"],
      [
        "a missing table",
        (r) => r.missingTable(),
        `SELECT * FROM "no_such_table_autocache"`,
        "42P01",
      ],
      [
        "an error at run time (division by zero)",
        (r) => r.divisionByZero(),
        "SELECT 1 / count(*) AS x FROM (SELECT 1 WHERE false) AS empty",
        "22012",
      ],
    ];

    for (const [name, call, sql, code] of cases) {
      it(`propagates ${name} unchanged and caches nothing`, async () => {
        const direct = await app.dataSource.query(sql).then(
          () => expect.fail("the query should fail"),
          (error: unknown) => error as QueryFailedError,
        );
        for (let i = 1; i <= 3; i++) {
          const runs = faulty.runs;
          const error = await call(faulty).then(
            () => expect.fail("the cached call should fail"),
            (e: unknown) => e as QueryFailedError & { driverError: { code: string } },
          );
          expect(error).to.be.instanceOf(QueryFailedError);
          expect(error.message).to.equal(direct.message);
          expect(error.query).to.equal(sql);
          expect(error.driverError.code).to.equal(code);
          expect(faulty.runs - runs, `call ${i} ran the query again`).to.equal(1);
        }
      });
    }

    it("gives the error to every concurrent caller, then runs the query again on the next call", async () => {
      const runs = faulty.runs;
      const outcomes = await Promise.allSettled(
        Array.from({ length: 10 }, () => faulty.missingTable()),
      );
      for (const outcome of outcomes) {
        expect(outcome.status).to.equal("rejected");
        expect((outcome as PromiseRejectedResult).reason).to.be.instanceOf(QueryFailedError);
      }
      const afterBurst = faulty.runs;
      expect(afterBurst - runs).to.be.within(1, 10);
      await faulty.missingTable().catch(() => undefined);
      expect(faulty.runs - afterBurst, "the failure was not cached").to.equal(1);
    });

    it("rethrows the very error object a cached method throws, and caches nothing", async () => {
      for (let i = 0; i < 2; i++) {
        const runs = faulty.runs;
        const error = await faulty.throws().then(
          () => expect.fail("should throw"),
          (e: unknown) => e,
        );
        expect(error).to.equal(thrownByMethod);
        expect(faulty.runs - runs).to.equal(1);
      }
    });

    it("does not crash the process when the catalog re-read after DDL fails (DDL, then dataSource.destroy())", async () => {
      // Mocha turns an unhandled rejection into an uncaught error; collect them here instead.
      const previous = process.listeners("unhandledRejection");
      const unhandled: unknown[] = [];
      const collect = (reason: unknown) => unhandled.push(reason);
      process.removeAllListeners("unhandledRejection");
      process.on("unhandledRejection", collect);
      try {
        const dataSource = await openDataSource({ schema: ns });
        const cache = new QueryCache({ dataSource, store: new MemoryStore(), namespace: ns });
        await dataSource.query("SELECT 1"); // the cache is set up
        // As a migration script does: DDL, then shut down.
        await dataSource.query(`CREATE TABLE "${ns}"."ddl_then_destroy" (id int)`);
        await dataSource.destroy();
        await cache.close();
        await sleep(500);
      } finally {
        process.off("unhandledRejection", collect);
        for (const listener of previous) process.on("unhandledRejection", listener);
      }
      expect(
        unhandled.map((r) => String(r)),
        "unhandled rejections",
      ).to.deep.equal([]);
    });

    it("keeps caching normally after failures", async () => {
      const title = "after errors";
      await posts.save({ title, views: 4 });
      await faulty.syntaxError().catch(() => undefined);
      await faulty.missingTable().catch(() => undefined);
      await readUntilHit(
        app,
        () => posts.byTitle({ title }),
        (rows) => expect(viewsOf(rows)).to.deep.equal([4]),
      );
    });
  });
});
