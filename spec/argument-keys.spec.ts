import { expect } from "chai";
import {
  And,
  ArrayContains,
  Between,
  type EntityManager,
  Equal,
  type FindOptionsWhere,
  ILike,
  In,
  IsNull,
  LessThan,
  Like,
  MoreThan,
  MoreThanOrEqual,
  Not,
  Raw,
  Repository,
} from "typeorm";
import { Cached, UnkeyableArgumentError } from "../lib";
import {
  Cursor,
  HiddenPage,
  Page,
  show,
  TitleFilter,
  TitlePaging,
} from "./support/argument-values";
import { Post } from "./support/entities";
import { type App, dropNamespace, openApp, selectCount, uniqueNamespace } from "./support/fixture";
import { freshAndHit } from "./support/result-checks";
import { warm } from "./support/warm";

/** A Date that carries a zone: its time alone does not say which call it is. */
class ZonedDate extends Date {
  constructor(
    time: number,
    readonly zone: string,
  ) {
    super(time);
  }

  describe(): string {
    return `${this.toISOString()} ${this.zone}`;
  }
}

class SerialDate extends ZonedDate {
  override toJSON(): string {
    return this.describe();
  }
}

class IdList extends Array<number> {}

/** What `tsc --target ES2020` emits for a class with a #private field: the state lives in a WeakMap. */
const DownLevelledPage = new Function(
  "__classPrivateFieldGet",
  "__classPrivateFieldSet",
  `var _DownLevelledPage_number;
   class DownLevelledPage {
     constructor(number) {
       _DownLevelledPage_number.set(this, void 0);
       __classPrivateFieldSet(this, _DownLevelledPage_number, number, "f");
     }
     describe() { return "DownLevelledPage(" + __classPrivateFieldGet(this, _DownLevelledPage_number, "f") + ")"; }
   }
   _DownLevelledPage_number = new WeakMap();
   return DownLevelledPage;`,
)(
  (receiver: object, state: WeakMap<object, unknown>) => state.get(receiver),
  (receiver: object, state: WeakMap<object, unknown>, value: unknown) => state.set(receiver, value),
) as new (
  number: number,
) => object;

class ArgumentRepository extends Repository<Post> {
  /** Returns what it saw of its argument, so a result served for another argument shows. */
  @Cached(60)
  async probe(arg: unknown): Promise<{ seen: string; total: number }> {
    return { seen: show(arg), total: await this.count() };
  }

  @Cached(60)
  async titlesWhere(where: FindOptionsWhere<Post>): Promise<string[]> {
    return (await this.find({ where, order: { id: "ASC" } })).map((p) => p.title);
  }

  @Cached(60)
  async pageOf(page: { number: number }): Promise<string[]> {
    return (await this.find({ order: { id: "ASC" }, skip: page.number - 1, take: 1 })).map(
      (p) => p.title,
    );
  }

  @Cached(60)
  async matching(pattern: RegExp): Promise<string[]> {
    return (await this.find({ order: { id: "ASC" } }))
      .map((p) => p.title)
      .filter((t) => pattern.test(t));
  }

  @Cached(60)
  async titlesIn(manager: EntityManager): Promise<string[]> {
    return (await manager.find(Post, { order: { id: "ASC" } })).map((p) => p.title);
  }

  @Cached(60)
  async titlesOf(repository: Repository<Post>): Promise<string[]> {
    return (await repository.find({ order: { id: "ASC" } })).map((p) => p.title);
  }

  @Cached({
    ttl: 60,
    key: (filter: { title: string; published: boolean }) => ({
      title: filter.title,
      published: filter.published,
    }),
  })
  async keyedBy(filter: { title: string; published: boolean; extra?: unknown }): Promise<string> {
    return `${filter.title}/${filter.published}/${await this.count()}`;
  }

  @Cached({ ttl: 60, key: (id: unknown) => id })
  async keyedById(id: unknown): Promise<string> {
    return `${typeof id}:${String(id)}/${await this.count()}`;
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

describe("arguments are keyed by their whole value (invariant 8)", () => {
  const ns = uniqueNamespace();
  let app: App;
  let repo: ArgumentRepository;

  before(async () => {
    app = await openApp(ns, { fresh: true });
    repo = new ArgumentRepository(Post, app.dataSource.manager);
    await app.dataSource.getRepository(Post).save([
      { title: "one", published: true, views: 1 },
      { title: "two", published: true, views: 2 },
      { title: "three", published: false, views: 3 },
    ]);
  });

  after(async () => {
    await dropNamespace(app.redis, ns);
    await app.close();
  });

  /** `first` is cached; a call with `second` must compute its own result, not be served the first's. */
  async function expectApart(first: unknown, second: unknown): Promise<void> {
    const { hit } = await freshAndHit(app, () => repo.probe(first));
    expect(hit.seen).to.equal(show(first));
    const hits = app.cache.stats().hits;
    const selects = selectCount(app.dataSource);
    const result = await repo.probe(second);
    expect(result.seen, `probe(${show(second)}) after probe(${show(first)})`).to.equal(
      show(second),
    );
    expect(
      app.cache.stats().hits,
      `probe(${show(second)}) is not served probe(${show(first)})'s entry`,
    ).to.equal(hits);
    expect(selectCount(app.dataSource)).to.be.greaterThan(selects);
  }

  /** Equal values share one entry: the second is a hit that runs no SQL. */
  async function expectShared(first: unknown, second: unknown): Promise<void> {
    await freshAndHit(app, () => repo.probe(first));
    const result = await warm(
      app,
      () => repo.probe(second),
      1,
      `probe(${show(second)}) after probe(${show(first)})`,
    );
    expect(result.seen).to.equal(show(first));
  }

  async function expectRefused(arg: unknown, reason: RegExp): Promise<void> {
    const selects = selectCount(app.dataSource);
    const error = await rejection(repo.probe(arg));
    expect(error, `probe(${show(arg)}) gave ${error.message}`).to.be.instanceOf(
      UnkeyableArgumentError,
    );
    expect((error as UnkeyableArgumentError).method).to.equal("ArgumentRepository<Post>.probe");
    expect(error.message).to.match(reason);
    expect(error.message).to.include("@Cached({ key:");
    expect(selectCount(app.dataSource), "the method did not run").to.equal(selects);
  }

  describe("class instances whose state is not in their own fields", () => {
    it("an instance keeping its state in #private fields is refused, not keyed as `HiddenPage{}`", async () => {
      await expectRefused(new HiddenPage(3), /HiddenPage.*#private/);
      const error = await rejection(repo.pageOf(new HiddenPage(1)));
      expect(error).to.be.instanceOf(UnkeyableArgumentError);
      expect(error.message).to.include("toJSON()");
    });

    it("public fields beside a #private one are refused too: they would collapse Cursor(10, 0) and Cursor(10, 20)", async () => {
      await expectRefused(new Cursor(10, 20), /Cursor.*#private/);
    });

    it("a #private field in a parent class is found as well", async () => {
      await expectRefused(new TitlePaging("one").resize(5), /Paging.*#private/);
    });

    it("#private fields as TypeScript emits them for targets before ES2022 (WeakMaps) are found too", async () => {
      await expectRefused(new DownLevelledPage(2), /DownLevelledPage.*#private/);
    });

    it("a class with toJSON() is keyed by it: page(new Page(3)) is not served page(new Page(1))'s rows", async () => {
      const { hit } = await freshAndHit(app, () => repo.pageOf(new Page(1)));
      expect(hit).to.deep.equal(["one"]);
      expect(await repo.pageOf(new Page(3))).to.deep.equal(["three"]);
      expect(await warm(app, () => repo.pageOf(new Page(3)))).to.deep.equal(["three"]);
      expect(await warm(app, () => repo.pageOf(new Page(1)))).to.deep.equal(["one"]);
      await expectApart(new Page(1), new Page(2));
      await expectShared(new Page(2), new Page(2));
    });

    it("an Error (its message is held out of sight) is refused, not keyed as `Error{}`", async () => {
      await expectRefused(new Error("a"), /built-in Error/);
    });

    it("instances of built-in classes that keep state in internal slots are refused", async () => {
      await expectRefused(new Intl.NumberFormat("de-DE"), /built-in NumberFormat/);
      await expectRefused(new WeakMap(), /built-in WeakMap/);
    });

    it("a DTO class with public fields is keyed by them: equal ones share an entry, others do not", async () => {
      await expectShared(new TitleFilter("one", true), new TitleFilter("one", true));
      await expectApart(new TitleFilter("one", true), new TitleFilter("one", false));
      await expectApart(new TitleFilter("one"), { title: "one" });
    });
  });

  describe("built-in value types", () => {
    it("RegExp: by source and flags (and lastIndex)", async () => {
      const { hit } = await freshAndHit(app, () => repo.matching(/^t/));
      expect(hit).to.deep.equal(["two", "three"]);
      expect(await repo.matching(/e$/), "another pattern gets its own rows").to.deep.equal([
        "one",
        "three",
      ]);
      await expectApart(/a/, /b/);
      await expectApart(/a/, /a/i);
      await expectShared(/a/g, /a/g);
      const advanced = /o/g;
      advanced.exec("foo");
      await expectApart(/o/g, advanced);
    });

    it("URLSearchParams and URL: by their text", async () => {
      await expectApart(new URLSearchParams("page=1"), new URLSearchParams("page=2"));
      await expectShared(
        new URLSearchParams("page=1&size=2"),
        new URLSearchParams({ page: "1", size: "2" }),
      );
      await expectApart(new URL("https://example.com/a?x=1"), new URL("https://example.com/a?x=2"));
      await expectApart(new URL("https://example.com/a"), "https://example.com/a");
    });

    it("typed arrays: by their bytes and element type, not truncated to one byte per element", async () => {
      await expectApart(new Float64Array([1.5]), new Float64Array([1.25]));
      await expectApart(new Int16Array([256]), new Int16Array([512]));
      await expectApart(new Uint8Array([1, 2]), Buffer.from([1, 2]));
      await expectApart(new Uint8Array([1, 2]), new Uint8Array([1, 2, 0]).subarray(1));
      await expectShared(new Float64Array([1.5, 2]), new Float64Array([1.5, 2]));
    });

    it("boxed primitives: by their value, and apart from the primitive", async () => {
      await expectApart(new Number(1), new Number(2));
      await expectApart(new Boolean(false), new Boolean(true));
      await expectApart(new String("ab"), new String("ac"));
      await expectApart(new String("ab"), "ab");
    });

    it("subclasses of built-in types: by their own toJSON(), or refused, never by the built-in's value alone", async () => {
      await expectRefused(
        new ZonedDate(0, "Europe/Paris"),
        /ZonedDate, a subclass of a built-in type/,
      );
      await expectRefused(IdList.from([1, 2]), /IdList, a subclass of a built-in type/);
      await expectApart(new SerialDate(0, "Europe/Paris"), new SerialDate(0, "Asia/Tokyo"));
      await expectApart(new SerialDate(0, "Europe/Paris"), new Date(0));
    });

    it("Map and Set: by their entries in order, since a method iterating them sees the order", async () => {
      await expectApart(
        new Map([
          ["a", 1],
          ["b", 2],
        ]),
        new Map([
          ["b", 2],
          ["a", 1],
        ]),
      );
      await expectApart(new Set([1, 2]), new Set([2, 1]));
      await expectShared(new Map([["a", { x: 1 }]]), new Map([["a", { x: 1 }]]));
    });

    it("plain objects: symbol keys are refused; getters, null prototypes and holes are keyed by what they hold", async () => {
      await expectRefused({ [Symbol("tenant")]: "a" }, /symbol keys/);
      await expectApart(
        {
          get n() {
            return 1;
          },
        },
        {
          get n() {
            return 2;
          },
        },
      );
      await expectApart(
        Object.assign(Object.create(null), { a: 1 }),
        Object.assign(Object.create(null), { a: 2 }),
      );
      // biome-ignore lint/suspicious/noSparseArray: the hole is the point
      await expectApart([, 1], [undefined, 1]);
      const hidden = { a: 1 };
      Object.defineProperty(hidden, "b", { value: 2, enumerable: false });
      await expectRefused(hidden, /non-enumerable property "b"/);
    });

    it("a structure nested too deeply to key is refused, not thrown as a RangeError", async () => {
      let deep: unknown[] = [];
      for (let i = 0; i < 100_000; i++) deep = [deep];
      await expectRefused(deep, /nested too deeply/);
    });
  });

  describe("TypeORM find operators, the usual arguments of repository methods", () => {
    it("are keyed by kind and operands, and each call gets its own rows", async () => {
      const { hit } = await freshAndHit(app, () => repo.titlesWhere({ title: In(["one", "two"]) }));
      expect(hit).to.deep.equal(["one", "two"]);
      expect(await repo.titlesWhere({ title: In(["three"]) })).to.deep.equal(["three"]);
      expect(await warm(app, () => repo.titlesWhere({ title: In(["three"]) }))).to.deep.equal([
        "three",
      ]);
      expect(await repo.titlesWhere({ views: MoreThan(1) })).to.deep.equal(["two", "three"]);
      expect(await repo.titlesWhere({ views: MoreThan(2) })).to.deep.equal(["three"]);
      expect(await repo.titlesWhere({ views: LessThan(2) })).to.deep.equal(["one"]);
      expect(await repo.titlesWhere({ views: MoreThanOrEqual(2) })).to.deep.equal(["two", "three"]);
      expect(await repo.titlesWhere({ title: Like("t%") })).to.deep.equal(["two", "three"]);
      expect(await repo.titlesWhere({ title: ILike("T%") })).to.deep.equal(["two", "three"]);
      expect(await repo.titlesWhere({ title: Like("o%") })).to.deep.equal(["one"]);
      expect(await repo.titlesWhere({ views: Between(1, 2) })).to.deep.equal(["one", "two"]);
      expect(await repo.titlesWhere({ views: Between(2, 3) })).to.deep.equal(["two", "three"]);
      expect(await repo.titlesWhere({ subtitle: IsNull() })).to.deep.equal(["one", "two", "three"]);
      expect(await repo.titlesWhere({ subtitle: Not(IsNull()) })).to.deep.equal([]);
      expect(await repo.titlesWhere({ title: Not(In(["one"])) })).to.deep.equal(["two", "three"]);
      expect(await repo.titlesWhere({ title: Not(In(["two"])) })).to.deep.equal(["one", "three"]);
      expect(await repo.titlesWhere({ views: And(MoreThan(1), LessThan(3)) })).to.deep.equal([
        "two",
      ]);
      expect(await repo.titlesWhere({ views: And(MoreThan(0), LessThan(3)) })).to.deep.equal([
        "one",
        "two",
      ]);
      expect(await repo.titlesWhere({ title: Equal("two") })).to.deep.equal(["two"]);
      expect(await repo.titlesWhere({ views: Raw("1") })).to.deep.equal(["one"]);
      expect(await repo.titlesWhere({ views: Raw("2") })).to.deep.equal(["two"]);
      expect(await warm(app, () => repo.titlesWhere({ title: Not(In(["two"])) }))).to.deep.equal([
        "one",
        "three",
      ]);
      expect(await warm(app, () => repo.titlesWhere({ views: Between(1, 2) }))).to.deep.equal([
        "one",
        "two",
      ]);
    });

    it("operators that differ only in kind or nesting do not share entries", async () => {
      await expectApart(MoreThan(1), LessThan(1));
      await expectApart(In([1]), Not(In([1])));
      await expectApart(ArrayContains(["a"]), ArrayContains(["b"]));
      await expectApart(Raw("1"), Raw("2"));
      await expectShared(In([1, 2]), In([1, 2]));
      await expectShared({ views: Between(1, 2) }, { views: Between(1, 2) });
    });

    it("Raw() built by a function is refused: the SQL it builds cannot be read", async () => {
      await expectRefused(
        Raw((alias) => `${alias} > 1`),
        /Raw\(\) find operator built by a function/,
      );
    });
  });

  describe("the `key` option", () => {
    it('keys what it returns by value: objects are not all `[object Object]`, and 1 is not "1"', async () => {
      await freshAndHit(app, () => repo.keyedBy({ title: "a", published: true }));
      const hits = app.cache.stats().hits;
      expect(await repo.keyedBy({ title: "a", published: false })).to.match(/^a\/false\//);
      expect(app.cache.stats().hits).to.equal(hits);
      expect(
        await warm(app, () => repo.keyedBy({ title: "a", published: true, extra: () => 1 })),
      ).to.match(/^a\/true\//);

      await freshAndHit(app, () => repo.keyedById(1));
      expect(await repo.keyedById("1")).to.match(/^string:1\//);
      expect(await warm(app, () => repo.keyedById(1))).to.match(/^number:1\//);
    });
  });

  describe("a manager or repository of another DataSource, passed as an argument", () => {
    const otherSchema = `${ns}_other`;
    let other: App;
    let bare: App | undefined;

    before(async () => {
      // The other schema's cache shares this store and namespace, so its reads are tracked here too.
      other = await openApp(ns, {
        fresh: true,
        schema: otherSchema,
        cache: { store: app.cache.store },
      });
      await other.dataSource.getRepository(Post).save([{ title: "elsewhere" }]);
    });

    after(async () => {
      await bare?.close();
      await other.close();
      await app.dataSource.query(`DROP SCHEMA IF EXISTS "${otherSchema}" CASCADE`);
    });

    it("is keyed by the database and schema it reaches: another schema's rows never come back", async () => {
      const { hit } = await freshAndHit(app, () => repo.titlesIn(app.dataSource.manager));
      expect(hit).to.deep.equal(["one", "two", "three"]);
      expect(
        await repo.titlesIn(other.dataSource.manager),
        "the other schema's manager reads its own rows",
      ).to.deep.equal(["elsewhere"]);
      expect(await warm(app, () => repo.titlesIn(other.dataSource.manager))).to.deep.equal([
        "elsewhere",
      ]);
      expect(await warm(app, () => repo.titlesIn(app.dataSource.manager))).to.deep.equal([
        "one",
        "two",
        "three",
      ]);
      expect(await repo.titlesOf(other.dataSource.getRepository(Post))).to.deep.equal([
        "elsewhere",
      ]);
      expect(await repo.titlesOf(app.dataSource.getRepository(Post))).to.deep.equal([
        "one",
        "two",
        "three",
      ]);
      expect(
        await warm(app, () => repo.titlesOf(other.dataSource.getRepository(Post))),
      ).to.deep.equal(["elsewhere"]);
    });

    it("and a write there reaches the entry read through it", async () => {
      await warm(app, () => repo.titlesIn(other.dataSource.manager));
      const added = await other.dataSource.getRepository(Post).save({ title: "also elsewhere" });
      try {
        expect(await repo.titlesIn(other.dataSource.manager)).to.deep.equal([
          "elsewhere",
          "also elsewhere",
        ]);
      } finally {
        await other.dataSource.getRepository(Post).delete(added.id);
      }
      expect(await repo.titlesIn(other.dataSource.manager)).to.deep.equal(["elsewhere"]);
    });

    it("one of a DataSource without a QueryCache is refused: its reads could not be tracked", async () => {
      bare = await openApp(ns, { schema: otherSchema });
      await bare.cache.close();
      const error = await rejection(repo.titlesIn(bare.dataSource.manager));
      expect(error).to.be.instanceOf(UnkeyableArgumentError);
      expect(error.message).to.include("has no QueryCache");
    });
  });
});
