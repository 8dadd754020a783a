import { expect } from "chai";
import type { DataSource } from "typeorm";
import { type App, openApp, openDataSource, uniqueNamespace } from "./support/fixture";
import { warm } from "./support/warm";

// Generous: the catalog's fingerprint is compared every second.
const SEEN_WITHIN_MS = 20_000;

/**
 * The catalog (cascades, triggers) stays true after DDL: run through the same DataSource inside a
 * transaction, or by another process.
 */
describe("the catalog stays true: DDL is seen after its COMMIT, and DDL from other processes is seen too", () => {
  const ns = uniqueNamespace();
  let app: App;
  let other: DataSource;
  const t = (name: string) => `"${ns}"."${name}"`;
  const childCount = () =>
    app.cache.wrap(`children-${ns}`, () =>
      app.dataSource.query(`SELECT count(*)::int AS n FROM ${t("child")}`),
    );
  const auditCount = () =>
    app.cache.wrap(`audit-${ns}`, () =>
      app.dataSource.query(`SELECT count(*)::int AS n FROM ${t("audit")}`),
    );

  before(async () => {
    app = await openApp(ns, { fresh: true });
    other = await openDataSource({ schema: ns });
  });
  after(async () => {
    await other.destroy();
    await app.close();
  });
  beforeEach(async () => {
    await other.query(`DROP TABLE IF EXISTS ${t("child")}, ${t("parent")}, ${t("audit")} CASCADE`);
    await other.query(`CREATE TABLE ${t("parent")} (id int PRIMARY KEY)`);
    await other.query(`CREATE TABLE ${t("child")} (id int PRIMARY KEY, parent_id int)`);
    await other.query(`CREATE TABLE ${t("audit")} (id serial PRIMARY KEY, note text)`);
    await other.query(`INSERT INTO ${t("parent")} VALUES (1), (2), (3)`);
    await other.query(`INSERT INTO ${t("child")} VALUES (1, 1), (2, 2), (3, 3)`);
    // The app learns the tables as they are now, without the DDL each case adds.
    await app.cache.clear();
  });

  it("a trigger created inside a migration's transaction through the same DataSource is followed by later writes", async () => {
    await app.dataSource.transaction(async (em) => {
      await em.query(
        `CREATE FUNCTION ${t("note_parent")}() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO ${t("audit")} (note) VALUES ('parent changed'); RETURN NULL; END $$`,
      );
      await em.query(
        `CREATE TRIGGER note_parent AFTER INSERT ON ${t("parent")} FOR EACH ROW EXECUTE FUNCTION ${t("note_parent")}()`,
      );
    });
    expect(await warm(app, auditCount)).to.deep.equal([{ n: 0 }]);
    await app.dataSource.query(`INSERT INTO ${t("parent")} VALUES (4)`);
    expect(await auditCount(), "the trigger's write invalidated the audit read").to.deep.equal([
      { n: 1 },
    ]);
  });

  it("a foreign key with ON DELETE CASCADE added inside a transaction through the same DataSource is followed by later deletes", async () => {
    const runner = app.dataSource.createQueryRunner();
    try {
      await runner.startTransaction();
      await runner.query(
        `ALTER TABLE ${t("child")} ADD FOREIGN KEY (parent_id) REFERENCES ${t("parent")} (id) ON DELETE CASCADE`,
      );
      await runner.commitTransaction();
    } finally {
      await runner.release();
    }
    expect(await warm(app, childCount)).to.deep.equal([{ n: 3 }]);
    await app.dataSource.query(`DELETE FROM ${t("parent")} WHERE id = 1`);
    expect(await childCount(), "the cascade's delete invalidated the child read").to.deep.equal([
      { n: 2 },
    ]);
  });

  it("after DDL by another process, cache.clear() re-reads the catalog, so a new cascade is followed", async () => {
    await other.query(
      `ALTER TABLE ${t("child")} ADD FOREIGN KEY (parent_id) REFERENCES ${t("parent")} (id) ON DELETE CASCADE`,
    );
    await app.cache.clear();
    expect(await warm(app, childCount)).to.deep.equal([{ n: 3 }]);
    await app.dataSource.query(`DELETE FROM ${t("parent")} WHERE id = 2`);
    expect(await childCount()).to.deep.equal([{ n: 2 }]);
  });

  it("DDL by another process is seen without being told: a new cascade is followed within the catalog's poll", async () => {
    await other.query(
      `ALTER TABLE ${t("child")} ADD FOREIGN KEY (parent_id) REFERENCES ${t("parent")} (id) ON DELETE CASCADE`,
    );
    const deadline = Date.now() + SEEN_WITHIN_MS;
    let id = 100;
    for (;;) {
      // Each round caches the count, deletes a parent whose child cascades, and reads again.
      id++;
      await other.query(
        `INSERT INTO ${t("parent")} VALUES (${id}); INSERT INTO ${t("child")} VALUES (${id}, ${id})`,
      );
      const before = (await warm(app, childCount))[0].n as number;
      await app.dataSource.query(`DELETE FROM ${t("parent")} WHERE id = ${id}`);
      const after = (await childCount())[0].n as number;
      if (after === before - 1) break;
      expect(
        Date.now(),
        `a cascade added by another process was still not followed after ${SEEN_WITHIN_MS} ms`,
      ).to.be.below(deadline);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });

  it("a trigger created by another process is followed without being told", async () => {
    await other.query(
      `CREATE FUNCTION ${t("note_child")}() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO ${t("audit")} (note) VALUES ('child changed'); RETURN NULL; END $$`,
    );
    await other.query(
      `CREATE TRIGGER note_child AFTER UPDATE ON ${t("child")} FOR EACH ROW EXECUTE FUNCTION ${t("note_child")}()`,
    );
    const deadline = Date.now() + SEEN_WITHIN_MS;
    for (;;) {
      const before = (await warm(app, auditCount))[0].n as number;
      await app.dataSource.query(`UPDATE ${t("child")} SET parent_id = parent_id WHERE id = 1`);
      const after = (await auditCount())[0].n as number;
      if (after === before + 1) break;
      expect(
        Date.now(),
        `a trigger added by another process was still not followed after ${SEEN_WITHIN_MS} ms`,
      ).to.be.below(deadline);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });
});
