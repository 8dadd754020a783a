import { expect } from "chai";
import { Column, Entity, Index, PrimaryColumn, PrimaryGeneratedColumn } from "typeorm";
import { ChangeFeed } from "../lib";
import { Post } from "./support/entities";
import { DeliveryLog, openFeedApp, outsideWrite } from "./support/feed-fixture";
import { type App, dropNamespace, selectCount, uniqueNamespace } from "./support/fixture";
import { LogicalPostgres } from "./support/logical-postgres";

/** Keyed by uuid, with an indexed text column: the stream hands both over as strings. */
@Entity()
class Badge {
  @PrimaryGeneratedColumn("uuid")
  id!: string;

  @Index()
  @Column()
  label!: string;

  @Column({ default: "" })
  note!: string;
}

/** Keyed by a bigint: pg (and so the stream) hands it over as a string, past 2^53 too. */
@Entity()
class Ledger {
  @PrimaryColumn("bigint")
  id!: string;

  @Column()
  note!: string;
}

/**
 * The change feed's rows feed row precision: an outside write invalidates the cached results of
 * the rows it changed, by the values the stream carries (the new row, the old key, or the whole
 * old row under REPLICA IDENTITY FULL), and keeps the others.
 */
describe("change feed: outside writes invalidate the rows they changed, and only those", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace();
  let pg: LogicalPostgres;
  let app: App;
  let feed: ChangeFeed;
  let log: DeliveryLog;

  before(async () => {
    pg = await LogicalPostgres.start();
    app = await openFeedApp(pg, ns, { fresh: true, extraEntities: [Badge, Ledger], setUp: true });
    feed = new ChangeFeed({ cache: app.cache, connection: pg.config, slot: `rows_${ns}` });
    log = new DeliveryLog(feed);
    await feed.start();
  });
  after(async () => {
    await feed?.stop();
    await dropNamespace(app.redis, ns);
    await app?.close();
    await pg?.stop();
  });

  /** Runs SQL past the library and waits until the feed delivered its invalidations. */
  async function outside(...statements: string[]): Promise<void> {
    const { xid } = await outsideWrite(pg, ...statements);
    await log.covering(xid);
  }

  /** Calls each read and returns how many of them ran SQL (each runs one SELECT when it misses). */
  async function missed(...calls: (() => Promise<unknown>)[]): Promise<number> {
    let ran = 0;
    for (const call of calls) {
      const before = selectCount(app.dataSource);
      await call();
      if (selectCount(app.dataSource) > before) ran++;
    }
    return ran;
  }

  /** Reads until each call is served from the cache (a table's first entry may be refused once). */
  async function warmAll(...calls: (() => Promise<unknown>)[]): Promise<void> {
    await missed(...calls);
    await missed(...calls);
    expect(await missed(...calls), "each read is a hit").to.equal(0);
  }

  describe("posts by integer key and by author", () => {
    const posts = () => app.dataSource.getRepository(Post);
    const byId = (id: number) => app.cache.wrap(`post-${id}`, () => posts().findOneBy({ id }));
    const byAuthor = (authorId: number) =>
      app.cache.wrap(`author-${authorId}`, () =>
        posts().find({ where: { author: { id: authorId } }, order: { id: "ASC" } }),
      );
    /** LIMIT: its result need not hold every row of the author, so it depends on the column, not on its rows. */
    const firstOf = (authorId: number) =>
      app.cache.wrap(
        `first-${authorId}`,
        (): Promise<Post[]> =>
          app.dataSource.query(
            `SELECT id, title FROM "${ns}".post WHERE "authorId" = $1 ORDER BY id LIMIT 1`,
            [authorId],
          ),
      );
    const titles = (rows: Post[] | Post | null) =>
      (Array.isArray(rows) ? rows : rows ? [rows] : []).map((p) => p.title);

    beforeEach(async () => {
      await outside(
        `TRUNCATE "${ns}".post, "${ns}".author CASCADE`,
        `ALTER TABLE "${ns}".post REPLICA IDENTITY DEFAULT`,
        `INSERT INTO "${ns}".author (id, name) VALUES (1, 'Ann'), (2, 'Bob'), (3, 'Cy')`,
        `INSERT INTO "${ns}".post (id, title, "authorId") VALUES (1, 'a1', 1), (2, 'a2', 1), (3, 'b1', 2), (4, 'c1', 3)`,
      );
    });

    it("UPDATE of a title by id refreshes that post and its author's list, and keeps another post and another author's list", async () => {
      await warmAll(
        () => byId(1),
        () => byId(3),
        () => byAuthor(1),
        () => byAuthor(2),
      );
      await outside(`UPDATE "${ns}".post SET title = 'A1' WHERE id = 1`);
      const selects = selectCount(app.dataSource);
      expect(titles(await byId(1))).to.deep.equal(["A1"]);
      expect(titles(await byAuthor(1))).to.deep.equal(["A1", "a2"]);
      expect(titles(await byId(3))).to.deep.equal(["b1"]);
      expect(titles(await byAuthor(2))).to.deep.equal(["b1"]);
      expect(
        selectCount(app.dataSource) - selects,
        "only the changed post and its author's list ran SQL",
      ).to.equal(2);
    });

    it("UPDATE that moves a post to another author, default replica identity: the old author is unknown, so every list bounded by author but not by its rows is refreshed", async () => {
      await warmAll(
        () => byAuthor(1),
        () => byAuthor(2),
        () => byAuthor(3),
        () => firstOf(3),
        () => byId(3),
      );
      await outside(`UPDATE "${ns}".post SET "authorId" = 2 WHERE id = 2`);
      const selects = selectCount(app.dataSource);
      expect(titles(await byAuthor(1)), "the old author's list held the post").to.deep.equal([
        "a1",
      ]);
      expect(titles(await byAuthor(2)), "the new author's list gains it").to.deep.equal([
        "a2",
        "b1",
      ]);
      expect(titles(await firstOf(3)), "the old author might have been Cy").to.deep.equal(["c1"]);
      expect(selectCount(app.dataSource) - selects).to.equal(3);
      expect(
        await missed(
          () => byAuthor(3),
          () => byId(3),
        ),
        "a list that holds all of Cy's rows, and another post",
      ).to.equal(0);
    });

    it("UPDATE that moves a post to another author, REPLICA IDENTITY FULL: only the old and the new author's lists", async () => {
      await pg.sql(`ALTER TABLE "${ns}".post REPLICA IDENTITY FULL`); // DDL: the stream carries none of it
      await warmAll(
        () => byAuthor(1),
        () => byAuthor(2),
        () => firstOf(1),
        () => firstOf(3),
        () => byId(3),
      );
      await outside(`UPDATE "${ns}".post SET "authorId" = 2 WHERE id = 1`);
      const selects = selectCount(app.dataSource);
      expect(titles(await byAuthor(1))).to.deep.equal(["a2"]);
      expect(titles(await byAuthor(2))).to.deep.equal(["a1", "b1"]);
      expect(titles(await firstOf(1)), "the old author, named by the old row").to.deep.equal([
        "a2",
      ]);
      expect(selectCount(app.dataSource) - selects).to.equal(3);
      expect(
        await missed(
          () => firstOf(3),
          () => byId(3),
        ),
        "the whole old row says Cy was not involved",
      ).to.equal(0);
    });

    it("DELETE refreshes the deleted post and its author's list; INSERT refreshes the new post's id and author", async () => {
      await warmAll(
        () => byId(2),
        () => byId(3),
        () => byId(5),
        () => byAuthor(1),
        () => byAuthor(2),
        () => byAuthor(3),
      );
      await outside(`DELETE FROM "${ns}".post WHERE id = 2`);
      let selects = selectCount(app.dataSource);
      expect(await byId(2)).to.equal(null);
      expect(titles(await byAuthor(1))).to.deep.equal(["a1"]);
      expect(selectCount(app.dataSource) - selects).to.equal(2);
      expect(
        await missed(
          () => byId(3),
          () => byId(5),
          () => byAuthor(2),
          () => byAuthor(3),
        ),
        "untouched rows",
      ).to.equal(0);

      await outside(`INSERT INTO "${ns}".post (id, title, "authorId") VALUES (5, 'b2', 2)`);
      selects = selectCount(app.dataSource);
      expect(titles(await byId(5)), "a cached miss of that id").to.deep.equal(["b2"]);
      expect(titles(await byAuthor(2))).to.deep.equal(["b1", "b2"]);
      expect(selectCount(app.dataSource) - selects).to.equal(2);
      expect(
        await missed(
          () => byId(3),
          () => byAuthor(1),
          () => byAuthor(3),
        ),
        "untouched rows",
      ).to.equal(0);
    });

    it("soft delete and restore from outside refresh the author's list (its filter column), and keep another author's", async () => {
      await warmAll(
        () => byAuthor(1),
        () => byAuthor(2),
      );
      await outside(`UPDATE "${ns}".post SET "deletedAt" = now() WHERE id = 2`);
      expect(titles(await byAuthor(1))).to.deep.equal(["a1"]);
      expect(await missed(() => byAuthor(2))).to.equal(0);
      await warmAll(() => byAuthor(1));
      await outside(`UPDATE "${ns}".post SET "deletedAt" = NULL WHERE id = 2`);
      expect(
        titles(await byAuthor(1)),
        "the restored row is not in the cached result: its new author value names the list",
      ).to.deep.equal(["a1", "a2"]);
      expect(await missed(() => byAuthor(2))).to.equal(0);
    });

    it('precision: "table" keeps table-wide invalidation: the feed\'s rows refresh every read of the table', async () => {
      const coarseNs = uniqueNamespace();
      const coarse = await openFeedApp(pg, coarseNs, {
        schema: ns,
        cache: { precision: "table" },
        setUp: true,
      });
      const coarseFeed = new ChangeFeed({
        cache: coarse.cache,
        connection: pg.config,
        slot: `coarse_${ns}`,
      });
      const coarseLog = new DeliveryLog(coarseFeed);
      try {
        await coarseFeed.start();
        const other = () =>
          coarse.cache.wrap("post-3", () =>
            coarse.dataSource.getRepository(Post).findOneBy({ id: 3 }),
          );
        await other();
        await other();
        const hits = coarse.cache.stats().hits;
        await other();
        expect(coarse.cache.stats().hits, "warm").to.equal(hits + 1);
        const { xid } = await outsideWrite(pg, `UPDATE "${ns}".post SET title = 'A1' WHERE id = 1`);
        await coarseLog.covering(xid);
        const selects = selectCount(coarse.dataSource);
        expect(titles(await other())).to.deep.equal(["b1"]);
        expect(
          selectCount(coarse.dataSource) - selects,
          "another post's read ran SQL again",
        ).to.equal(1);
      } finally {
        await coarseFeed.dropSlot();
        await dropNamespace(coarse.redis, coarseNs);
        await coarse.close();
      }
    });

    it("TRUNCATE stays table-wide", async () => {
      await warmAll(
        () => byId(3),
        () => byAuthor(3),
      );
      await outside(`TRUNCATE "${ns}".post CASCADE`);
      const selects = selectCount(app.dataSource);
      expect(await byId(3)).to.equal(null);
      expect(await byAuthor(3)).to.deep.equal([]);
      expect(selectCount(app.dataSource) - selects).to.equal(2);
    });
  });

  describe("uuid, text and bigint keys: the stream's values meet the queries' parameters", () => {
    const badges = () => app.dataSource.getRepository(Badge);
    const badge = (id: string) => app.cache.wrap(`badge-${id}`, () => badges().findOneBy({ id }));
    const labelled = (label: string) =>
      app.cache.wrap(`label-${label}`, () =>
        badges().find({ where: { label }, order: { note: "ASC" } }),
      );
    const ledger = (id: string) =>
      app.cache.wrap(`ledger-${id}`, () => app.dataSource.getRepository(Ledger).findOneBy({ id }));
    const U1 = "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11";
    const U2 = "b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12";
    const BIG = "9007199254740993"; // 2^53 + 1: no JavaScript number holds it

    beforeEach(async () => {
      await outside(
        `TRUNCATE "${ns}".badge, "${ns}".ledger`,
        `INSERT INTO "${ns}".badge (id, label, note) VALUES ('${U1.toLowerCase()}', 'gold', 'g'), ('${U2}', 'silver', 's')`,
        `INSERT INTO "${ns}".ledger (id, note) VALUES (${BIG}, 'big'), (7, 'small')`,
      );
    });

    it("an UPDATE by uuid refreshes the read of that uuid (given in upper case), and keeps the other", async () => {
      await warmAll(
        () => badge(U1),
        () => badge(U2),
        () => labelled("gold"),
        () => labelled("silver"),
      );
      await outside(`UPDATE "${ns}".badge SET note = 'G' WHERE id = '${U1}'`);
      const selects = selectCount(app.dataSource);
      expect((await badge(U1))?.note).to.equal("G");
      expect((await labelled("gold")).map((b) => b.note)).to.deep.equal(["G"]);
      expect(selectCount(app.dataSource) - selects).to.equal(2);
      expect(
        await missed(
          () => badge(U2),
          () => labelled("silver"),
        ),
      ).to.equal(0);
    });

    it("an UPDATE of the text key refreshes the reads of its old and new values, and keeps a third", async () => {
      await warmAll(
        () => labelled("gold"),
        () => labelled("bronze"),
        () => labelled("silver"),
      );
      await outside(`UPDATE "${ns}".badge SET label = 'bronze' WHERE label = 'gold'`);
      const selects = selectCount(app.dataSource);
      expect(await labelled("gold")).to.deep.equal([]);
      expect((await labelled("bronze")).map((b) => b.note)).to.deep.equal(["g"]);
      expect(selectCount(app.dataSource) - selects).to.equal(2);
      expect(await missed(() => labelled("silver"))).to.equal(0);
    });

    it("an UPDATE by a bigint key past 2^53 refreshes that row's read, and keeps the other", async () => {
      await warmAll(
        () => ledger(BIG),
        () => ledger("7"),
      );
      await outside(`UPDATE "${ns}".ledger SET note = 'bigger' WHERE id = ${BIG}`);
      const selects = selectCount(app.dataSource);
      expect((await ledger(BIG))?.note).to.equal("bigger");
      expect(selectCount(app.dataSource) - selects).to.equal(1);
      expect(await missed(() => ledger("7"))).to.equal(0);
    });
  });
});
