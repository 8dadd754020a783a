import { expect } from "chai";
import { DataSource, In, Repository } from "typeorm";
import { getServices } from "../example/services";
import { Cached, cached, MemoryStore, QueryCache } from "../lib";
import { Comment, Post, Tag } from "./support/entities";
import {
  type App,
  dropNamespace,
  openApp,
  openDataSource,
  selectCount,
  uniqueNamespace,
} from "./support/fixture";
import { PostRepository } from "./support/repositories";
import { warm } from "./support/warm";

let schema = "";
let cache: QueryCache;

class HoleRepository extends Repository<Post> {
  /** Calls a function of the application's schema: refused, since the function reads unseen tables. */
  @Cached(60)
  async commentTotal(): Promise<number> {
    const [row] = await this.query(`SELECT "${schema}".comment_total() AS n`);
    return Number(row.n);
  }

  @Cached(60)
  async summary(): Promise<{ comments: number }> {
    return { comments: await this.commentTotal() };
  }

  @Cached({ ttl: 60, dependsOn: [Comment] })
  async vouchedTotal(): Promise<number> {
    const [row] = await this.query(`SELECT "${schema}".comment_total() AS n`);
    return Number(row.n);
  }

  @Cached(60)
  async vouchedSummary(): Promise<{ comments: number }> {
    return { comments: await this.vouchedTotal() };
  }

  @Cached(60)
  async featured(): Promise<{ featured: unknown }> {
    return { featured: (await cache.get("featured")) ?? null };
  }

  @Cached(60)
  async tagNames(): Promise<string[]> {
    return cache.wrap("tag-names", async () =>
      (await this.manager.find(Tag, { order: { id: "ASC" } })).map((t) => t.name),
    );
  }

  @Cached(60)
  async titleOf(id: number): Promise<string | null> {
    return (await this.findOneBy({ id }))?.title ?? null;
  }

  /** Its only reads are nested cached calls. */
  @Cached(60)
  async titlesOf(ids: number[]): Promise<(string | null)[]> {
    const titles: (string | null)[] = [];
    for (const id of ids) titles.push(await this.titleOf(id));
    return titles;
  }

  @Cached(60)
  async lateLabels(): Promise<string[]> {
    try {
      return (await this.query(`SELECT label FROM "${schema}"."late" ORDER BY label`)).map(
        (r: { label: string }) => r.label,
      );
    } catch {
      return ["fallback"];
    }
  }

  @Cached({ ttl: 60, cacheFallback: true })
  async lateLabelsOrFallback(): Promise<string[]> {
    try {
      return (await this.query(`SELECT label FROM "${schema}"."later" ORDER BY label`)).map(
        (r: { label: string }) => r.label,
      );
    } catch {
      return ["fallback"];
    }
  }
}

/** A minimal DataLoader: loads issued in one tick are served by one query, run in the first caller's context. */
class TitleLoader {
  private pending: {
    id: number;
    resolve: (title: string | null) => void;
    reject: (error: unknown) => void;
  }[] = [];

  constructor(private readonly posts: Repository<Post>) {}

  load(id: number): Promise<string | null> {
    return new Promise((resolve, reject) => {
      this.pending.push({ id, resolve, reject });
      if (this.pending.length === 1) process.nextTick(() => void this.flush());
    });
  }

  private async flush(): Promise<void> {
    const batch = this.pending.splice(0);
    try {
      const rows = await this.posts.findBy({ id: In(batch.map((b) => b.id)) });
      for (const b of batch) b.resolve(rows.find((r) => r.id === b.id)?.title ?? null);
    } catch (error) {
      for (const b of batch) b.reject(error);
    }
  }
}

class BatchedService {
  constructor(
    readonly dataSource: DataSource,
    readonly loader: TitleLoader,
  ) {}

  @Cached(60)
  title(id: number): Promise<string | null> {
    return this.loader.load(id);
  }
}

/** Reads through its own DataSource and through another one. */
class CrossService {
  constructor(
    readonly dataSource: DataSource,
    readonly other: DataSource,
  ) {}

  @Cached(60)
  async both(): Promise<{ here: number; there: string[] }> {
    const here = await this.dataSource.getRepository(Post).count();
    const there = (await this.other.getRepository(Post).find({ order: { id: "ASC" } })).map(
      (p) => p.title,
    );
    return { here, there };
  }
}

async function adminQuery(sql: string): Promise<void> {
  const admin = new DataSource({ type: "postgres", url: (await getServices()).pgUrl });
  await admin.initialize();
  try {
    await admin.query(sql);
  } finally {
    await admin.destroy();
  }
}

/** Calls `read` `times` times and counts how many were hits. */
async function hitsOver(app: App, times: number, read: () => Promise<unknown>): Promise<number> {
  const before = app.cache.stats().hits;
  for (let i = 0; i < times; i++) await read();
  return app.cache.stats().hits - before;
}

describe("tracking has no holes: a cached result depends on everything it was computed from, or is not stored (invariant 5)", () => {
  const ns = uniqueNamespace();
  let app: App;
  let repo: HoleRepository;
  let warnings: string[] = [];
  let postIds: number[];

  before(async () => {
    schema = ns;
    app = await openApp(ns, { fresh: true });
    cache = app.cache;
    app.cache.on("warning", (message: string) => warnings.push(message));
    repo = new HoleRepository(Post, app.dataSource.manager);
    const posts = await app.dataSource
      .getRepository(Post)
      .save([{ title: "first" }, { title: "second" }, { title: "third" }]);
    postIds = posts.map((p) => p.id);
    await app.dataSource.getRepository(Comment).save([{ body: "c1", post: posts[0] }]);
    await app.dataSource.getRepository(Tag).save([{ name: "red" }]);
    await app.dataSource.query(
      `CREATE FUNCTION "${ns}".comment_total() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM "${ns}"."comment" $$`,
    );
  });

  beforeEach(() => {
    warnings = [];
  });

  after(async () => {
    await dropNamespace(app.redis, ns);
    await app.close();
  });

  describe("nested cached calls", () => {
    it("a refused nested call makes its caller refused too, so the caller never goes stale", async () => {
      expect(await repo.summary()).to.deep.equal({ comments: 1 });
      expect(
        await hitsOver(app, 3, () => repo.summary()),
        "neither the nested call nor its caller is served",
      ).to.equal(0);
      await app.dataSource.getRepository(Comment).save({ body: "c2", post: { id: postIds[1] } });
      expect(await repo.summary(), "the caller sees the new comment").to.deep.equal({
        comments: 2,
      });
      expect(warnings.join("\n")).to.match(
        /HoleRepository<Post>\.summary: result not cached because it calls .*comment_total\(\)/,
      );
    });

    it("a nested call that names its dependencies with dependsOn passes them on: its caller is cached and stays fresh", async () => {
      const before = (await repo.vouchedSummary()).comments;
      expect(await warm(app, () => repo.vouchedSummary())).to.deep.equal({ comments: before });
      await app.dataSource.getRepository(Comment).save({ body: "c3", post: { id: postIds[2] } });
      expect(await repo.vouchedSummary()).to.deep.equal({ comments: before + 1 });
    });

    it("a caller whose only reads are nested cached hits is cached, and depends on what they read", async () => {
      await warm(app, () => repo.titleOf(postIds[0]));
      await warm(app, () => repo.titleOf(postIds[1]));
      expect(await warm(app, () => repo.titlesOf([postIds[0], postIds[1]]))).to.deep.equal([
        "first",
        "second",
      ]);
      await app.dataSource.getRepository(Post).update(postIds[1], { title: "second, renamed" });
      expect(await repo.titlesOf([postIds[0], postIds[1]])).to.deep.equal([
        "first",
        "second, renamed",
      ]);
      await app.dataSource.getRepository(Post).update(postIds[1], { title: "second" });
    });
  });

  describe("the low-level API inside a cached call", () => {
    it("a get() hit passes the entry's dependencies to its caller", async () => {
      expect(await app.cache.set("featured", "spring sale", { dependsOn: [Post] })).to.equal(true);
      expect(await warm(app, () => repo.featured())).to.deep.equal({ featured: "spring sale" });
      await app.dataSource.getRepository(Post).update(postIds[2], { views: 7 });
      expect(await app.cache.get("featured"), "the write ended the entry").to.equal(undefined);
      expect(await repo.featured(), "and the caller that used it").to.deep.equal({
        featured: null,
      });
    });

    it("a caller that read a key with get() is refreshed when set() or delete() replaces it, hit or miss", async () => {
      await app.cache.delete("featured");
      expect(await warm(app, () => repo.featured())).to.deep.equal({ featured: null });
      expect(await app.cache.set("featured", "winter sale")).to.equal(true);
      expect(
        await repo.featured(),
        "the caller that saw no value sees the one set since",
      ).to.deep.equal({ featured: "winter sale" });
      expect(await warm(app, () => repo.featured())).to.deep.equal({ featured: "winter sale" });
      expect(await app.cache.set("featured", "summer sale")).to.equal(true);
      expect(await repo.featured(), "a replaced value").to.deep.equal({ featured: "summer sale" });
      await warm(app, () => repo.featured());
      await app.cache.delete("featured");
      expect(await repo.featured(), "a deleted one").to.deep.equal({ featured: null });
    });

    it("a caller that used a wrap() entry is refreshed when set() replaces the entry", async () => {
      const tags = app.dataSource.getRepository(Tag);
      await warm(app, () =>
        app.cache.wrap("tag-names", async () =>
          (await tags.find({ order: { id: "ASC" } })).map((t) => t.name),
        ),
      );
      const names = await warm(app, () => repo.tagNames());
      expect(await app.cache.set("tag-names", ["overridden"])).to.equal(true);
      expect(await repo.tagNames()).to.deep.equal(["overridden"]);
      await app.cache.delete("tag-names");
      expect(await repo.tagNames()).to.deep.equal(names);
    });

    it("a wrap() hit passes the entry's dependencies to its caller", async () => {
      const tags = app.dataSource.getRepository(Tag);
      await warm(app, () =>
        app.cache.wrap("tag-names", async () =>
          (await tags.find({ order: { id: "ASC" } })).map((t) => t.name),
        ),
      );
      expect(await warm(app, () => repo.tagNames())).to.deep.equal(["red"]);
      await app.dataSource.getRepository(Tag).save({ name: "blue" });
      expect(await repo.tagNames()).to.deep.equal(["red", "blue"]);
    });
  });

  describe("work done on behalf of several calls (DataLoader-style batching)", () => {
    it("a call served by another call's query is not stored, so it never goes stale", async () => {
      const service = new BatchedService(
        app.dataSource,
        new TitleLoader(app.dataSource.getRepository(Post)),
      );
      for (let round = 0; round < 3; round++) {
        const titles = await Promise.all([service.title(postIds[0]), service.title(postIds[1])]);
        expect(titles).to.deep.equal(["first", "second"]);
      }
      await app.dataSource.getRepository(Post).update(postIds[1], { title: "second, batched" });
      const titles = await Promise.all([service.title(postIds[0]), service.title(postIds[1])]);
      expect(titles, "the call whose row another call fetched sees the write").to.deep.equal([
        "first",
        "second, batched",
      ]);
      expect(warnings.join("\n")).to.include(
        "BatchedService.title: result not cached because it ran no query",
      );
      await app.dataSource.getRepository(Post).update(postIds[1], { title: "second" });
    });
  });

  describe("queries through a second DataSource", () => {
    const otherSchema = `${ns}_second`;
    let other: App;

    before(async () => {
      other = await openApp(`${ns}x`, { fresh: true, schema: otherSchema });
      await other.dataSource.getRepository(Post).save([{ title: "over there" }]);
    });

    after(async () => {
      await other.close();
      await adminQuery(`DROP SCHEMA IF EXISTS "${otherSchema}" CASCADE`);
    });

    it("through one whose cache has another store or namespace: not stored, with a warning, and fresh after its writes", async () => {
      const service = new CrossService(app.dataSource, other.dataSource);
      expect((await service.both()).there).to.deep.equal(["over there"]);
      expect(await hitsOver(app, 2, () => service.both())).to.equal(0);
      await other.dataSource.getRepository(Post).save({ title: "over there too" });
      expect((await service.both()).there).to.deep.equal(["over there", "over there too"]);
      expect(warnings.join("\n")).to.include(
        "CrossService.both: result not cached because it ran a query through another DataSource",
      );
      await other.dataSource.getRepository(Post).delete({ title: "over there too" });
    });

    it("through one without a QueryCache: not stored, with a warning", async () => {
      const bare = await openDataSource({ schema: otherSchema });
      try {
        const service = new CrossService(app.dataSource, bare);
        expect((await service.both()).there).to.deep.equal(["over there"]);
        expect(await hitsOver(app, 2, () => service.both())).to.equal(0);
        await bare.getRepository(Post).save({ title: "unseen" });
        expect((await service.both()).there).to.deep.equal(["over there", "unseen"]);
        expect(warnings.join("\n")).to.include("through a DataSource that has no QueryCache");
        await bare.getRepository(Post).delete({ title: "unseen" });
      } finally {
        await bare.destroy();
      }
    });

    it("a cached call of another cache with another store, nested in this one's: the caller is not stored", async () => {
      const separate = await openApp(`${ns}m`, {
        schema: otherSchema,
        cache: { store: new MemoryStore() },
      });
      try {
        const theirs = new PostRepository(Post, separate.dataSource.manager);
        const service = {
          dataSource: app.dataSource,
          nested: cached(async function nested() {
            return (await theirs.findAll()).map((p) => p.title);
          }, 60),
        };
        expect(await service.nested()).to.deep.equal(["over there"]);
        expect(
          await hitsOver(app, 3, () => service.nested()),
          "never served from this cache",
        ).to.equal(0);
        await separate.dataSource.getRepository(Post).save({ title: "via memory" });
        expect(await service.nested()).to.deep.equal(["over there", "via memory"]);
        expect(warnings.join("\n")).to.include(
          "nested: result not cached because it used a value of another QueryCache",
        );
        await separate.dataSource.getRepository(Post).delete({ title: "via memory" });
      } finally {
        await separate.close();
      }
    });

    it("through one whose cache shares this store and namespace: tracked, cached, and fresh after its writes", async () => {
      const shared = await openApp(ns, { schema: otherSchema, cache: { store: app.cache.store } });
      try {
        const service = new CrossService(app.dataSource, shared.dataSource);
        expect((await warm(app, () => service.both())).there).to.deep.equal(["over there"]);
        await shared.dataSource.getRepository(Post).save({ title: "shared write" });
        expect((await service.both()).there).to.deep.equal(["over there", "shared write"]);
        await shared.dataSource.getRepository(Post).delete({ title: "shared write" });
        expect((await service.both()).there).to.deep.equal(["over there"]);
      } finally {
        await shared.close();
      }
    });
  });

  describe("a computation that saw a failed query", () => {
    it("is not stored: the fallback it returned is not served once the query can succeed", async () => {
      expect(await repo.lateLabels()).to.deep.equal(["fallback"]);
      expect(await hitsOver(app, 2, () => repo.lateLabels())).to.equal(0);
      // Another process creates the table: this cache sees neither the DDL nor the insert.
      await adminQuery(
        `CREATE TABLE "${ns}"."late" (label text); INSERT INTO "${ns}"."late" VALUES ('real')`,
      );
      expect(await repo.lateLabels()).to.deep.equal(["real"]);
      expect(warnings.join("\n")).to.include(
        "HoleRepository<Post>.lateLabels: result not cached because a query in it failed",
      );
      expect(warnings.join("\n")).to.include("cacheFallback: true");
    });

    it("wrap() follows the same rule, and its cacheFallback option", async () => {
      const read = (key: string, options = {}) =>
        app.cache.wrap(
          key,
          async () => {
            try {
              return (await app.dataSource.query(`SELECT label FROM "${ns}"."latest"`)).length;
            } catch {
              return -1;
            }
          },
          options,
        );
      expect(await read("latest-count")).to.equal(-1);
      expect(await hitsOver(app, 2, () => read("latest-count"))).to.equal(0);
      expect(
        await warm(app, () => read("latest-count-or-fallback", { cacheFallback: true })),
      ).to.equal(-1);
    });

    it("is stored when the method opts in with cacheFallback: true", async () => {
      const selects = selectCount(app.dataSource);
      expect(await warm(app, () => repo.lateLabelsOrFallback())).to.deep.equal(["fallback"]);
      expect(selectCount(app.dataSource)).to.be.greaterThan(selects);
    });
  });
});
