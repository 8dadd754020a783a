import { expect } from "chai";
import { Repository } from "typeorm";
import { Cached } from "../lib";
import { Author, Comment, Post, Tag } from "./support/entities";
import { type App, dropNamespace, openApp, selectCount, uniqueNamespace } from "./support/fixture";
import { expectIndistinguishable, freshAndHit } from "./support/result-checks";
import { warm } from "./support/warm";

/** A class that is neither an entity nor an embedded class of the DataSource. */
class Summary {
  constructor(
    readonly title: string,
    readonly views: number,
  ) {}
}

let failNext = true;

class FaithfulRepository extends Repository<Post> {
  @Cached(60)
  everything(): Promise<Post[]> {
    return this.find({
      relations: { author: true, tags: true },
      order: { id: "ASC", tags: { id: "ASC" } },
    });
  }

  @Cached(60)
  one(id: number): Promise<Post | null> {
    return this.findOne({ where: { id }, relations: { author: true, tags: true } });
  }

  @Cached(60)
  page(take: number): Promise<[Post[], number]> {
    return this.findAndCount({ take, relations: { author: true }, order: { id: "ASC" } });
  }

  @Cached(60)
  total(): Promise<number> {
    return this.count();
  }

  @Cached(60)
  raw(): Promise<Record<string, unknown>[]> {
    return this.createQueryBuilder("post")
      .leftJoin("post.comments", "comment")
      .select("post.id", "id")
      .addSelect("post.title", "title")
      .addSelect("post.createdAt", "createdAt")
      .addSelect("post.likes", "likes")
      .addSelect("post.rating", "rating")
      .addSelect("post.cover", "cover")
      .addSelect("post.subtitle", "subtitle")
      .addSelect("COUNT(comment.id)", "comments")
      .groupBy("post.id")
      .orderBy("post.id")
      .getRawMany();
  }

  @Cached(60)
  async withUndefined(): Promise<{
    first: Post | null;
    missing: undefined;
    list: (Post | undefined)[];
  }> {
    const rows = await this.find({ order: { id: "ASC" } });
    return { first: rows[0] ?? null, missing: undefined, list: [rows[0], undefined] };
  }

  @Cached(60)
  async returnsFunction(): Promise<{ rows: Post[]; describe: () => string }> {
    const rows = await this.find({ order: { id: "ASC" } });
    return { rows, describe: () => `${rows.length} posts` };
  }

  @Cached(60)
  async returnsCycle(): Promise<{ rows: Post[]; self?: unknown }> {
    const result: { rows: Post[]; self?: unknown } = {
      rows: await this.find({ order: { id: "ASC" } }),
    };
    result.self = result;
    return result;
  }

  @Cached(60)
  async returnsForeignInstance(): Promise<Summary[]> {
    const rows = await this.find({ order: { id: "ASC" } });
    return rows.map((p) => new Summary(p.title, p.views));
  }

  @Cached(60)
  async failing(): Promise<number> {
    const n = await this.count();
    if (failNext) throw new Error("boom from failing()");
    return n;
  }

  @Cached(60)
  corruptible(): Promise<Post[]> {
    return this.find({ order: { id: "ASC" } });
  }
}

class FaithfulCommentRepository extends Repository<Comment> {
  @Cached(60)
  withPosts(): Promise<Comment[]> {
    return this.find({
      relations: { post: { author: true, tags: true } },
      order: { id: "ASC", post: { tags: { id: "ASC" } } },
    });
  }
}

describe("faithful results: a cached result is indistinguishable from a fresh one", () => {
  const ns = uniqueNamespace();
  let app: App;
  let posts: FaithfulRepository;
  let comments: FaithfulCommentRepository;
  let first: Post;
  let second: Post;
  const cover = Buffer.from([0, 1, 2, 127, 128, 254, 255]);

  before(async () => {
    app = await openApp(ns, { fresh: true });
    posts = new FaithfulRepository(Post, app.dataSource.manager);
    comments = new FaithfulCommentRepository(Comment, app.dataSource.manager);
    const ann = await app.dataSource.getRepository(Author).save({ name: "Ann" });
    const [red, blue] = await app.dataSource
      .getRepository(Tag)
      .save([{ name: "red" }, { name: "blue" }]);
    first = await posts.save(
      posts.create({
        title: "first",
        published: true,
        views: 7,
        likes: "9007199254740993", // beyond Number.MAX_SAFE_INTEGER: must stay an exact string
        rating: "12.30",
        cover,
        subtitle: null,
        author: ann,
        tags: [red, blue],
      }),
    );
    second = await posts.save(
      posts.create({
        title: "second",
        likes: "0",
        rating: null,
        cover: null,
        subtitle: "sub",
        author: null,
        tags: [],
      }),
    );
    await app.dataSource.getRepository(Comment).save([
      { body: "nice", post: first },
      { body: "meh", post: first },
      { body: "hm", post: second },
    ]);
  });

  /** set() may be refused while a version key is first created; a retry is stored. */
  async function setStored(key: string, value: unknown): Promise<boolean> {
    for (let i = 0; i < 3; i++) if (await app.cache.set(key, value, { ttl: 60 })) return true;
    return false;
  }

  after(async () => {
    await dropNamespace(app.redis, ns);
    await app.close();
  });

  describe("entities and their columns", () => {
    it("find with ManyToOne and ManyToMany relations: same classes, Dates, bigint, numeric, Buffer, null", async () => {
      const { fresh, hit } = await freshAndHit(app, () => posts.everything());
      expect(hit).to.deep.equal(fresh);
      expectIndistinguishable(hit, fresh);

      expect(hit).to.have.length(2);
      const [a, b] = hit;
      expect(a).to.be.instanceOf(Post);
      expect(b).to.be.instanceOf(Post);
      expect(a.author).to.be.instanceOf(Author);
      expect(a.author!.name).to.equal("Ann");
      expect(a.tags).to.be.an("array").with.length(2);
      for (const tag of a.tags!) expect(tag).to.be.instanceOf(Tag);
      expect(a.tags!.map((t) => t.name)).to.deep.equal(["red", "blue"]);

      expect(a.createdAt).to.be.instanceOf(Date);
      expect(a.createdAt.getTime()).to.equal(fresh[0].createdAt.getTime());
      expect(a.createdAt.getTime()).to.equal(first.createdAt.getTime());
      expect(a.likes).to.equal("9007199254740993");
      expect(a.rating).to.equal("12.30");
      expect(Buffer.isBuffer(a.cover)).to.equal(true);
      expect(a.cover!.equals(cover)).to.equal(true);
      expect(a.subtitle).to.equal(null);
      expect(a.deletedAt).to.equal(null);

      expect(b.author).to.equal(null);
      expect(b.tags).to.deep.equal([]);
      expect(b.rating).to.equal(null);
      expect(b.cover).to.equal(null);
      expect(b.subtitle).to.equal("sub");
      expect(b.likes).to.equal("0");
    });

    it("findOne with relations gives the same entity graph", async () => {
      const { fresh, hit } = await freshAndHit(app, () => posts.one(first.id));
      expect(hit).to.be.instanceOf(Post);
      expect(hit!.author).to.be.instanceOf(Author);
      expect(hit!.tags!.every((t) => t instanceof Tag)).to.equal(true);
      expect(hit).to.deep.equal(fresh);
      expectIndistinguishable(hit, fresh);
    });

    it("nested relations (Comment -> Post -> Author, Tags) keep their classes", async () => {
      const { fresh, hit } = await freshAndHit(app, () => comments.withPosts());
      expect(hit).to.have.length(3);
      for (const comment of hit) {
        expect(comment).to.be.instanceOf(Comment);
        expect(comment.post).to.be.instanceOf(Post);
        expect(comment.post.createdAt).to.be.instanceOf(Date);
      }
      expect(hit[0].post.author).to.be.instanceOf(Author);
      expect(hit[0].post.tags!.every((t) => t instanceof Tag)).to.equal(true);
      expect(hit[2].post.author).to.equal(null);
      expect(hit).to.deep.equal(fresh);
      expectIndistinguishable(hit, fresh);
    });

    it("findAndCount's [entities, count] tuple stays a two-element array with a number", async () => {
      const { fresh, hit } = await freshAndHit(app, () => posts.page(1));
      expect(Array.isArray(hit)).to.equal(true);
      expect(hit).to.have.length(2);
      const [rows, count] = hit;
      expect(count).to.be.a("number").and.to.equal(2);
      expect(rows).to.have.length(1);
      expect(rows[0]).to.be.instanceOf(Post);
      expect(rows[0].author).to.be.instanceOf(Author);
      expect(hit).to.deep.equal(fresh);
      expectIndistinguishable(hit, fresh);
    });

    it("count() stays a plain number", async () => {
      const { fresh, hit } = await freshAndHit(app, () => posts.total());
      expect(hit).to.be.a("number");
      expect(hit).to.equal(2);
      expect(hit).to.equal(fresh);
    });

    it("getRawMany rows stay plain objects with the driver's types (Date, strings, Buffer, null)", async () => {
      const { fresh, hit } = await freshAndHit(app, () => posts.raw());
      expect(hit).to.have.length(2);
      for (const row of hit) expect(Object.getPrototypeOf(row)).to.equal(Object.prototype);
      expect(hit[0].createdAt).to.be.instanceOf(Date);
      expect(hit[0].likes).to.equal("9007199254740993");
      expect(hit[0].rating).to.equal("12.30");
      expect(Buffer.isBuffer(hit[0].cover)).to.equal(true);
      expect((hit[0].cover as Buffer).equals(cover)).to.equal(true);
      expect(hit[0].comments).to.equal("2");
      expect(hit[1].cover).to.equal(null);
      expect(hit[1].subtitle).to.equal("sub");
      expect(hit).to.deep.equal(fresh);
      expectIndistinguishable(hit, fresh);
    });

    it("keeps undefined apart from null, and own properties holding undefined", async () => {
      const { fresh, hit } = await freshAndHit(app, () => posts.withUndefined());
      expect(hit.first).to.be.instanceOf(Post);
      expect(Object.hasOwn(hit, "missing")).to.equal(true);
      expect(hit.missing).to.equal(undefined);
      expect(hit.list).to.have.length(2);
      expect(hit.list[1]).to.equal(undefined);
      expect(hit.list[0]).to.be.instanceOf(Post);
      expect(hit).to.deep.equal(fresh);
      expectIndistinguishable(hit, fresh);
    });

    it("a method returning null (a missing id) is cached as null, a hit and not a miss", async () => {
      const missingId = 987654;
      const { fresh, hit } = await freshAndHit(app, () => posts.one(missingId));
      expect(fresh).to.equal(null);
      expect(hit).to.equal(null);

      const before = app.cache.stats();
      const selects = selectCount(app.dataSource);
      expect(await posts.one(missingId)).to.equal(null);
      const after = app.cache.stats();
      expect(selectCount(app.dataSource), "a cached null runs no SQL").to.equal(selects);
      expect(after.hits).to.equal(before.hits + 1);
      expect(after.misses).to.equal(before.misses);
    });
  });

  describe("the low-level API (wrap, get, set)", () => {
    const rich = () => ({
      map: new Map<unknown, unknown>([
        ["a", 1],
        [2, new Date("2020-01-02T03:04:05.006Z")],
        [{ k: 1 }, [1n, null]],
      ]),
      set: new Set<unknown>([1, "1", 2n, null, undefined]),
      big: 123456789012345678901234567890n,
      negativeBig: -42n,
      numbers: [NaN, Infinity, -Infinity, 0, 1.5, Number.MAX_SAFE_INTEGER, Number.MIN_VALUE],
      nested: [[1, [2, [3, []]]], [], [[null, undefined]]],
      holder: { inner: { deeper: [{ x: new Set([new Map([["k", new Date(0)]])]) }] } },
      date: new Date("2001-02-03T04:05:06.789Z"),
      buffer: Buffer.from("bytes \u0000\u00ff"),
      bytes: new Uint8Array([1, 2, 3, 250]),
      text: 'line\nbreak \u2028 "quotes" \\ and an emoji \u{1F600}',
      nothing: null,
      absent: undefined,
      yes: true,
      no: false,
      empty: {},
    });

    it("wrap returns Maps, Sets, BigInts, NaN/Infinity, nested arrays and undefined intact on a hit", async () => {
      let computed = 0;
      const { fresh, hit } = await freshAndHit(app, () =>
        app.cache.wrap("faithful-rich", () => {
          computed++;
          return rich();
        }),
      );
      expect(computed).to.be.greaterThan(0);
      expect(hit.map).to.be.instanceOf(Map);
      expect(hit.set).to.be.instanceOf(Set);
      expect(hit.big).to.equal(123456789012345678901234567890n);
      expect(typeof hit.big).to.equal("bigint");
      expect(Number.isNaN(hit.numbers[0])).to.equal(true);
      expect(hit.numbers[1]).to.equal(Infinity);
      expect(hit.numbers[2]).to.equal(-Infinity);
      expect(Object.hasOwn(hit, "absent")).to.equal(true);
      expect(hit).to.deep.equal(fresh);
      expectIndistinguishable(hit, fresh);
      expectIndistinguishable(hit, rich());
    });

    it("set/get round-trip the same values", async () => {
      await app.cache.clear();
      expect(await setStored("faithful-set", rich()), "set() eventually stores").to.equal(true);
      const got = await app.cache.get<ReturnType<typeof rich>>("faithful-set");
      expectIndistinguishable(got, rich());
    });

    it("wrap caches top-level undefined and null as values, not as misses", async () => {
      for (const value of [undefined, null]) {
        let computed = 0;
        const key = `faithful-${String(value)}`;
        const { hit } = await freshAndHit(app, () =>
          app.cache.wrap(key, () => {
            computed++;
            return value;
          }),
        );
        expect(hit).to.equal(value);
        const before = computed;
        expect(await app.cache.wrap(key, () => ++computed && value)).to.equal(value);
        expect(computed, `a cached ${String(value)} is not recomputed`).to.equal(before);
      }
    });

    it("keeps -0 apart from 0", async () => {
      const value = () => ({ negativeZero: -0, inArray: [-0, 0], inMap: new Map([["z", -0]]) });
      const { fresh, hit } = await freshAndHit(app, () =>
        app.cache.wrap("faithful-negative-zero", value),
      );
      expect(Object.is(fresh.negativeZero, -0)).to.equal(true);
      expect(Object.is(hit.negativeZero, -0), "cached -0 comes back as -0").to.equal(true);
      expect(Object.is(hit.inArray[0], -0), "cached -0 in an array comes back as -0").to.equal(
        true,
      );
      expect(Object.is(hit.inArray[1], 0)).to.equal(true);
      expectIndistinguishable(hit, value());

      const top = await freshAndHit(app, () =>
        app.cache.wrap("faithful-top-negative-zero", () => -0),
      );
      expect(Object.is(top.hit, -0), "a top-level cached -0 comes back as -0").to.equal(true);
    });

    it('objects with a "$t" key come back as the same plain objects, never as tagged values', async () => {
      const value = () => ({
        looksLikeDate: { $t: "d", v: "2020-01-01T00:00:00.000Z" },
        looksLikeEntity: { $t: "e", c: "Post", v: { id: 1, title: "forged" } },
        looksLikeWrapped: { $t: "o", v: { a: 1 } },
        looksLikeUndefined: { $t: "u", v: 0 },
        unknownTag: { $t: "zzz" },
        onlyTag: { $t: undefined },
        inArray: [{ $t: "i", v: "5" }],
        inMap: new Map([["k", { $t: "n", v: "NaN" }]]),
      });
      const { fresh, hit } = await freshAndHit(app, () =>
        app.cache.wrap("faithful-tag-key", value),
      );
      expect(hit.looksLikeDate).to.not.be.instanceOf(Date);
      expect(hit.looksLikeEntity).to.not.be.instanceOf(Post);
      expect(hit.looksLikeEntity).to.deep.equal({
        $t: "e",
        c: "Post",
        v: { id: 1, title: "forged" },
      });
      expect(hit).to.deep.equal(fresh);
      expectIndistinguishable(hit, value());

      expect(await setStored("faithful-tag-key-set", value())).to.equal(true);
      expectIndistinguishable(await app.cache.get("faithful-tag-key-set"), value());
    });

    it('an own "__proto__" key round-trips as data and pollutes no prototype', async () => {
      const evil = () => ({
        top: JSON.parse('{"__proto__": {"polluted": "yes"}, "safe": 1}'),
        withTag: JSON.parse('{"$t": "x", "__proto__": {"polluted": "tagged"}}'),
        inArray: [JSON.parse('{"__proto__": {"polluted": "array"}}')],
        inMap: new Map([["m", JSON.parse('{"__proto__": {"polluted": "map"}}')]]),
      });
      const check = (decoded: ReturnType<typeof evil>) => {
        expect(
          ({} as Record<string, unknown>).polluted,
          "Object.prototype is not polluted",
        ).to.equal(undefined);
        for (const object of [
          decoded.top,
          decoded.withTag,
          decoded.inArray[0],
          decoded.inMap.get("m"),
        ]) {
          expect(Object.getPrototypeOf(object)).to.equal(Object.prototype);
          expect(Object.hasOwn(object, "__proto__")).to.equal(true);
          expect((object as Record<string, unknown>).polluted).to.equal(undefined);
        }
        expect(Object.getOwnPropertyDescriptor(decoded.top, "__proto__")!.value).to.deep.equal({
          polluted: "yes",
        });
        expect(decoded.top.safe).to.equal(1);
        expectIndistinguishable(decoded, evil());
      };

      const { hit } = await freshAndHit(app, () => app.cache.wrap("faithful-proto", evil));
      check(hit);

      expect(await setStored("faithful-proto-set", evil())).to.equal(true);
      check((await app.cache.get<ReturnType<typeof evil>>("faithful-proto-set"))!);
      expect(({} as Record<string, unknown>).polluted).to.equal(undefined);
    });
  });

  describe("results that cannot be stored", () => {
    let warnings: string[];
    const onWarning = (message: string) => warnings.push(message);
    beforeEach(() => {
      warnings = [];
      app.cache.on("warning", onWarning);
    });
    afterEach(() => {
      app.cache.off("warning", onWarning);
    });

    /** Calls the method twice; both return the computed value, both run SQL, one warning names the method. */
    async function expectNotCached<T>(
      method: string,
      call: () => Promise<T>,
      check: (value: T) => void,
    ): Promise<void> {
      await app.cache.clear();
      for (let i = 0; i < 3; i++) {
        const selects = selectCount(app.dataSource);
        const hits = app.cache.stats().hits;
        const value = await call();
        check(value);
        expect(
          selectCount(app.dataSource),
          `call ${i + 1} of ${method} re-runs its SQL`,
        ).to.be.greaterThan(selects);
        expect(app.cache.stats().hits, `call ${i + 1} of ${method} is no hit`).to.equal(hits);
      }
      const naming = warnings.filter((w) => w.includes(`FaithfulRepository<Post>.${method}`));
      expect(naming, `warnings: ${JSON.stringify(warnings)}`).to.have.length(1);
      expect(naming[0]).to.match(/not cached/);
    }

    it("a result holding a function is returned, not cached, and warned about once", async () => {
      await expectNotCached(
        "returnsFunction",
        () => posts.returnsFunction(),
        (value) => {
          expect(value.rows).to.have.length(2);
          expect(value.rows[0]).to.be.instanceOf(Post);
          expect(value.describe()).to.equal("2 posts");
        },
      );
    });

    it("a circular result is returned, not cached, and warned about once", async () => {
      await expectNotCached(
        "returnsCycle",
        () => posts.returnsCycle(),
        (value) => {
          expect(value.self).to.equal(value);
          expect(value.rows).to.have.length(2);
        },
      );
    });

    it("an instance of a non-entity class is returned, not cached, and warned about once", async () => {
      await expectNotCached(
        "returnsForeignInstance",
        () => posts.returnsForeignInstance(),
        (value) => {
          expect(value).to.have.length(2);
          expect(value[0]).to.be.instanceOf(Summary);
          expect(value[0].title).to.equal("first");
        },
      );
      expect(warnings.find((w) => w.includes("returnsForeignInstance"))).to.include("Summary");
    });

    it("a thrown error is not cached: the next call runs again", async () => {
      await app.cache.clear();
      failNext = true;
      for (let i = 0; i < 3; i++) {
        const selects = selectCount(app.dataSource);
        let error: unknown;
        try {
          await posts.failing();
        } catch (e) {
          error = e;
        }
        expect(error).to.be.instanceOf(Error);
        expect((error as Error).message).to.equal("boom from failing()");
        expect(selectCount(app.dataSource), `failing call ${i + 1} ran its SQL`).to.be.greaterThan(
          selects,
        );
      }
      failNext = false;
      const hits = app.cache.stats().hits;
      expect(await posts.failing()).to.equal(2);
      expect(app.cache.stats().hits, "the first successful call is computed, not served").to.equal(
        hits,
      );
      await warm(app, () => posts.failing());
    });
  });

  describe("corrupted entries", () => {
    async function entryKeys(fragment: string): Promise<string[]> {
      const found: string[] = [];
      let cursor = "0";
      do {
        const [next, keys] = await app.redis.scan(cursor, "MATCH", `${ns}:e:*`, "COUNT", 1000);
        cursor = next;
        found.push(...keys.filter((k) => k.includes(fragment)));
      } while (cursor !== "0");
      return found;
    }

    async function storedEntry(): Promise<string> {
      await freshAndHit(app, () => posts.corruptible());
      const keys = await entryKeys(".corruptible#");
      expect(keys).to.have.length(1);
      return keys[0];
    }

    async function expectCorrectAfterCorruption(): Promise<void> {
      const selects = selectCount(app.dataSource);
      const rows = await posts.corruptible();
      expect(
        selectCount(app.dataSource),
        "the corrupted entry is a miss: SQL runs",
      ).to.be.greaterThan(selects);
      expect(rows.map((p) => p.title)).to.deep.equal(["first", "second"]);
      expect(rows[0]).to.be.instanceOf(Post);
      expect(rows[0].createdAt).to.be.instanceOf(Date);
      // Later calls keep working and the entry is cached again.
      const again = await warm(
        app,
        () => posts.corruptible(),
        3,
        "after the corrupted entry was treated as a miss, later calls still run SQL and are never cached again",
      );
      expect(again.map((p) => p.title)).to.deep.equal(["first", "second"]);
      expect(again[0]).to.be.instanceOf(Post);
    }

    it("an entry overwritten with garbage is a miss, and later calls work", async () => {
      const key = await storedEntry();
      await app.redis.set(key, "\u0000 garbage, not an entry", "EX", 60);
      await expectCorrectAfterCorruption();
    });

    it("an entry whose payload is not valid JSON is a miss, and later calls work", async () => {
      const key = await storedEntry();
      const text = (await app.redis.get(key))!;
      const header = text.slice(0, text.indexOf("\n") + 1);
      await app.redis.set(key, `${header}{"$t": "e", "c": "Post", "v": {broken`, "EX", 60);
      await expectCorrectAfterCorruption();
    });

    it("an entry naming an unknown class or tag is a miss, and later calls work", async () => {
      const key = await storedEntry();
      const text = (await app.redis.get(key))!;
      const header = text.slice(0, text.indexOf("\n") + 1);
      await app.redis.set(
        key,
        `${header}[{"$t": "e", "c": "NoSuchEntity", "v": {}}, {"$t": "??"}]`,
        "EX",
        60,
      );
      await expectCorrectAfterCorruption();
    });

    it("cache.get of a corrupted entry resolves as a miss (undefined) instead of throwing", async () => {
      await app.cache.clear();
      expect(await setStored("faithful-corrupt-get", { ok: true })).to.equal(true);
      const [key] = await entryKeys(":k:faithful-corrupt-get");
      expect(key, "the entry key is found by SCAN").to.be.a("string");
      const text = (await app.redis.get(key))!;
      await app.redis.set(key, `${text.slice(0, text.indexOf("\n") + 1)}{not json`, "EX", 60);

      let outcome: unknown;
      try {
        outcome = await app.cache.get("faithful-corrupt-get");
      } catch (error) {
        outcome = error;
      }
      expect(outcome, `get() of a corrupted entry gave ${String(outcome)}`).to.equal(undefined);
      // And the key can be used again.
      expect(await setStored("faithful-corrupt-get", { ok: 2 })).to.equal(true);
      expect(await app.cache.get("faithful-corrupt-get")).to.deep.equal({ ok: 2 });
    });
  });
});
