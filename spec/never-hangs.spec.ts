import { expect } from "chai";
import { DataSource } from "typeorm";
import { getServices } from "../example/services";
import { QueryCache, QueryCacheSubscriber, RedisStore } from "../lib";
import { entities, Post } from "./support/entities";
import {
  dropNamespace,
  openDataSource,
  openRedis,
  SelectCounter,
  uniqueNamespace,
} from "./support/fixture";
import { PostRepository } from "./support/repositories";
import { within } from "./support/within";

// Generous: a broken cache hangs forever, a working one answers in milliseconds.
const BOUND_MS = 20_000;

/** A DataSource on the spec's schema with its own pool options, a QueryCache on it, and how to close both. */
async function openPooled(
  ns: string,
  options: { extra?: Record<string, unknown>; url?: string } = {},
) {
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
      expect(
        (await within(BOUND_MS, app.posts.findAll(), "the read after the write")).map(
          (p) => p.title,
        ),
      ).to.deep.equal(["a", "b"]);
    } finally {
      await app.close();
    }
  });

  it("with a pool of one connection, DDL and the write that follows it return", async () => {
    const app = await openPooled(ns, { extra: { max: 1 } });
    try {
      await within(BOUND_MS, app.dataSource.query(`SELECT 1`), "the first query");
      await within(
        BOUND_MS,
        app.dataSource.query(`CREATE TABLE "${ns}"."ddl_made" (id int)`),
        "CREATE TABLE",
      );
      await within(
        BOUND_MS,
        app.dataSource.query(`INSERT INTO "${ns}"."ddl_made" VALUES (1)`),
        "the insert after it",
      );
      await within(
        BOUND_MS,
        app.dataSource.query(`ALTER TABLE "${ns}"."ddl_made" ADD COLUMN note text`),
        "ALTER TABLE",
      );
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
      const read = () =>
        app.cache.wrap("elsewhere", () =>
          app.dataSource.query(`SELECT count(*)::int AS n FROM "${ns}"."elsewhere"`),
        );
      for (let i = 0; i < 3; i++) await within(BOUND_MS, read(), "a cached read of the new table");
      await within(
        BOUND_MS,
        app.dataSource.query(`INSERT INTO "${ns}"."elsewhere" VALUES (1)`),
        "the write to the new table",
      );
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
        Promise.all(
          Array.from({ length: 10 }, (_, i) => app.dataSource.query(`SELECT $1::int AS i`, [i])),
        ),
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
      const calls = Array.from({ length: 10 }, (_, i) =>
        i % 2 === 0 ? app.posts.findAll() : app.posts.insert({ title: `t${i}` }),
      );
      await within(BOUND_MS, Promise.all(calls), "ten concurrent calls");
      expect((await within(BOUND_MS, app.posts.findAll(), "the read after them")).length).to.equal(
        5,
      );
    } finally {
      await app.close();
    }
  });
});

describe("a cache that cannot open its own connection degrades: queries succeed, nothing is cached, and writes invalidate once it can", () => {
  const ns = uniqueNamespace();
  const role = `${ns}_limited`;
  let admin: DataSource;

  before(async () => {
    admin = await openDataSource({ fresh: true, schema: ns });
    // A role allowed one connection: the application's pool of one takes it, the cache gets none.
    await admin.query(`CREATE ROLE "${role}" LOGIN CONNECTION LIMIT 1`);
    await admin.query(`GRANT USAGE ON SCHEMA "${ns}" TO "${role}"`);
    await admin.query(`GRANT ALL ON ALL TABLES IN SCHEMA "${ns}" TO "${role}"`);
    await admin.query(`GRANT ALL ON ALL SEQUENCES IN SCHEMA "${ns}" TO "${role}"`);
  });
  after(async () => {
    const redis = await openRedis();
    await dropNamespace(redis, ns);
    redis.disconnect();
    await admin.query(`DROP SCHEMA IF EXISTS "${ns}_first" CASCADE`);
    await admin.query(`DROP OWNED BY "${role}"`);
    await admin.query(`DROP ROLE "${role}"`);
    await admin.destroy();
  });

  it("when a catalog re-read fails, a write to a table it could not learn succeeds and invalidates every entry", async () => {
    await admin.query(`ALTER ROLE "${role}" CONNECTION LIMIT 2`);
    // Unqualified names resolve on this path; without the catalog, "made_later" could be in either schema.
    await admin.query(
      `CREATE SCHEMA IF NOT EXISTS "${ns}_first"; GRANT USAGE ON SCHEMA "${ns}_first" TO "${role}"`,
    );
    const { pgUrl } = await getServices();
    const url = new URL(pgUrl);
    url.username = role;
    const limited = await openPooled(ns, {
      url: url.toString(),
      extra: { max: 1, idleTimeoutMillis: 0, options: `-c search_path=${ns}_first,${ns}` },
    });
    const healthy = await openPooled(ns);
    try {
      await limited.dataSource.query(`SELECT 1`);
      // The cache's own connection is the role's newest: end it, and leave it no room to come back.
      await admin.query(`ALTER ROLE "${role}" CONNECTION LIMIT 1`);
      await admin.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1 ORDER BY backend_start DESC LIMIT 1`,
        [role],
      );
      await admin.query(
        `CREATE TABLE "${ns}"."made_later" (id int); INSERT INTO "${ns}"."made_later" VALUES (1)`,
      );
      await admin.query(`GRANT ALL ON "${ns}"."made_later" TO "${role}"`);
      const count = () =>
        healthy.cache.wrap("made-later", () =>
          healthy.dataSource.query(`SELECT count(*)::int AS n FROM "${ns}"."made_later"`),
        );
      for (let i = 0; i < 3; i++) await count();
      expect(
        healthy.cache.stats().hits,
        "the healthy process caches the new table",
      ).to.be.greaterThan(0);

      await within(
        BOUND_MS,
        limited.dataSource.query(`INSERT INTO made_later VALUES (2)`),
        "a write whose catalog read fails",
      );
      expect(await count(), "the write invalidated what read the table").to.deep.equal([{ n: 2 }]);
      expect(limited.warnings.join("\n")).to.match(/could not read the database catalog/);
    } finally {
      await limited.close();
      await healthy.close();
    }
  });

  it("serves fresh results uncached with a warning, and once it can connect, invalidates what the other processes cached", async () => {
    await admin.query(`ALTER ROLE "${role}" CONNECTION LIMIT 1`);
    const { pgUrl } = await getServices();
    const url = new URL(pgUrl);
    url.username = role;
    // idleTimeoutMillis 0: the pool keeps its one connection, so the role's limit stays reached.
    const limited = await openPooled(ns, {
      url: url.toString(),
      extra: { max: 1, idleTimeoutMillis: 0 },
    });
    const healthy = await openPooled(ns);
    try {
      await healthy.posts.insert({ title: "a" });
      for (let i = 0; i < 3; i++) await healthy.posts.findAll();
      expect(healthy.cache.stats().hits, "the healthy process caches").to.be.greaterThan(0);

      const read = await within(
        BOUND_MS,
        limited.posts.findAll(),
        "a cached call without a catalog connection",
      );
      expect(read.map((p) => p.title)).to.deep.equal(["a"]);
      await within(
        BOUND_MS,
        limited.posts.insert({ title: "b" }),
        "a write without a catalog connection",
      );
      expect((await limited.posts.findAll()).map((p) => p.title)).to.deep.equal(["a", "b"]);
      expect(limited.cache.stats().hits, "nothing is served from the cache meanwhile").to.equal(0);
      expect(limited.warnings.join("\n")).to.match(/own connection.*CONNECTION LIMIT/s);

      // Once the cache can connect, the write it could not charge invalidates every entry of the database.
      await admin.query(`ALTER ROLE "${role}" CONNECTION LIMIT 5`);
      const deadline = Date.now() + BOUND_MS;
      while (limited.cache.stats().invalidations === 0) {
        expect(Date.now(), "the cache never recovered its connection").to.be.below(deadline);
        await limited.dataSource.query(`SELECT 1`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(
        (await healthy.posts.findAll()).map((p) => p.title),
        "the other process's entry is gone",
      ).to.deep.equal(["a", "b"]);
    } finally {
      await limited.close();
      await healthy.close();
    }
  });
});
