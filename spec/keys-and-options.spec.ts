import { expect } from "chai";
import { DataSource, type ObjectLiteral, Repository } from "typeorm";
import { getServices } from "../example/services";
import {
  AutocacheError,
  Cached,
  CacheNotFoundError,
  cached,
  DataSourceNotInitializedError,
  DuplicateCacheError,
  InvalidOptionError,
  QueryCache,
  QueryCacheSubscriber,
  SubscriberMissingError,
  UnkeyableArgumentError,
} from "../lib";
import { entities, Post, Tag } from "./support/entities";
import {
  type App,
  dropNamespace,
  openApp,
  openDataSource,
  SelectCounter,
  selectCount,
  uniqueNamespace,
} from "./support/fixture";
import { PostRepository } from "./support/repositories";
import { freshAndHit } from "./support/result-checks";
import { warm } from "./support/warm";

class KeyedRepository extends Repository<Post> {
  @Cached(60)
  async echo(arg: unknown): Promise<{ method: string; arg: unknown; type: string; total: number }> {
    return { method: "echo", arg, type: typeof arg, total: await this.count() };
  }

  @Cached(60)
  async echoToo(
    arg: unknown,
  ): Promise<{ method: string; arg: unknown; type: string; total: number }> {
    return { method: "echoToo", arg, type: typeof arg, total: await this.count() };
  }

  @Cached(60)
  async matching(filter: {
    a: number;
    b: number;
  }): Promise<{ seen: { a: number; b: number }; total: number }> {
    return { seen: filter, total: await this.count() };
  }

  @Cached(60)
  async withCallback(pick: (p: Post) => boolean): Promise<string[]> {
    return (await this.find({ order: { id: "ASC" } })).filter(pick).map((p) => p.title);
  }

  @Cached({ ttl: 60, key: (_pick: unknown, label: string) => label })
  async withCallbackKeyed(pick: (p: Post) => boolean, _label: string): Promise<string[]> {
    return (await this.find({ order: { id: "ASC" } })).filter(pick).map((p) => p.title);
  }

  @Cached(60)
  async withCircular(options: { title: string; self?: unknown }): Promise<string[]> {
    return (await this.find({ where: { title: options.title } })).map((p) => p.title);
  }

  @Cached({ ttl: 60, key: (options: { title: string }) => options.title })
  async withCircularKeyed(options: { title: string; self?: unknown }): Promise<string[]> {
    return (await this.find({ where: { title: options.title } })).map((p) => p.title);
  }
}

class OtherKeyedRepository extends Repository<Post> {
  @Cached(60)
  async echo(arg: unknown): Promise<{ method: string; arg: unknown; type: string; total: number }> {
    return {
      method: "OtherKeyedRepository.echo",
      arg,
      type: typeof arg,
      total: await this.count(),
    };
  }
}

class GenericRepository<T extends ObjectLiteral> extends Repository<T> {
  @Cached(60)
  everything(): Promise<T[]> {
    return this.find();
  }
}

async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected the call to reject, but it resolved");
}

describe("keys and options", () => {
  const ns = uniqueNamespace();
  let app: App;
  let keyed: KeyedRepository;

  before(async () => {
    app = await openApp(ns, { fresh: true });
    keyed = new KeyedRepository(Post, app.dataSource.manager);
    await app.dataSource.getRepository(Post).save([
      { title: "one", published: true },
      { title: "two", published: true },
      { title: "three", published: false },
    ]);
    await app.dataSource.getRepository(Tag).save([{ name: "red" }]);
  });

  after(async () => {
    await dropNamespace(app.redis, ns);
    await app.close();
  });

  describe("entry keys (invariant 8)", () => {
    it("{a: 1, b: 2} and {b: 2, a: 1} share an entry", async () => {
      await freshAndHit(app, () => keyed.matching({ a: 1, b: 2 }));
      const selects = selectCount(app.dataSource);
      const hits = app.cache.stats().hits;
      const result = await keyed.matching({ b: 2, a: 1 });
      expect(app.cache.stats().hits, "the reordered object is a hit").to.equal(hits + 1);
      expect(selectCount(app.dataSource)).to.equal(selects);
      expect(result.seen).to.deep.equal({ a: 1, b: 2 });
    });

    it('1 and "1" do not share an entry', async () => {
      const { hit } = await freshAndHit(app, () => keyed.echo(1));
      expect(hit.type).to.equal("number");
      const selects = selectCount(app.dataSource);
      const hits = app.cache.stats().hits;
      const asString = await keyed.echo("1");
      expect(asString.type, '"1" gets its own result').to.equal("string");
      expect(asString.arg).to.equal("1");
      expect(app.cache.stats().hits).to.equal(hits);
      expect(selectCount(app.dataSource)).to.be.greaterThan(selects);
      // And 1 is still served its own entry.
      const again = await warm(app, () => keyed.echo(1));
      expect(again.type).to.equal("number");
      const stringAgain = await warm(app, () => keyed.echo("1"));
      expect(stringAgain.type).to.equal("string");
    });

    it('other distinct arguments do not share entries: true/"true", null/undefined, 0/-0, [1]/"1"', async () => {
      const pairs: [unknown, unknown][] = [
        [true, "true"],
        [null, undefined],
        [0, -0],
        [[1], "1"],
        [{ a: 1 }, { a: "1" }],
      ];
      for (const [x, y] of pairs) {
        await freshAndHit(app, () => keyed.echo(x));
        const hits = app.cache.stats().hits;
        const result = await keyed.echo(y);
        expect(
          app.cache.stats().hits,
          `echo(${JSON.stringify(y)}) after echo(${JSON.stringify(x)}) is no hit`,
        ).to.equal(hits);
        expect(result.type).to.equal(typeof y);
      }
    });

    it("different methods of one repository do not share entries", async () => {
      await freshAndHit(app, () => keyed.echo(7));
      const hits = app.cache.stats().hits;
      const result = await keyed.echoToo(7);
      expect(result.method).to.equal("echoToo");
      expect(app.cache.stats().hits).to.equal(hits);
      expect((await warm(app, () => keyed.echo(7))).method).to.equal("echo");
      expect((await warm(app, () => keyed.echoToo(7))).method).to.equal("echoToo");
    });

    it("the same method name in different repository classes does not share entries", async () => {
      const other = new OtherKeyedRepository(Post, app.dataSource.manager);
      await freshAndHit(app, () => keyed.echo(8));
      const hits = app.cache.stats().hits;
      expect((await other.echo(8)).method).to.equal("OtherKeyedRepository.echo");
      expect(app.cache.stats().hits).to.equal(hits);
      expect((await warm(app, () => other.echo(8))).method).to.equal("OtherKeyedRepository.echo");
      expect((await warm(app, () => keyed.echo(8))).method).to.equal("echo");
    });

    it("one repository class used for two entities does not share entries", async () => {
      const postRepo = new GenericRepository<Post>(Post, app.dataSource.manager);
      const tagRepo = new GenericRepository<Tag>(Tag, app.dataSource.manager);
      const { hit: postRows } = await freshAndHit(app, () => postRepo.everything());
      expect(postRows.every((p) => p instanceof Post)).to.equal(true);
      const tags = await tagRepo.everything();
      expect(tags).to.have.length(1);
      expect(tags[0]).to.be.instanceOf(Tag);
      const cachedTags = await warm(app, () => tagRepo.everything());
      expect(cachedTags[0]).to.be.instanceOf(Tag);
    });

    it("two repositories made with Repository.extend() whose methods share a name do not share entries", async () => {
      const recent = app.dataSource.getRepository(Post).extend({
        pick: cached(async function pick(this: Repository<Post>) {
          return {
            from: "recent",
            titles: (await this.find({ order: { id: "DESC" }, take: 1 })).map((p) => p.title),
          };
        }, 60),
      });
      const oldest = app.dataSource.getRepository(Post).extend({
        pick: cached(async function pick(this: Repository<Post>) {
          return {
            from: "oldest",
            titles: (await this.find({ order: { id: "ASC" }, take: 1 })).map((p) => p.title),
          };
        }, 60),
      });
      const { hit } = await freshAndHit(app, () => recent.pick());
      expect(hit).to.deep.equal({ from: "recent", titles: ["three"] });
      const fromOldest = await oldest.pick();
      expect(
        fromOldest,
        "the second extended repository gets its own method's result",
      ).to.deep.equal({ from: "oldest", titles: ["one"] });
    });
  });

  describe("arguments that cannot be keyed", () => {
    it("a function argument rejects with UnkeyableArgumentError naming the method and suggesting `key`", async () => {
      const selects = selectCount(app.dataSource);
      const error = await rejection(keyed.withCallback((p) => p.published));
      expect(error).to.be.instanceOf(UnkeyableArgumentError);
      expect(error).to.be.instanceOf(AutocacheError);
      expect((error as UnkeyableArgumentError).method).to.equal(
        "KeyedRepository<Post>.withCallback",
      );
      expect(error.message).to.include("KeyedRepository<Post>.withCallback");
      expect(error.message).to.include("a function");
      expect(error.message).to.match(/\bkey\b/);
      expect(error.message).to.include("@Cached({ key:");
      expect(selectCount(app.dataSource), "the method did not run").to.equal(selects);
    });

    it("a circular argument rejects with UnkeyableArgumentError", async () => {
      const options: { title: string; self?: unknown } = { title: "one" };
      options.self = options;
      const error = await rejection(keyed.withCircular(options));
      expect(error).to.be.instanceOf(UnkeyableArgumentError);
      expect(error.message).to.include("KeyedRepository<Post>.withCircular");
      expect(error.message).to.include("circular");
      expect(error.message).to.include("key");
    });

    it("the `key` option makes a function argument work", async () => {
      const { fresh, hit } = await freshAndHit(app, () =>
        keyed.withCallbackKeyed((p) => p.published, "published"),
      );
      expect(fresh).to.deep.equal(["one", "two"]);
      expect(hit).to.deep.equal(["one", "two"]);
      // Another key is another entry.
      const drafts = await keyed.withCallbackKeyed((p) => !p.published, "drafts");
      expect(drafts).to.deep.equal(["three"]);
    });

    it("the `key` option makes a circular argument work", async () => {
      const options: { title: string; self?: unknown } = { title: "two" };
      options.self = options;
      const { hit } = await freshAndHit(app, () => keyed.withCircularKeyed(options));
      expect(hit).to.deep.equal(["two"]);
    });
  });

  describe("QueryCache options are checked at construction", () => {
    const invalid: [string, () => unknown, RegExp][] = [
      [
        "a negative defaultTtl",
        () => new QueryCache({ dataSource: app.dataSource, defaultTtl: -5 }),
        /defaultTtl must be a positive whole number of seconds, got -5/,
      ],
      [
        "a zero defaultTtl",
        () => new QueryCache({ dataSource: app.dataSource, defaultTtl: 0 }),
        /defaultTtl must be a positive whole number of seconds, got 0/,
      ],
      [
        "a fractional defaultTtl",
        () => new QueryCache({ dataSource: app.dataSource, defaultTtl: 1.5 }),
        /defaultTtl must be a positive whole number of seconds, got 1.5/,
      ],
      [
        "a non-numeric defaultTtl",
        () =>
          new QueryCache({ dataSource: app.dataSource, defaultTtl: "soon" as unknown as number }),
        /defaultTtl must be a positive whole number of seconds, got soon/,
      ],
      [
        "an empty namespace",
        () => new QueryCache({ dataSource: app.dataSource, namespace: "" }),
        /namespace must be a non-empty string/,
      ],
      [
        "a namespace with a space",
        () => new QueryCache({ dataSource: app.dataSource, namespace: "my app" }),
        /namespace must be a non-empty string of letters, digits/,
      ],
      [
        "a missing dataSource",
        () => new QueryCache({} as never),
        /dataSource must be a TypeORM DataSource/,
      ],
      [
        "a dataSource that is no DataSource",
        () => new QueryCache({ dataSource: {} as never }),
        /dataSource must be a TypeORM DataSource/,
      ],
      ["no options at all", () => new QueryCache(undefined as never), /pass an options object/],
      [
        "a negative storeTimeout",
        () => new QueryCache({ dataSource: app.dataSource, storeTimeout: -1 }),
        /storeTimeout must be a positive number, got -1/,
      ],
      [
        "a non-numeric maxValueBytes",
        () =>
          new QueryCache({ dataSource: app.dataSource, maxValueBytes: "big" as unknown as number }),
        /maxValueBytes must be a positive number, got big/,
      ],
      [
        "an empty databaseId",
        () => new QueryCache({ dataSource: app.dataSource, databaseId: "" }),
        /databaseId must be a non-empty string/,
      ],
    ];
    for (const [name, construct, message] of invalid) {
      it(`rejects ${name} with InvalidOptionError`, () => {
        expect(construct).to.throw(InvalidOptionError, message);
      });
    }

    it("the existing cache keeps working after rejected constructions", async () => {
      const hit = await warm(app, () => keyed.echo("still-works"));
      expect(hit.arg).to.equal("still-works");
    });

    it("a second QueryCache on one DataSource throws DuplicateCacheError; after close() the second works", async () => {
      const dataSource = await openDataSource({ schema: ns });
      const first = new QueryCache({ dataSource, namespace: `${ns}-dup` });
      let second: QueryCache | undefined;
      try {
        expect(() => new QueryCache({ dataSource, namespace: `${ns}-dup` })).to.throw(
          DuplicateCacheError,
          /already has a QueryCache.*close\(\)/,
        );
        expect(
          () =>
            new QueryCache({ dataSource: app.dataSource, store: app.cache.store, namespace: ns }),
        ).to.throw(DuplicateCacheError);
        await first.close();
        second = new QueryCache({ dataSource, namespace: `${ns}-dup` });
        const repo = new PostRepository(Post, dataSource.manager);
        const firstStats = first.stats();
        let hits = 0;
        for (let i = 0; i < 4 && hits === 0; i++) {
          const rows = await repo.findAll();
          expect(rows.map((p) => p.title)).to.deep.equal(["one", "two", "three"]);
          hits = second.stats().hits;
        }
        expect(hits, "the second cache serves hits").to.be.greaterThan(0);
        expect(first.stats(), "the closed cache is no longer used").to.deep.equal(firstStats);
      } finally {
        await second?.close();
        await first.close();
        await dataSource.destroy();
      }
    });
  });

  describe("@Cached and cached() options are checked at decoration time", () => {
    it("@Cached(-1) throws InvalidOptionError", () => {
      expect(() => {
        class Bad {
          @Cached(-1)
          method(): Promise<number> {
            return Promise.resolve(1);
          }
        }
        return Bad;
      }).to.throw(InvalidOptionError, /ttl must be a positive whole number of seconds, got -1/);
    });

    it('@Cached({ ttl: "x" }) throws InvalidOptionError', () => {
      expect(() => {
        class Bad {
          @Cached({ ttl: "x" as unknown as number })
          method(): Promise<number> {
            return Promise.resolve(1);
          }
        }
        return Bad;
      }).to.throw(InvalidOptionError, /ttl must be a positive whole number of seconds, got x/);
    });

    it("other bad @Cached options throw with what was expected", () => {
      expect(() => Cached("60" as unknown as number)).to.throw(
        InvalidOptionError,
        /ttl in seconds or an options object/,
      );
      expect(() => Cached({ key: "id" as never })).to.throw(
        InvalidOptionError,
        /key must be a function/,
      );
      expect(() => Cached({ dependsOn: Post as never })).to.throw(
        InvalidOptionError,
        /dependsOn must be an array/,
      );
      expect(() => Cached({ cache: {} as never })).to.throw(
        InvalidOptionError,
        /cache must be a QueryCache/,
      );
    });

    it("cached() checks its ttl and needs a name", () => {
      expect(() => cached(async function named() {}, -1)).to.throw(InvalidOptionError, /got -1/);
      expect(() => cached(async () => 1)).to.throw(
        InvalidOptionError,
        /has no name; pass one with \{ name \}/,
      );
      expect(() => cached(async () => 1, { name: "answer" })).to.not.throw();
    });
  });

  describe("finding the cache and the DataSource's state", () => {
    it("a class with no findable cache rejects with CacheNotFoundError and a helpful message", async () => {
      class Lonely {
        @Cached(60)
        async answer(): Promise<number> {
          return 42;
        }
      }
      const error = await rejection(new Lonely().answer());
      expect(error).to.be.instanceOf(CacheNotFoundError);
      expect(error.message).to.include("Lonely.answer");
      expect(error.message).to.include("no QueryCache found");
      expect(error.message).to.include("new QueryCache({ dataSource");
      expect(error.message).to.include("@Cached({ cache })");
    });

    it("a repository on a DataSource that has no QueryCache rejects with CacheNotFoundError", async () => {
      const dataSource = await openDataSource({ schema: ns });
      try {
        const error = await rejection(new PostRepository(Post, dataSource.manager).findAll());
        expect(error).to.be.instanceOf(CacheNotFoundError);
        expect(error.message).to.include("PostRepository<Post>.findAll");
      } finally {
        await dataSource.destroy();
      }
    });

    it("the `cache` option names the cache for a class that cannot find one", async () => {
      let runs = 0;
      class Explicit {
        // It reads no table: dependsOn: [] says so, or the result would not be stored.
        @Cached({ ttl: 60, cache: app.cache, dependsOn: [] })
        async answer(): Promise<number> {
          runs++;
          return 42;
        }
      }
      const service = new Explicit();
      const { hit } = await freshAndHit(app, () => service.answer());
      expect(hit).to.equal(42);
      const before = runs;
      expect(await service.answer()).to.equal(42);
      expect(runs).to.equal(before);
    });

    it("using a cache before dataSource.initialize() rejects with DataSourceNotInitializedError", async () => {
      const { pgUrl } = await getServices();
      const dataSource = new DataSource({
        type: "postgres",
        url: pgUrl,
        schema: ns,
        entities,
        subscribers: [QueryCacheSubscriber, SelectCounter],
      });
      const cache = new QueryCache({ dataSource, namespace: `${ns}-early` });
      try {
        const viaGet = await rejection(cache.get("anything"));
        expect(viaGet).to.be.instanceOf(DataSourceNotInitializedError);
        expect(viaGet.message).to.include("await dataSource.initialize()");
        const viaWrap = await rejection(cache.wrap("anything", () => 1));
        expect(viaWrap).to.be.instanceOf(DataSourceNotInitializedError);
        const viaRepository = await rejection(
          new PostRepository(Post, dataSource.manager).findAll(),
        );
        expect(
          viaRepository,
          `the repository call gave ${viaRepository.name}: ${viaRepository.message}`,
        ).to.be.instanceOf(DataSourceNotInitializedError);

        await dataSource.initialize();
        const rows = await new PostRepository(Post, dataSource.manager).findAll();
        expect(rows.map((p) => p.title)).to.deep.equal(["one", "two", "three"]);
      } finally {
        await cache.close();
        if (dataSource.isInitialized) await dataSource.destroy();
      }
    });

    it("a DataSource without QueryCacheSubscriber gives SubscriberMissingError at construction", async () => {
      const { pgUrl } = await getServices();
      const dataSource = await new DataSource({
        type: "postgres",
        url: pgUrl,
        schema: ns,
        entities,
        subscribers: [SelectCounter],
      }).initialize();
      try {
        let error: unknown;
        try {
          new QueryCache({ dataSource, namespace: `${ns}-nosub` });
        } catch (thrown) {
          error = thrown;
        }
        expect(error).to.be.instanceOf(SubscriberMissingError);
        expect((error as Error).message).to.include("subscribers: [QueryCacheSubscriber]");
      } finally {
        await dataSource.destroy();
      }
    });
  });

  describe("two DataSources on different schemas, one namespace and one Redis", () => {
    const schemaA = `${ns}_tenant_a`;
    const schemaB = `${ns}_tenant_b`;
    let tenantA: App;
    let tenantB: App;

    before(async () => {
      tenantA = await openApp(ns, { fresh: true, schema: schemaA });
      tenantB = await openApp(ns, { fresh: true, schema: schemaB });
      await tenantA.dataSource.getRepository(Post).save([{ title: "alpha-1", published: true }]);
      await tenantB.dataSource.getRepository(Post).save([
        { title: "beta-1", published: true },
        { title: "beta-2", published: true },
      ]);
    });

    after(async () => {
      await tenantA?.close();
      await tenantB?.close();
      await app.dataSource.query(`DROP SCHEMA IF EXISTS "${schemaA}" CASCADE`);
      await app.dataSource.query(`DROP SCHEMA IF EXISTS "${schemaB}" CASCADE`);
    });

    it("the tenants' tables really are apart", async () => {
      expect(tenantA.dataSource.getRepository(Post).metadata.tablePath).to.equal(`${schemaA}.post`);
      expect(
        (await tenantB.dataSource.getRepository(Post).find({ order: { id: "ASC" } })).map(
          (p) => p.title,
        ),
      ).to.deep.equal(["beta-1", "beta-2"]);
    });

    it("the same repository class, method and arguments never share entries: each sees its own data", async () => {
      const postsA = new PostRepository(Post, tenantA.dataSource.manager);
      const postsB = new PostRepository(Post, tenantB.dataSource.manager);
      const { hit: a } = await freshAndHit(tenantA, () => postsA.findAll());
      expect(a.map((p) => p.title)).to.deep.equal(["alpha-1"]);

      const b = await postsB.findAll();
      expect(
        b.map((p) => p.title),
        "tenant B sees its own posts, not tenant A's cached ones",
      ).to.deep.equal(["beta-1", "beta-2"]);
      const bCached = await warm(tenantB, () => postsB.findAll());
      expect(bCached.map((p) => p.title)).to.deep.equal(["beta-1", "beta-2"]);
      const aCached = await warm(tenantA, () => postsA.findAll());
      expect(aCached.map((p) => p.title)).to.deep.equal(["alpha-1"]);

      const titleA = await freshAndHit(tenantA, () => postsA.byTitle({ title: "beta-1" }), {
        clear: false,
      });
      expect(titleA.hit, "tenant A has no beta-1").to.deep.equal([]);
      const titleB = await postsB.byTitle({ title: "beta-1" });
      expect(titleB.map((p) => p.title)).to.deep.equal(["beta-1"]);
    });

    it("a write in one tenant does not disturb the other tenant's results", async () => {
      const postsA = new PostRepository(Post, tenantA.dataSource.manager);
      const postsB = new PostRepository(Post, tenantB.dataSource.manager);
      await tenantA.dataSource.getRepository(Post).save({ title: "alpha-2", published: true });
      expect((await postsA.findPublished()).map((p) => p.title)).to.deep.equal([
        "alpha-1",
        "alpha-2",
      ]);
      expect((await postsB.findPublished()).map((p) => p.title)).to.deep.equal([
        "beta-1",
        "beta-2",
      ]);
      expect((await warm(tenantA, () => postsA.findPublished())).map((p) => p.title)).to.deep.equal(
        ["alpha-1", "alpha-2"],
      );
      expect((await warm(tenantB, () => postsB.findPublished())).map((p) => p.title)).to.deep.equal(
        ["beta-1", "beta-2"],
      );
    });
  });

  describe("the cached(fn, options) function form", () => {
    it("works in a Repository.extend({...}) custom repository, and writes refresh it", async () => {
      const posts = app.dataSource.getRepository(Post).extend({
        findPublished: cached(async function findPublished(this: Repository<Post>) {
          return this.find({ where: { published: true }, order: { id: "ASC" } });
        }, 60),
      });
      const { fresh, hit } = await freshAndHit(app, () => posts.findPublished());
      expect(hit).to.deep.equal(fresh);
      expect(hit.every((p) => p instanceof Post)).to.equal(true);
      expect(hit.map((p) => p.title)).to.deep.equal(["one", "two"]);

      const added = await posts.save({ title: "four", published: true });
      try {
        expect(
          (await posts.findPublished()).map((p) => p.title),
          "a write refreshes the cached result",
        ).to.deep.equal(["one", "two", "four"]);
        expect((await warm(app, () => posts.findPublished())).map((p) => p.title)).to.deep.equal([
          "one",
          "two",
          "four",
        ]);
      } finally {
        await posts.delete(added.id);
      }
      expect((await posts.findPublished()).map((p) => p.title)).to.deep.equal(["one", "two"]);
    });

    it("works on a plain service class holding `dataSource` as a field", async () => {
      class PostService {
        constructor(readonly dataSource: DataSource) {}

        titles = cached(
          async function titles(this: PostService, published: boolean) {
            const rows = await this.dataSource
              .getRepository(Post)
              .find({ where: { published }, order: { id: "ASC" } });
            return rows.map((p) => p.title);
          },
          { ttl: 60 },
        );
      }
      (PostService.prototype as unknown as { count: () => Promise<number> }).count = cached(
        async function (this: PostService) {
          return this.dataSource.getRepository(Post).count();
        },
        { ttl: 60, name: "count" },
      );
      const service = new PostService(app.dataSource) as PostService & { count(): Promise<number> };

      const { hit: published } = await freshAndHit(app, () => service.titles(true));
      expect(published).to.deep.equal(["one", "two"]);
      const drafts = await warm(app, () => service.titles(false));
      expect(drafts).to.deep.equal(["three"]);
      expect(await warm(app, () => service.count())).to.equal(3);

      const added = await app.dataSource
        .getRepository(Post)
        .save({ title: "draft", published: false });
      try {
        expect(await service.titles(false), "a write refreshes the cached result").to.deep.equal([
          "three",
          "draft",
        ]);
        expect(await service.count()).to.equal(4);
      } finally {
        await app.dataSource.getRepository(Post).delete(added.id);
      }
    });
  });
});
