import { expect } from "chai";
import Redis from "ioredis";
import { Repository } from "typeorm";
import type { CacheStore } from "../lib";
import { Cached, MemoryStore, RedisStore } from "../lib";
import { runFreshness } from "./freshness/harness";
import { Author, Post } from "./support/entities";
import { type App, dropNamespace, openApp, selectCount, uniqueNamespace } from "./support/fixture";
import { RedisProcess } from "./support/redis-process";
import { PostRepository } from "./support/repositories";

class PostsById extends Repository<Post> {
  @Cached(60)
  byId(id: number): Promise<Post | null> {
    return this.findOneBy({ id });
  }
}

/** Counts how many of the calls ran SQL. */
async function ranSql(app: App, ...calls: (() => Promise<unknown>)[]): Promise<boolean[]> {
  const out: boolean[] = [];
  for (const call of calls) {
    const before = selectCount(app.dataSource);
    await call();
    out.push(selectCount(app.dataSource) > before);
  }
  return out;
}

/**
 * Admission of entries whose versions do not exist yet (issue 8, "the second call is a hit"; and
 * invariant 2): the store creates a missing version at a value it can prove covers every bump the
 * version may have had, so a first computation is stored, but never after a bump was lost.
 */
describe("admission: the second call is a hit, and a lost version never lets a stale entry in", () => {
  describe("through a QueryCache on the shared Redis", () => {
    let app: App;
    let ns: string;
    let posts: PostRepository;

    beforeEach(async () => {
      ns = uniqueNamespace();
      app = await openApp(ns, { fresh: true });
      posts = new PostRepository(Post, app.dataSource.manager);
      await app.dataSource.getRepository(Post).save([{ title: "one" }, { title: "two" }]);
    });
    afterEach(async () => {
      await dropNamespace(app.redis, ns);
      await app.close();
    });

    it("in a fresh namespace", async () => {
      expect(
        await ranSql(
          app,
          () => posts.findPublished(),
          () => posts.findPublished(),
        ),
      ).to.deep.equal([true, false]);
      expect(app.cache.stats()).to.include({ sets: 1, hits: 1 });
    });

    it("after clear()", async () => {
      await ranSql(
        app,
        () => posts.findPublished(),
        () => posts.findPublished(),
      );
      await app.cache.clear();
      expect(
        await ranSql(
          app,
          () => posts.findPublished(),
          () => posts.findPublished(),
        ),
      ).to.deep.equal([true, false]);
    });

    it("after writes created the table's version", async () => {
      await app.dataSource.getRepository(Post).update({ title: "one" }, { views: 3 });
      await app.dataSource.getRepository(Author).save({ name: "x" });
      expect(
        await ranSql(
          app,
          () => posts.findPublished(),
          () => posts.findPublished(),
        ),
      ).to.deep.equal([true, false]);
    });

    it("for a new argument while other rows of the table are written (row precision)", async () => {
      const repo = app.dataSource.getRepository(Post);
      const [first, second] = await repo.find({ order: { id: "ASC" } });
      const reads = new PostsById(Post, app.dataSource.manager);
      const byId = (id: number) => reads.byId(id);
      await ranSql(
        app,
        () => byId(first.id),
        () => byId(first.id),
      );
      await repo.update({ id: first.id }, { views: 7 });
      expect(
        await ranSql(
          app,
          () => byId(second.id),
          () => byId(second.id),
        ),
        "a new id",
      ).to.deep.equal([true, false]);
      await repo.update({ id: first.id }, { views: 8 });
      expect(await ranSql(app, () => byId(second.id)), "the other id stays cached").to.deep.equal([
        false,
      ]);
    });

    it("and each second call is a hit with a MemoryStore too", async () => {
      const memoryNs = uniqueNamespace();
      const other = await openApp(ns, { cache: { store: new MemoryStore(), namespace: memoryNs } });
      try {
        const reads = new PostRepository(Post, other.dataSource.manager);
        expect(
          await ranSql(
            other,
            () => reads.findPublished(),
            () => reads.findPublished(),
          ),
        ).to.deep.equal([true, false]);
        await other.dataSource.getRepository(Post).update({ title: "one" }, { views: 5 });
        expect(
          await ranSql(
            other,
            () => reads.findPublished(),
            () => reads.findPublished(),
          ),
        ).to.deep.equal([true, false]);
      } finally {
        await other.close();
      }
    });
  });

  describe("at the store, when versions are lost", () => {
    let server: RedisProcess;
    let redis: Redis;
    let store: RedisStore;
    const clock = "adm:{adm:v}:clock";
    const table = "adm:{adm:v}:db:public.post";
    const row = `${table}#id=1`;
    const entry = (deps: string[], stamp: number) => ({
      key: "adm:e:k",
      value: "v",
      deps,
      stamp,
      ttlSeconds: 60,
    });

    beforeEach(async () => {
      server = await RedisProcess.start();
      redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
      store = new RedisStore(redis);
      await store.open(clock);
    });
    afterEach(async () => {
      redis.disconnect();
      await server.stop();
    });

    it("admits a first entry whose versions were never bumped, on a Redis that evicts nothing", async () => {
      const stamp = await store.stamp(clock);
      await store.bump(["adm:{adm:v}:db:public.other"], clock);
      expect(await store.set(entry([table, row], stamp), clock)).to.equal(true);
      expect((await store.lookup("adm:e:k", clock)).hit).to.equal(true);
    });

    it("refuses an entry stamped before a bump that Redis then lost in a restart", async () => {
      const stamp = await store.stamp(clock);
      await store.bump([row], clock);
      await server.kill();
      await server.start();
      await redis.ping();
      // Another process's write creates the clock again before this entry arrives.
      await store.bump(["adm:{adm:v}:db:public.other"], clock);
      expect(await store.set(entry([table, row], stamp), clock)).to.equal(false);
      const next = await store.stamp(clock);
      expect(
        await store.set(entry([table, row], next), clock),
        "the next computation is admitted",
      ).to.equal(true);
    });

    it("refuses an entry stamped before a bump whose version was evicted (allkeys-lru)", async () => {
      await redis.call("CONFIG", "SET", "maxmemory", "64mb");
      await redis.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lru");
      const stamp = await store.stamp(clock);
      await store.bump([table], clock);
      // Eviction, as Redis does it: the key is gone and nothing else changed.
      await redis.del(table);
      expect(await store.set(entry([table], stamp), clock)).to.equal(false);
      await store.bump([row], clock);
      await redis.del(row, table);
      expect(await store.set(entry([row], stamp), clock), "a row version and its table's").to.equal(
        false,
      );
    });

    it("admits a row version that expired, through its table version, only if the table was not written since", async () => {
      await redis.call("CONFIG", "SET", "maxmemory", "64mb");
      await redis.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lru");
      await store.bump([row], clock);
      const stamp = await store.stamp(clock);
      await redis.del(row);
      expect(
        await store.set(entry([row], stamp), clock),
        "the table is older than the stamp",
      ).to.equal(true);
      const late = await store.stamp(clock);
      await store.bump([`${table}#id=2`], clock);
      await redis.del(row);
      expect(await store.set(entry([row], late), clock), "the table moved past the stamp").to.equal(
        false,
      );
    });

    it("runs the freshness checker with 0 stale reads on a small allkeys-lru Redis", async function () {
      this.timeout(180_000);
      await redis.call("CONFIG", "SET", "maxmemory", "2mb");
      await redis.call("CONFIG", "SET", "maxmemory-policy", "allkeys-lru");
      const report = await runFreshness({
        ops: 1500,
        seed: 11,
        workers: 8,
        connect: async () => new Redis(server.url, { maxRetriesPerRequest: 1 }),
      });
      expect(
        report.stale.length + report.dirty.length,
        [...report.stale, ...report.dirty].map((v) => v.read).join("\n"),
      ).to.equal(0);
      expect(report.hits).to.be.greaterThan(0);
    });
  });

  it("a MemoryStore admits a first entry and refuses one stamped before a bump", async () => {
    const store: CacheStore = new MemoryStore();
    const clock = "m:{m:v}:clock";
    const row = "m:{m:v}:db:t#id=1";
    const stamp = await store.stamp(clock);
    expect(
      await store.set({ key: "k", value: "v", deps: [row], stamp, ttlSeconds: 60 }, clock),
    ).to.equal(true);
    await store.bump([row], clock);
    expect(
      await store.set({ key: "k", value: "v", deps: [row], stamp, ttlSeconds: 60 }, clock),
    ).to.equal(false);
    expect((await store.lookup("k", clock)).hit).to.equal(false);
  });
});
