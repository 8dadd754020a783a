import { expect } from "chai";
import type { Repository } from "typeorm";
import { type App, dropNamespace, openApp, uniqueNamespace } from "./support/fixture";
import {
  ArchivedBook,
  Book,
  Bookmark,
  City,
  Country,
  Review,
  Setting,
  Shelf,
  Sticker,
  writePathEntities,
} from "./support/paths-entities";
import { warm } from "./support/warm";

describe("write paths: foreign-key rules, orphaned rows and SQL-only writes refresh every table they change", () => {
  const ns = uniqueNamespace();
  const t = (table: string) => `"${ns}"."${table}"`;
  let app: App;
  let shelves: Repository<Shelf>;
  let books: Repository<Book>;
  let reviews: Repository<Review>;
  let stickers: Repository<Sticker>;
  let bookmarks: Repository<Bookmark>;
  let countries: Repository<Country>;
  let cities: Repository<City>;
  let settings: Repository<Setting>;
  let archive: Repository<ArchivedBook>;

  // Each read is a separate cached computation, keyed by name, like a repository method would be.
  const bookTitles = () =>
    app.cache.wrap("book-titles", async () =>
      (await books.find({ order: { id: "ASC" } })).map((b) => b.title),
    );
  const reviewStars = () =>
    app.cache.wrap("review-stars", async () =>
      (await reviews.find({ order: { id: "ASC" } })).map((r) => r.stars),
    );
  const stickerShelves = () =>
    app.cache.wrap("sticker-shelves", async () =>
      (await stickers.find({ relations: { shelf: true }, order: { id: "ASC" } })).map((s) => [
        s.label,
        s.shelf?.name ?? null,
      ]),
    );
  const bookmarkPages = () =>
    app.cache.wrap("bookmark-pages", async () =>
      (await bookmarks.find({ order: { id: "ASC" } })).map((b) => b.page),
    );
  const cityCountries = () =>
    app.cache.wrap("city-countries", () =>
      app.dataSource.query(`SELECT name, "countryCode" FROM ${t("city")} ORDER BY id`),
    );
  const settingValues = () =>
    app.cache.wrap("setting-values", async () =>
      (await settings.find({ order: { id: "ASC" } })).map((s) => `${s.name}=${s.value}`),
    );
  const archivedTitles = () =>
    app.cache.wrap("archived-titles", async () =>
      (await archive.find({ order: { id: "ASC" } })).map((b) => b.title),
    );

  before(async () => {
    app = await openApp(ns, { fresh: true, extraEntities: writePathEntities });
    const repo = <E extends object>(type: new () => E) => app.dataSource.getRepository(type);
    shelves = repo(Shelf);
    books = repo(Book);
    reviews = repo(Review);
    stickers = repo(Sticker);
    bookmarks = repo(Bookmark);
    countries = repo(Country);
    cities = repo(City);
    settings = repo(Setting);
    archive = repo(ArchivedBook);
  });
  after(async () => {
    await dropNamespace(app.redis, ns);
    await app.close();
  });
  beforeEach(async () => {
    const tables = [
      "review",
      "book",
      "sticker",
      "bookmark",
      "shelf",
      "city",
      "country",
      "setting",
      "archived_book",
    ].map(t);
    await app.dataSource.query(`TRUNCATE ${tables.join(", ")} RESTART IDENTITY CASCADE`);
    await shelves.save({
      name: "A",
      books: [{ title: "a1" }, { title: "a2" }],
      stickers: [{ label: "red" }, { label: "blue" }],
      bookmarks: [{ page: 1 }, { page: 2 }],
    });
    await shelves.save({ name: "B", books: [{ title: "b1" }], stickers: [{ label: "green" }] });
    await reviews.save([
      { stars: 5, book: { id: 1 } },
      { stars: 3, book: { id: 3 } },
    ]);
    await countries.save([
      { code: "GE", name: "Germany" },
      { code: "FR", name: "France" },
    ]);
    await cities.save([
      { name: "Berlin", countryCode: "GE" },
      { name: "Paris", countryCode: "FR" },
    ]);
    await settings.save([
      { name: "theme", value: "dark" },
      { name: "lang", value: "en" },
    ]);
  });

  describe("foreign-key rules", () => {
    it("ON DELETE CASCADE refreshes the referencing table, and the table referencing that one", async () => {
      expect(await warm(app, bookTitles)).to.deep.equal(["a1", "a2", "b1"]);
      expect(await warm(app, reviewStars)).to.deep.equal([5, 3]);
      await shelves.delete({ name: "A" });
      expect(await bookTitles(), "books deleted by the cascade from shelf").to.deep.equal(["b1"]);
      expect(await reviewStars(), "reviews deleted by the cascade from book").to.deep.equal([3]);
    });

    it("ON DELETE SET NULL refreshes the referencing table", async () => {
      expect(await warm(app, stickerShelves)).to.deep.equal([
        ["red", "A"],
        ["blue", "A"],
        ["green", "B"],
      ]);
      await app.dataSource.query(`DELETE FROM ${t("shelf")} WHERE name = 'B'`);
      expect(await stickerShelves()).to.deep.equal([
        ["red", "A"],
        ["blue", "A"],
        ["green", null],
      ]);
    });

    it("ON UPDATE CASCADE refreshes the referencing table when the referenced key changes", async () => {
      expect(await warm(app, cityCountries)).to.deep.equal([
        { name: "Berlin", countryCode: "GE" },
        { name: "Paris", countryCode: "FR" },
      ]);
      await countries.update({ code: "GE" }, { code: "DE" });
      expect(await cityCountries()).to.deep.equal([
        { name: "Berlin", countryCode: "DE" },
        { name: "Paris", countryCode: "FR" },
      ]);
    });

    it("a cascading delete inside a transaction refreshes the referencing tables at commit", async () => {
      await warm(app, bookTitles);
      await warm(app, reviewStars);
      await app.dataSource.transaction(async (em) => {
        await em.delete(Shelf, { name: "A" });
        expect(await warm(app, bookTitles, 1), "nothing uncommitted shows outside").to.deep.equal([
          "a1",
          "a2",
          "b1",
        ]);
      });
      expect(await bookTitles()).to.deep.equal(["b1"]);
      expect(await reviewStars()).to.deep.equal([3]);
    });

    it("TRUNCATE ... CASCADE empties the tables that reference the target, at any depth", async () => {
      await warm(app, bookTitles);
      await warm(app, reviewStars);
      await warm(app, stickerShelves);
      await app.dataSource.query(`TRUNCATE ${t("shelf")} CASCADE`);
      expect(await bookTitles()).to.deep.equal([]);
      expect(await reviewStars()).to.deep.equal([]);
      expect(await stickerShelves()).to.deep.equal([]);
    });
  });

  describe("orphanedRowAction", () => {
    const shelfA = () =>
      shelves.findOneOrFail({
        where: { name: "A" },
        relations: { books: true, stickers: true, bookmarks: true },
      });

    it('"delete" removes the orphan, and cached reads of the child table see it gone', async () => {
      expect(await warm(app, bookTitles)).to.deep.equal(["a1", "a2", "b1"]);
      const shelf = await shelfA();
      shelf.books = shelf.books?.filter((b) => b.title === "a1");
      await shelves.save(shelf);
      expect(await bookTitles()).to.deep.equal(["a1", "b1"]);
    });

    it('"nullify" detaches the orphan, and cached reads see its reference cleared', async () => {
      await warm(app, stickerShelves);
      const shelf = await shelfA();
      shelf.stickers = shelf.stickers?.filter((s) => s.label === "red");
      await shelves.save(shelf);
      expect(await stickerShelves()).to.deep.equal([
        ["red", "A"],
        ["blue", null],
        ["green", "B"],
      ]);
    });

    it('"soft-delete" soft-removes the orphan, and cached finds stop returning it', async () => {
      expect(await warm(app, bookmarkPages)).to.deep.equal([1, 2]);
      const shelf = await shelfA();
      shelf.bookmarks = shelf.bookmarks?.filter((b) => b.page === 2);
      await shelves.save(shelf);
      expect(await bookmarkPages()).to.deep.equal([2]);
    });
  });

  describe("SQL-only writes", () => {
    it("repository.clear() (TRUNCATE of a table no foreign key points to) empties cached reads", async () => {
      expect(await warm(app, settingValues)).to.deep.equal(["theme=dark", "lang=en"]);
      await settings.clear();
      expect(await settingValues()).to.deep.equal([]);
    });

    it("INSERT ... SELECT refreshes the target; the source, only read, keeps its entry", async () => {
      expect(await warm(app, archivedTitles)).to.deep.equal([]);
      await warm(app, bookTitles);
      await app.dataSource.query(
        `INSERT INTO ${t("archived_book")} (title) SELECT title FROM ${t("book")} WHERE title LIKE 'a%' ORDER BY id`,
      );
      expect(await archivedTitles()).to.deep.equal(["a1", "a2"]);
      expect(await warm(app, bookTitles, 1)).to.deep.equal(["a1", "a2", "b1"]);
    });

    it("UPDATE ... FROM refreshes the target", async () => {
      await warm(app, bookTitles);
      await app.dataSource.query(
        `UPDATE ${t("book")} b SET title = s.name || ':' || b.title FROM ${t("shelf")} s WHERE s.id = b."shelfId" AND s.name = $1`,
        ["B"],
      );
      expect(await bookTitles()).to.deep.equal(["a1", "a2", "B:b1"]);
    });

    it("DELETE ... USING refreshes the target", async () => {
      await warm(app, bookTitles);
      await app.dataSource.query(
        `DELETE FROM ${t("book")} b USING ${t("shelf")} s WHERE s.id = b."shelfId" AND s.name = $1`,
        ["A"],
      );
      expect(await bookTitles()).to.deep.equal(["b1"]);
    });

    it("a data-modifying CTE read by a SELECT (WITH x AS (UPDATE ... RETURNING) SELECT ...) refreshes its target", async () => {
      await warm(app, bookTitles);
      const [row] = await app.dataSource.query(
        `WITH renamed AS (UPDATE ${t("book")} SET title = upper(title) WHERE title LIKE 'a%' RETURNING id) SELECT count(*)::int AS n FROM renamed`,
      );
      expect(row.n).to.equal(2);
      expect(await bookTitles()).to.deep.equal(["A1", "A2", "b1"]);
    });

    it("a CTE that deletes from one table feeding an INSERT into another refreshes both", async () => {
      await warm(app, bookTitles);
      await warm(app, archivedTitles);
      await app.dataSource.query(
        `WITH moved AS (DELETE FROM ${t("book")} WHERE title = 'b1' RETURNING title) INSERT INTO ${t("archived_book")} (title) SELECT title FROM moved`,
      );
      expect(await bookTitles()).to.deep.equal(["a1", "a2"]);
      expect(await archivedTitles()).to.deep.equal(["b1"]);
    });

    it("MERGE refreshes its target", async () => {
      await warm(app, archivedTitles);
      await app.dataSource.query(
        `MERGE INTO ${t("archived_book")} a USING ${t("book")} b ON a.title = b.title WHEN NOT MATCHED THEN INSERT (title) VALUES (b.title)`,
      );
      expect((await archivedTitles()).sort()).to.deep.equal(["a1", "a2", "b1"]);
    });

    it("one raw text with several statements (UPDATE a ...; UPDATE b ...) refreshes every table it writes", async () => {
      await warm(app, bookTitles);
      await warm(app, settingValues);
      await warm(app, cityCountries);
      await app.dataSource.query(
        `UPDATE ${t("book")} SET title = 'x' || title WHERE title = 'b1'; UPDATE ${t("setting")} SET value = 'light' WHERE name = 'theme'; ` +
          `DELETE FROM ${t("city")} WHERE name = 'Paris'`,
      );
      expect(await bookTitles()).to.deep.equal(["a1", "a2", "xb1"]);
      expect(await settingValues()).to.deep.equal(["theme=light", "lang=en"]);
      expect(await cityCountries()).to.deep.equal([{ name: "Berlin", countryCode: "GE" }]);
    });

    it("one raw text holding its own transaction (BEGIN; ...; COMMIT) refreshes what it wrote", async () => {
      await warm(app, bookTitles);
      await warm(app, settingValues);
      await app.dataSource.query(
        `BEGIN; UPDATE ${t("book")} SET title = 'z' WHERE title = 'a1'; UPDATE ${t("setting")} SET value = 'fr' WHERE name = 'lang'; COMMIT`,
      );
      expect(await bookTitles()).to.deep.equal(["z", "a2", "b1"]);
      expect(await settingValues()).to.deep.equal(["theme=dark", "lang=fr"]);
    });
  });

  describe("writes the SQL text does not name", () => {
    // The functions go with the namespace's schema; dropping them here would start a catalog
    // re-read that could outlive the DataSource closed right after.
    before(async () => {
      await app.dataSource.query(
        `CREATE FUNCTION ${t("archive_book")}() RETURNS trigger LANGUAGE plpgsql AS $$ ` +
          `BEGIN INSERT INTO ${t("archived_book")} (title) VALUES (NEW.title); RETURN NEW; END $$`,
      );
      await app.dataSource.query(
        `CREATE FUNCTION ${t("archive_all")}() RETURNS int LANGUAGE sql AS $$ ` +
          `INSERT INTO ${t("archived_book")} (title) SELECT title FROM ${t("book")}; SELECT count(*)::int FROM ${t("archived_book")} $$`,
      );
    });

    it("a trigger that writes another table refreshes that table's cached reads", async () => {
      await app.dataSource.query(
        `CREATE TRIGGER archive_new_book AFTER INSERT ON ${t("book")} FOR EACH ROW EXECUTE FUNCTION ${t("archive_book")}()`,
      );
      try {
        expect(await warm(app, archivedTitles)).to.deep.equal([]);
        await books.insert({ title: "c1", shelf: { id: 2 } });
        expect(await archive.count(), "the trigger wrote").to.equal(1);
        expect(await archivedTitles()).to.deep.equal(["c1"]);
      } finally {
        await app.dataSource.query(`DROP TRIGGER archive_new_book ON ${t("book")}`);
      }
    });

    it("a function that writes, called from a SELECT, refreshes the tables it wrote", async () => {
      expect(await warm(app, archivedTitles)).to.deep.equal([]);
      const [row] = await app.dataSource.query(`SELECT ${t("archive_all")}() AS n`);
      expect(row.n, "the function wrote").to.equal(3);
      expect(await archivedTitles()).to.deep.equal(["a1", "a2", "b1"]);
    });
  });
});
