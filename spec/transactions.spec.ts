import { expect } from "chai";
import type { DataSource, EntityManager } from "typeorm";
import { Cached } from "../lib";
import { Post } from "./support/entities";
import { type App, dropNamespace, openApp, uniqueNamespace } from "./support/fixture";
import { type PostRepository, repositories } from "./support/repositories";
import { warm } from "./support/warm";

class PostService {
  constructor(readonly dataSource: DataSource) {}

  @Cached(60)
  titles(manager?: EntityManager): Promise<string[]> {
    return (manager ?? this.dataSource.manager)
      .find(Post, { order: { id: "ASC" } })
      .then((rows) => rows.map((p) => p.title));
  }
}

describe("transactions: the cache is bypassed inside them, and their invalidations wait for the outermost commit", () => {
  const ns = uniqueNamespace();
  let app: App;
  let posts: PostRepository;
  const titles = (rows: Post[]) => rows.map((p) => p.title);
  const unchanged = (before: ReturnType<App["cache"]["stats"]>) => {
    const now = app.cache.stats();
    expect(
      [now.hits, now.misses, now.sets],
      "the cache was neither read nor written",
    ).to.deep.equal([before.hits, before.misses, before.sets]);
  };

  before(async () => {
    app = await openApp(ns, { fresh: true });
    posts = repositories(app.dataSource).posts;
  });
  after(async () => {
    await dropNamespace(app.redis, ns);
    await app.close();
  });
  beforeEach(async () => {
    await app.dataSource.query(`TRUNCATE "${ns}"."post" CASCADE`);
    await posts.insert([{ title: "one" }, { title: "two" }]);
  });

  it("a repository used through a transactional manager neither reads nor writes the cache, and sees its own writes", async () => {
    await warm(app, () => posts.findAll());
    await app.dataSource.transaction(async (em) => {
      const before = app.cache.stats();
      await em.insert(Post, { title: "three" });
      const inside = await em.withRepository(posts).findAll();
      expect(titles(inside)).to.deep.equal(["one", "two", "three"]);
      unchanged(before);
      expect(
        titles(await posts.findAll()),
        "outside the transaction, nothing uncommitted shows",
      ).to.deep.equal(["one", "two"]);
    });
    expect(titles(await posts.findAll()), "fresh once the commit returned").to.deep.equal([
      "one",
      "two",
      "three",
    ]);
  });

  it("a service method given a transactional manager bypasses the cache", async () => {
    const service = new PostService(app.dataSource);
    expect(await warm(app, () => service.titles())).to.deep.equal(["one", "two"]);
    await app.dataSource.transaction(async (em) => {
      await em.insert(Post, { title: "three" });
      const before = app.cache.stats();
      expect(await service.titles(em)).to.deep.equal(["one", "two", "three"]);
      unchanged(before);
    });
    expect(await service.titles()).to.deep.equal(["one", "two", "three"]);
  });

  it("a rollback invalidates nothing and leaves the data and the cache as they were", async () => {
    await warm(app, () => posts.findAll());
    const invalidations = app.cache.stats().invalidations;
    await app.dataSource
      .transaction(async (em) => {
        await em.insert(Post, { title: "three" });
        throw new Error("abort");
      })
      .catch(() => undefined);
    expect(app.cache.stats().invalidations).to.equal(invalidations);
    expect(titles(await warm(app, () => posts.findAll()))).to.deep.equal(["one", "two"]);
  });

  it("a savepoint release does not flush; a rollback to a savepoint drops only its own writes", async () => {
    await warm(app, () => posts.findAll());
    const runner = app.dataSource.createQueryRunner();
    const invalidations = app.cache.stats().invalidations;
    try {
      await runner.startTransaction();
      await runner.manager.insert(Post, { title: "outer" });
      await runner.startTransaction(); // SAVEPOINT
      await runner.manager.insert(Post, { title: "released" });
      await runner.commitTransaction(); // RELEASE SAVEPOINT
      await runner.startTransaction();
      await runner.manager
        .getRepository("comment")
        .insert({ body: "dropped", post: { id: 1 } })
        .catch(() => undefined);
      await runner.rollbackTransaction(); // ROLLBACK TO SAVEPOINT
      expect(
        app.cache.stats().invalidations,
        "nothing is delivered before the outermost commit",
      ).to.equal(invalidations);
      expect(
        titles(await posts.findAll()),
        "cached reads outside see committed data only",
      ).to.deep.equal(["one", "two"]);
      await runner.commitTransaction();
    } finally {
      await runner.release();
    }
    expect(titles(await posts.findAll())).to.deep.equal(["one", "two", "outer", "released"]);
  });

  it("a failed COMMIT (deferred constraint) invalidates nothing", async () => {
    await app.dataSource.query(
      `CREATE TABLE IF NOT EXISTS "${ns}".uniq (v int, CONSTRAINT uniq_v UNIQUE (v) DEFERRABLE INITIALLY DEFERRED)`,
    );
    const invalidations = app.cache.stats().invalidations;
    const runner = app.dataSource.createQueryRunner();
    try {
      await runner.startTransaction();
      await runner.query(`INSERT INTO "${ns}".uniq VALUES (1), (1)`);
      await runner.commitTransaction().catch(() => undefined);
    } finally {
      await runner.release();
    }
    expect(app.cache.stats().invalidations).to.equal(invalidations);
  });
});
