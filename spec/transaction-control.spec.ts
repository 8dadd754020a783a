import { expect } from "chai";
import type { QueryRunner } from "typeorm";
import { Post } from "./support/entities";
import { type App, openApp, uniqueNamespace } from "./support/fixture";
import { type PostRepository, repositories } from "./support/repositories";
import { warm } from "./support/warm";

/**
 * Transaction control the library must read as PostgreSQL does: chained transactions, texts that
 * commit and then fail, and transactions opened by hand on a query runner.
 */
describe("transaction control: invalidations follow what PostgreSQL committed, however the SQL said it", () => {
  const ns = uniqueNamespace();
  let app: App;
  let posts: PostRepository;
  let runner: QueryRunner;
  const titles = (rows: Post[]) => rows.map((p) => p.title);
  const table = () => `"${ns}"."post"`;

  before(async () => {
    app = await openApp(ns, { fresh: true });
    posts = repositories(app.dataSource).posts;
  });
  after(async () => {
    await app.close();
  });
  beforeEach(async () => {
    await app.dataSource.query(`TRUNCATE ${table()} CASCADE`);
    await posts.insert([{ title: "one" }, { title: "two" }]);
    await warm(app, () => posts.findAll());
    runner = app.dataSource.createQueryRunner();
  });
  afterEach(async () => {
    if (!runner.isReleased) {
      await runner.query("ROLLBACK").catch(() => undefined);
      await runner.release();
    }
  });

  /** A reader outside the transaction caches what is committed while the transaction is still open. */
  const cacheWhileOpen = async (expected: string[]) => {
    expect(
      titles(await warm(app, () => posts.findAll(), 3, "outside the open transaction")),
    ).to.deep.equal(expected);
  };

  it("COMMIT AND CHAIN delivers the first transaction's writes, and holds the chained one's until it commits", async () => {
    await runner.query("BEGIN");
    await runner.query(`UPDATE ${table()} SET title = 'first' WHERE title = 'one'`);
    await runner.query("COMMIT AND CHAIN");
    expect(titles(await posts.findAll()), "the first transaction committed").to.deep.equal([
      "first",
      "two",
    ]);
    await runner.query(`UPDATE ${table()} SET title = 'chained' WHERE title = 'two'`);
    await cacheWhileOpen(["first", "two"]);
    await runner.query("COMMIT");
    expect(titles(await posts.findAll()), "the chained transaction committed").to.deep.equal([
      "first",
      "chained",
    ]);
  });

  it("ROLLBACK AND CHAIN drops the first transaction's writes, and holds the chained one's until it commits", async () => {
    await runner.query("BEGIN");
    await runner.query(`UPDATE ${table()} SET title = 'undone' WHERE title = 'one'`);
    await runner.query("ROLLBACK AND CHAIN");
    await runner.query(`UPDATE ${table()} SET title = 'chained' WHERE title = 'two'`);
    await cacheWhileOpen(["one", "two"]);
    await runner.query("COMMIT");
    expect(titles(await posts.findAll())).to.deep.equal(["one", "chained"]);
  });

  it("one text that commits an UPDATE and then fails invalidates what the UPDATE changed", async () => {
    const text = `BEGIN; UPDATE ${table()} SET title = 'committed' WHERE title = 'one'; COMMIT; SELECT 1 / 0`;
    const error = await runner.query(text).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(error?.message).to.match(/division by zero/);
    expect(titles(await posts.findAll())).to.deep.equal(["committed", "two"]);
  });

  it("one text that writes, commits and fails with no BEGIN (an implicit transaction ended by COMMIT) invalidates what it committed", async () => {
    const text = `UPDATE ${table()} SET title = 'committed' WHERE title = 'two'; COMMIT; SELECT 1 / 0`;
    await runner.query(text).catch(() => undefined);
    expect(titles(await posts.findAll())).to.deep.equal(["one", "committed"]);
  });

  it("a failed text inside a transaction, then ROLLBACK TO an earlier savepoint and COMMIT, invalidates what was written before the savepoint", async () => {
    await runner.query("BEGIN");
    await runner
      .query(`UPDATE ${table()} SET title = 'kept' WHERE title = 'one'; SAVEPOINT s; SELECT 1 / 0`)
      .catch(() => undefined);
    await runner.query("ROLLBACK TO SAVEPOINT s");
    await cacheWhileOpen(["one", "two"]);
    await runner.query("COMMIT");
    expect(titles(await posts.findAll())).to.deep.equal(["kept", "two"]);
  });

  it("a repository read through a query runner on which raw BEGIN ran bypasses the cache and sees its own writes", async () => {
    await runner.query("BEGIN");
    await runner.query(`INSERT INTO ${table()} (title) VALUES ('mine')`);
    const before = app.cache.stats();
    const inside = await runner.manager.withRepository(posts).findAll();
    expect(titles(inside)).to.deep.equal(["one", "two", "mine"]);
    const now = app.cache.stats();
    expect([now.hits, now.sets], "the cache was neither read nor written").to.deep.equal([
      before.hits,
      before.sets,
    ]);
    expect(titles(await posts.findAll()), "nothing uncommitted shows outside").to.deep.equal([
      "one",
      "two",
    ]);
    await runner.query("COMMIT");
    expect(titles(await posts.findAll())).to.deep.equal(["one", "two", "mine"]);
  });

  it("START TRANSACTION sent with the write in one text is held until its COMMIT", async () => {
    await runner.query(
      `START TRANSACTION; UPDATE ${table()} SET title = 'later' WHERE title = 'one'`,
    );
    await cacheWhileOpen(["one", "two"]);
    await runner.query("END");
    expect(titles(await posts.findAll())).to.deep.equal(["later", "two"]);
  });
});
