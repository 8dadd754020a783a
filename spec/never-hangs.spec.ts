import { expect } from "chai";
import { DataSource } from "typeorm";
import { QueryCache, QueryCacheSubscriber, RedisStore } from "../lib";
import { getServices } from "../example/services";
import { entities, Post } from "./support/entities";
import { dropNamespace, openDataSource, openRedis, SelectCounter, uniqueNamespace } from "./support/fixture";
import { PostRepository } from "./support/repositories";
import { within } from "./support/within";

// Generous: a broken cache hangs forever, a working one answers in milliseconds.
const BOUND_MS = 20_000;

/** A DataSource on the spec's schema with its own pool options, a QueryCache on it, and how to close both. */
async function openPooled(ns: string, options: { extra?: Record<string, unknown>; url?: string } = {}) {
  const { pgUrl } = await getServices();
  const dataSource = new DataSource({
    type: "postgres",
    url: options.url ?? pgUrl,
    schema: ns,
    entities,
    subscribers: [QueryCacheSubscriber, SelectCounter],
    extra: options.extra,
  });
  await dataSource.initialize();
  const redis = await openRedis();
  const cache = new QueryCache({ dataSource, store: new RedisStore(redis), namespace: ns });
  const warnings: string[] = [];
  cache.on("warning", (message: string) => warnings.push(message));
  return {
    dataSource,
    cache,
    redis,
    warnings,
    posts: new PostRepository(Post, dataSource.manager),
    async close() {
      await cache.close();
      await dataSource.destroy();
      redis.disconnect();
    },
  };
}

describe("nothing hangs: the cache never waits for a pool connection while the caller holds one", () => {
  const ns = uniqueNamespace();
  let admin: DataSource;

  before(async () => {
    admin = await openDataSource({ fresh: true, schema: ns });
  });
  after(async () => {
    const redis = await openRedis();
    await dropNamespace(redis, ns);
    redis.disconnect();
    await admin.destroy();
  });
  beforeEach(async () => {
    await admin.query(`TRUNCATE "${ns}"."post" CASCADE`);
  });

  it("with a pool of one connection, the first query after new QueryCache() returns, and reads are cached and fresh", async () => {
    const app = await openPooled(ns, { extra: { max: 1 } });
    try {
      await within(BOUND_MS, app.posts.insert({ title: "a" }), "the first insert");
      for (let i = 0; i < 3; i++) await within(BOUND_MS, app.posts.findAll(), "a cached read");
      expect(app.cache.stats().hits).to.be.greaterThan(0);
      await within(BOUND_MS, app.posts.insert({ title: "b" }), "a write");
      expect((await within(BOUND_MS, app.posts.findAll(), "the read after the write")).map((p) => p.title)).to.deep.equal(["a", "b"]);
    } finally {
      await app.close();
    }
  });

  it("with a pool of one connection, DDL and the write that follows it return", async () => {
    const app = await openPooled(ns, { extra: { max: 1 } });
    try {
      await within(BOUND_MS, app.dataSource.query(`SELECT 1`), "the first query");
      await within(BOUND_MS, app.dataSource.query(`CREATE TABLE "${ns}"."ddl_made" (id int)`), "CREATE TABLE");
      await within(BOUND_MS, app.dataSource.query(`INSERT INTO "${ns}"."ddl_made" VALUES (1)`), "the insert after it");
      await within(BOUND_MS, app.dataSource.query(`ALTER TABLE "${ns}"."ddl_made" ADD COLUMN note text`), "ALTER TABLE");
      await within(BOUND_MS, app.dataSource.query(`DROP TABLE "${ns}"."ddl_made"`), "DROP TABLE");
    } finally {
      await app.close();
    }
  });

  it("with a pool of one connection, a write to a table another process created returns and invalidates what read it", async () => {
    const app = await openPooled(ns, { extra: { max: 1 } });
    try {
      await within(BOUND_MS, app.dataSource.query(`SELECT 1`), "the first query");
      await admin.query(`CREATE TABLE "${ns}"."elsewhere" (id int)`);
      const read = () => app.cache.wrap("elsewhere", () => app.dataSource.query(`SELECT count(*)::int AS n FROM "${ns}"."elsewhere"`));
      for (let i = 0; i < 3; i++) await within(BOUND_MS, read(), "a cached read of the new table");
      await within(BOUND_MS, app.dataSource.query(`INSERT INTO "${ns}"."elsewhere" VALUES (1)`), "the write to the new table");
      expect(await within(BOUND_MS, read(), "the read after the write")).to.deep.equal([{ n: 1 }]);
    } finally {
      await app.close();
      await admin.query(`DROP TABLE IF EXISTS "${ns}"."elsewhere"`);
    }
  });

  it("with the default pool, ten concurrent queries right after new QueryCache() all succeed", async () => {
    const app = await openPooled(ns);
    try {
      const results = await within(
        BOUND_MS,
        Promise.all(Array.from({ length: 10 }, (_, i) => app.dataSource.query(`SELECT $1::int AS i`, [i]))),
        "ten concurrent queries",
      );
      expect(results.map((rows) => rows[0].i)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    } finally {
      await app.close();
    }
  });

  it("with the default pool, ten concurrent cached reads and writes right after new QueryCache() all succeed", async () => {
    const app = await openPooled(ns);
    try {
      const calls = Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? app.posts.findAll() : app.posts.insert({ title: `t${i}` })));
      await within(BOUND_MS, Promise.all(calls), "ten concurrent calls");
      expect((await within(BOUND_MS, app.posts.findAll(), "the read after them")).length).to.equal(5);
    } finally {
      await app.close();
    }
  });
});
