import { expect } from "chai";
import { DataSource, Like, type ObjectLiteral, Repository } from "typeorm";
import { getServices } from "../example/services";
import { Cached, InvalidOptionError, UnkeyableArgumentError } from "../lib";
import { Post } from "./support/entities";
import { type App, dropNamespace, openApp, uniqueNamespace } from "./support/fixture";
import { LeftNote, ownerEntities, RightNote, TWIN_SCHEMAS } from "./support/owner-entities";
import { freshAndHit } from "./support/result-checks";
import { warm } from "./support/warm";

class NoteRepository<T extends ObjectLiteral> extends Repository<T> {
  @Cached(60)
  everything(): Promise<T[]> {
    return this.find({ order: { id: "ASC" } } as never);
  }
}

/** Two classes whose static methods have the same name and code, and read different tables. */
class LeftNotes {
  static dataSource: DataSource;
  static readonly entity: typeof LeftNote = LeftNote;

  @Cached(60)
  static async texts(): Promise<string[]> {
    return (await this.dataSource.getRepository(this.entity).find({ order: { id: "ASC" } })).map(
      (n) => n.text,
    );
  }
}

class RightNotes {
  static dataSource: DataSource;
  static readonly entity: typeof LeftNote = RightNote;

  @Cached(60)
  static async texts(): Promise<string[]> {
    return (await this.dataSource.getRepository(this.entity).find({ order: { id: "ASC" } })).map(
      (n) => n.text,
    );
  }
}

/** A service whose instances differ by tenant: what it reads depends on `this.tenant`. */
class TenantReport {
  constructor(
    readonly dataSource: DataSource,
    readonly tenant: string,
  ) {}

  @Cached({ ttl: 60, scope: (self: TenantReport) => self.tenant })
  async titles(published: boolean): Promise<string[]> {
    const rows = await this.dataSource
      .getRepository(Post)
      .find({ where: { title: Like(`${this.tenant}:%`), published }, order: { id: "ASC" } });
    return rows.map((p) => p.title);
  }

  @Cached({ ttl: 60, scope: (self: TenantReport) => () => self.tenant })
  async unkeyable(): Promise<number> {
    return this.dataSource.getRepository(Post).count();
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

describe("what a key holds of the object a cached method runs on (invariant 8)", () => {
  const ns = uniqueNamespace();
  let app: App;

  before(async () => {
    for (const schema of TWIN_SCHEMAS) await adminQuery(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    app = await openApp(ns, { fresh: true, extraEntities: ownerEntities });
    await app.dataSource.getRepository(LeftNote).save([{ text: "left 1" }, { text: "left 2" }]);
    await app.dataSource.getRepository(RightNote).save([{ text: "right 1" }]);
    await app.dataSource.getRepository(Post).save([
      { title: "acme:launch", published: true },
      { title: "acme:draft", published: false },
      { title: "globex:merger", published: true },
    ]);
  });

  after(async () => {
    await dropNamespace(app.redis, ns);
    await app.close();
    for (const schema of TWIN_SCHEMAS)
      await adminQuery(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  });

  describe("a generic repository over two entities that share a class name, in two schemas", () => {
    it("the entities really share a name and differ by table", () => {
      expect(LeftNote.name).to.equal(RightNote.name);
      expect(app.dataSource.getMetadata(LeftNote).tablePath).to.not.equal(
        app.dataSource.getMetadata(RightNote).tablePath,
      );
    });

    it("each repository gets its own table's rows, as instances of its own class", async () => {
      const left = new NoteRepository(LeftNote, app.dataSource.manager);
      const right = new NoteRepository(RightNote, app.dataSource.manager);
      const { hit } = await freshAndHit(app, () => left.everything());
      expect(hit.map((n) => n.text)).to.deep.equal(["left 1", "left 2"]);
      const rows = await right.everything();
      expect(
        rows.map((n) => n.text),
        "the right schema's notes, not the left one's cached entry",
      ).to.deep.equal(["right 1"]);
      expect(rows[0]).to.be.instanceOf(RightNote);
      const cached = await warm(app, () => right.everything());
      expect(cached.map((n) => n.text)).to.deep.equal(["right 1"]);
      expect(cached[0]).to.be.instanceOf(RightNote);
      expect((await warm(app, () => left.everything()))[0]).to.be.instanceOf(LeftNote);
    });

    it("a write to one table refreshes that repository's entry only", async () => {
      const left = new NoteRepository(LeftNote, app.dataSource.manager);
      const right = new NoteRepository(RightNote, app.dataSource.manager);
      await warm(app, () => left.everything());
      await warm(app, () => right.everything());
      await app.dataSource.getRepository(RightNote).save({ text: "right 2" });
      expect((await right.everything()).map((n) => n.text)).to.deep.equal(["right 1", "right 2"]);
      expect((await warm(app, () => left.everything(), 1)).map((n) => n.text)).to.deep.equal([
        "left 1",
        "left 2",
      ]);
    });
  });

  describe("static methods", () => {
    it("are owned by their class: two classes' static methods with one name and code do not share entries", async () => {
      LeftNotes.dataSource = app.dataSource;
      RightNotes.dataSource = app.dataSource;
      const { hit } = await freshAndHit(app, () => LeftNotes.texts());
      expect(hit).to.deep.equal(["left 1", "left 2"]);
      expect(await RightNotes.texts()).to.deep.equal(["right 1", "right 2"]);
      expect(await warm(app, () => RightNotes.texts())).to.deep.equal(["right 1", "right 2"]);
      expect(await warm(app, () => LeftNotes.texts())).to.deep.equal(["left 1", "left 2"]);
    });
  });

  describe("instances that differ by state: the `scope` option", () => {
    it("keys each instance by what scope returns: two tenants never share an entry", async () => {
      const acme = new TenantReport(app.dataSource, "acme");
      const globex = new TenantReport(app.dataSource, "globex");
      const { hit } = await freshAndHit(app, () => acme.titles(true));
      expect(hit).to.deep.equal(["acme:launch"]);
      expect(await globex.titles(true), "globex's own titles, not acme's entry").to.deep.equal([
        "globex:merger",
      ]);
      expect(await warm(app, () => globex.titles(true))).to.deep.equal(["globex:merger"]);
      expect(await warm(app, () => acme.titles(true))).to.deep.equal(["acme:launch"]);
      expect(await acme.titles(false)).to.deep.equal(["acme:draft"]);
    });

    it("two instances with the same scope share an entry", async () => {
      await freshAndHit(app, () => new TenantReport(app.dataSource, "acme").titles(true));
      expect(
        await warm(app, () => new TenantReport(app.dataSource, "acme").titles(true), 1),
      ).to.deep.equal(["acme:launch"]);
    });

    it("a scope that cannot be keyed is refused like an argument; one that is no function, at decoration", async () => {
      let error: unknown;
      try {
        await new TenantReport(app.dataSource, "acme").unkeyable();
      } catch (e) {
        error = e;
      }
      expect(error).to.be.instanceOf(UnkeyableArgumentError);
      expect(() => Cached({ scope: "tenant" as never })).to.throw(
        InvalidOptionError,
        /scope must be a function/,
      );
    });
  });
});
