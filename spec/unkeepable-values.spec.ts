import { expect } from "chai";
import { Repository } from "typeorm";
import { Cached } from "../lib";
import { type App, dropNamespace, openApp, selectCount, uniqueNamespace } from "./support/fixture";
import { Doc, unkeepableEntities, Wallet } from "./support/unkeepable-entities";

const DEPTH = 2500;

class WalletRepository extends Repository<Wallet> {
  @Cached(60)
  all(): Promise<Wallet[]> {
    return this.find({ order: { id: "ASC" } });
  }
}

class DocRepository extends Repository<Doc> {
  @Cached(60)
  byId(id: number): Promise<Doc | null> {
    return this.findOneBy({ id });
  }

  @Cached(60)
  async withFailingGetter(): Promise<{ count: number; readonly broken: number }> {
    const count = await this.count();
    return {
      count,
      get broken(): number {
        throw new Error("computed on demand only");
      },
    };
  }
}

/** A Date that knows its zone: as a plain Date it would lose `zone` and its methods. */
class ZonedDate extends Date {
  zone = "Europe/Paris";

  label(): string {
    return `${this.toISOString()} ${this.zone}`;
  }
}

class Registry extends Map<string, number> {}

const tag = Symbol("tag");

class ShapedRepository extends Repository<Doc> {
  @Cached(60)
  async shaped(kind: string): Promise<unknown> {
    const count = await this.count();
    switch (kind) {
      case "date subclass":
        return new ZonedDate(count);
      case "map subclass":
        return new Registry([["count", count]]);
      case "null prototype":
        return Object.assign(Object.create(null), { count });
      case "symbol key":
        return { count, [tag]: "kept" };
      default:
        return { count };
    }
  }
}

function depthOf(value: unknown): number {
  let depth = 0;
  for (let v = value; Array.isArray(v); v = v[0]) depth++;
  return depth;
}

/**
 * Values the cache cannot keep as they are go back to the caller as they are, uncached, with a
 * warning (invariants 7 and 10): never a copy that behaves differently, never an error.
 */
describe("values the cache cannot keep are returned, not broken or thrown", () => {
  const ns = uniqueNamespace();
  let app: App;
  let warnings: string[] = [];
  let docId: number;

  before(async () => {
    app = await openApp(ns, { fresh: true, extraEntities: unkeepableEntities });
    app.cache.on("warning", (message: string) => warnings.push(message));
    await app.dataSource.getRepository(Wallet).save([{ owner: "ann" }, { owner: "bob" }]);
    const [row] = await app.dataSource.query(
      `INSERT INTO "${ns}"."doc" (body) VALUES ((repeat('[', ${DEPTH}) || repeat(']', ${DEPTH}))::jsonb) RETURNING id`,
    );
    docId = row.id;
  });

  beforeEach(() => {
    warnings = [];
  });

  after(async () => {
    await dropNamespace(app.redis, ns);
    await app.close();
  });

  it("entities with #private fields come back from every call built by their constructor: they are not stored", async () => {
    const wallets = new WalletRepository(Wallet, app.dataSource.manager);
    const stats = app.cache.stats();
    for (let i = 0; i < 3; i++) {
      const selects = selectCount(app.dataSource);
      const rows = await wallets.all();
      expect(rows.map((w) => w.owner)).to.deep.equal(["ann", "bob"]);
      expect(rows.every((w) => w instanceof Wallet)).to.equal(true);
      expect(rows[0].opened.getTime(), `call ${i + 1}: the private field is there`).to.equal(0);
      expect(selectCount(app.dataSource), `call ${i + 1} read the database`).to.be.greaterThan(
        selects,
      );
    }
    expect(app.cache.stats().hits).to.equal(stats.hits);
    expect(app.cache.stats().skipped - stats.skipped).to.equal(3);
    expect(warnings).to.have.lengthOf(1);
    expect(warnings[0]).to.include("WalletRepository<Wallet>.all").and.to.include("#private");
  });

  it(`jsonb nested ${DEPTH} deep: the cached call returns what the uncached one does, instead of a RangeError`, async () => {
    const docs = new DocRepository(Doc, app.dataSource.manager);
    const uncached = await app.dataSource.getRepository(Doc).findOneBy({ id: docId });
    expect(depthOf(uncached?.body)).to.equal(DEPTH);
    for (let i = 0; i < 2; i++) {
      const doc = await docs.byId(docId);
      expect(doc).to.be.instanceOf(Doc);
      expect(depthOf(doc?.body), `call ${i + 1}`).to.equal(DEPTH);
    }
    expect(warnings, warnings.join("\n")).to.have.lengthOf(1);
    expect(warnings[0])
      .to.include("DocRepository<Doc>.byId")
      .and.to.include("nested more than 1000 levels deep");
  });

  for (const [kind, check] of [
    ["date subclass", (v: unknown) => expect((v as ZonedDate).label()).to.match(/Europe\/Paris$/)],
    ["map subclass", (v: unknown) => expect(v).to.be.instanceOf(Registry)],
    ["null prototype", (v: unknown) => expect(Object.getPrototypeOf(v)).to.equal(null)],
    ["symbol key", (v: unknown) => expect((v as Record<symbol, string>)[tag]).to.equal("kept")],
  ] as const) {
    it(`a ${kind} comes back from every call as it was computed: it is not stored as something else`, async () => {
      const shaped = new ShapedRepository(Doc, app.dataSource.manager);
      for (let i = 0; i < 3; i++) check(await shaped.shaped(kind));
      expect(warnings).to.have.lengthOf(1);
      expect(warnings[0]).to.include("ShapedRepository<Doc>.shaped: result not cached");
    });
  }

  it("plain values of those kinds are still cached", async () => {
    const shaped = new ShapedRepository(Doc, app.dataSource.manager);
    await shaped.shaped("plain");
    await shaped.shaped("plain");
    const hits = app.cache.stats().hits;
    expect(await shaped.shaped("plain")).to.deep.equal({ count: 1 });
    expect(app.cache.stats().hits).to.equal(hits + 1);
  });

  it("a value whose getter throws is returned as it is, not turned into the getter's error", async () => {
    const docs = new DocRepository(Doc, app.dataSource.manager);
    const result = await docs.withFailingGetter();
    expect(result.count).to.equal(1);
    expect(() => result.broken).to.throw("computed on demand only");
    expect(warnings.join("\n"))
      .to.include("DocRepository<Doc>.withFailingGetter")
      .and.to.include("computed on demand only");
  });
});
