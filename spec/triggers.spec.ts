import { expect } from "chai";
import { type App, dropNamespace, openApp, selectCount, uniqueNamespace } from "./support/fixture";
import { warm } from "./support/warm";

describe("triggers: a write refreshes what its triggers write, and no more when the library can read them", () => {
  const ns = uniqueNamespace();
  const t = (table: string) => `"${ns}"."${table}"`;
  let app: App;
  let warnings: string[];
  const onWarning = (message: string) => warnings.push(message);

  // Each read is a separate cached computation over one table, keyed by the table's name.
  const rows = (table: string) => () =>
    app.cache.wrap(`rows-of-${table}`, () =>
      app.dataSource.query(`SELECT * FROM ${t(table)} ORDER BY id`),
    );
  const auditLog = rows("audit_log");
  const unrelated = rows("unrelated");

  /** Reads once and proves the cache served it: a hit, and no SQL ran. */
  async function served<T>(read: () => Promise<T>): Promise<T> {
    const hits = app.cache.stats().hits;
    const selects = selectCount(app.dataSource);
    const value = await read();
    expect(app.cache.stats().hits, "served from the cache").to.equal(hits + 1);
    expect(selectCount(app.dataSource), "a hit runs no SQL").to.equal(selects);
    return value;
  }

  /** Reads once and proves the read ran its SQL again. */
  async function recomputed<T>(read: () => Promise<T>): Promise<T> {
    const selects = selectCount(app.dataSource);
    const value = await read();
    expect(selectCount(app.dataSource), "the read ran its SQL").to.be.greaterThan(selects);
    return value;
  }

  before(async () => {
    app = await openApp(ns);
    const table = (name: string, columns = "v text") =>
      `CREATE TABLE ${t(name)} (id serial PRIMARY KEY, ${columns})`;
    const logTo = (name: string, target: string) =>
      `CREATE FUNCTION ${t(name)}() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         INSERT INTO ${t(target)} (v) VALUES (TG_OP || ' ' || TG_TABLE_NAME);
         RETURN NULL;
       END $$`;
    for (const sql of [
      table("audited"),
      table("audit_log"),
      table("unrelated"),
      `CREATE FUNCTION ${t("audit")}() RETURNS trigger LANGUAGE plpgsql AS $$
       DECLARE
         row_id int;
       BEGIN
         IF TG_OP = 'DELETE' THEN row_id := OLD.id; ELSE row_id := NEW.id; END IF;
         INSERT INTO ${t("audit_log")} (v) VALUES (lower(TG_OP) || ' ' || row_id);
         RETURN NULL;
       END $$`,
      `CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON ${t("audited")} FOR EACH ROW EXECUTE FUNCTION ${t("audit")}()`,

      table("dynamic_source"),
      table("dynamic_target"),
      `CREATE FUNCTION ${t("copy_dynamically")}() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         EXECUTE format('INSERT INTO %I.dynamic_target (v) VALUES ($1)', TG_TABLE_SCHEMA) USING NEW.v;
         RETURN NULL;
       END $$`,
      `CREATE TRIGGER copy_dynamically AFTER INSERT ON ${t("dynamic_source")} FOR EACH ROW EXECUTE FUNCTION ${t("copy_dynamically")}()`,

      table("calling_source"),
      `CREATE FUNCTION ${t("note")}(v text) RETURNS void LANGUAGE sql AS $$ INSERT INTO ${t("unrelated")} (v) VALUES (v) $$`,
      `CREATE FUNCTION ${t("call_note")}() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         PERFORM ${t("note")}(NEW.v);
         RETURN NULL;
       END $$`,
      `CREATE TRIGGER call_note AFTER INSERT ON ${t("calling_source")} FOR EACH ROW EXECUTE FUNCTION ${t("call_note")}()`,

      table("chain_a"),
      table("chain_b"),
      table("chain_c"),
      logTo("log_to_b", "chain_b"),
      logTo("log_to_c", "chain_c"),
      logTo("log_to_a", "chain_a"),
      logTo("log_to_audit", "audit_log"),
      `CREATE TRIGGER to_b AFTER INSERT ON ${t("chain_a")} FOR EACH ROW EXECUTE FUNCTION ${t("log_to_b")}()`,
      `CREATE TRIGGER to_c AFTER INSERT ON ${t("chain_b")} FOR EACH ROW EXECUTE FUNCTION ${t("log_to_c")}()`,
      // Closes a cycle, which its condition breaks when the row came from B.
      `CREATE TRIGGER to_a AFTER INSERT OR UPDATE ON ${t("chain_c")} FOR EACH ROW WHEN (NEW.v <> 'INSERT chain_b')
         EXECUTE FUNCTION ${t("log_to_a")}()`,

      table("parent"),
      table("child", `parent_id int REFERENCES ${t("parent")} ON DELETE CASCADE`),
      `CREATE TRIGGER audit AFTER DELETE ON ${t("child")} FOR EACH ROW EXECUTE FUNCTION ${t("audit")}()`,
      `CREATE TRIGGER audit_truncate AFTER TRUNCATE ON ${t("parent")} FOR EACH STATEMENT EXECUTE FUNCTION ${t("log_to_audit")}()`,
    ]) {
      await app.dataSource.query(sql);
    }
    await app.dataSource.query(`INSERT INTO ${t("unrelated")} (v) VALUES ('untouched')`);
  });
  after(async () => {
    await dropNamespace(app.redis, ns);
    await app.close();
  });
  beforeEach(() => {
    warnings = [];
    app.cache.on("warning", onWarning);
  });
  afterEach(() => {
    app.cache.off("warning", onWarning);
  });

  describe("a trigger whose SQL the library reads", () => {
    it("a write to the audited table refreshes cached reads of the table its trigger writes", async () => {
      const before = await warm(app, auditLog);
      await app.dataSource.query(`INSERT INTO ${t("audited")} (v) VALUES ('x')`);
      const [{ id }] = await app.dataSource.query(`SELECT max(id) AS id FROM ${t("audited")}`);
      expect(await recomputed(auditLog)).to.have.length(before.length + 1);
      await app.dataSource.query(`UPDATE ${t("audited")} SET v = 'y' WHERE id = $1`, [id]);
      expect((await recomputed(auditLog)).at(-1).v).to.equal(`update ${id}`);
      await app.dataSource.query(`DELETE FROM ${t("audited")} WHERE id = $1`, [id]);
      expect((await recomputed(auditLog)).at(-1).v).to.equal(`delete ${id}`);
    });

    it("leaves cached reads of unrelated tables in the cache, and warns of nothing", async () => {
      await warm(app, unrelated);
      await warm(app, auditLog);
      await app.dataSource.query(`INSERT INTO ${t("audited")} (v) VALUES ('x')`);
      await app.dataSource.query(`UPDATE ${t("audited")} SET v = 'z'`);
      expect(await served(unrelated)).to.deep.equal([{ id: 1, v: "untouched" }]);
      await recomputed(auditLog);
      expect(warnings).to.deep.equal([]);
    });

    it("follows a chain of triggers: A's writes B, B's writes C, so a write to A refreshes reads of C", async () => {
      await warm(app, unrelated);
      const before = await warm(app, rows("chain_c"));
      await app.dataSource.query(`INSERT INTO ${t("chain_a")} (v) VALUES ('start')`);
      const after = await recomputed(rows("chain_c"));
      expect(after).to.have.length(before.length + 1);
      expect(after.at(-1).v).to.equal("INSERT chain_b");
      await served(unrelated);
    });

    it("follows a cycle of triggers to its end: a write to C writes A, whose trigger writes B and then C", async () => {
      const before = await warm(app, rows("chain_b"));
      await app.dataSource.query(`UPDATE ${t("chain_c")} SET v = 'again'`);
      expect(await recomputed(rows("chain_b"))).to.have.length(before.length + 1);
    });

    it("fires the triggers of rows a foreign key deletes (ON DELETE CASCADE)", async () => {
      const [{ id }] = await app.dataSource.query(
        `INSERT INTO ${t("parent")} (v) VALUES ('p') RETURNING id`,
      );
      const [child] = await app.dataSource.query(
        `INSERT INTO ${t("child")} (parent_id) VALUES ($1) RETURNING id`,
        [id],
      );
      await warm(app, auditLog);
      await app.dataSource.query(`DELETE FROM ${t("parent")} WHERE id = $1`, [id]);
      expect((await recomputed(auditLog)).at(-1).v).to.equal(`delete ${child.id}`);
    });

    it("fires TRUNCATE triggers", async () => {
      const before = await warm(app, auditLog);
      await app.dataSource.query(`TRUNCATE ${t("parent")} CASCADE`);
      const after = await recomputed(auditLog);
      expect(after).to.have.length(before.length + 1);
      expect(after.at(-1).v).to.equal("TRUNCATE parent");
    });
  });

  describe("a trigger whose writes the library cannot read", () => {
    it("dynamic SQL (EXECUTE): refreshes every cached read of the database, and warns", async () => {
      await warm(app, unrelated);
      await warm(app, rows("dynamic_target"));
      await app.dataSource.query(`INSERT INTO ${t("dynamic_source")} (v) VALUES ('copied')`);
      expect(await recomputed(rows("dynamic_target"))).to.deep.equal([{ id: 1, v: "copied" }]);
      expect(await recomputed(unrelated)).to.deep.equal([{ id: 1, v: "untouched" }]);
      expect(
        warnings.some((w) => w.includes("copy_dynamically") && w.includes("EXECUTE")),
        `warnings: ${JSON.stringify(warnings)}`,
      ).to.equal(true);
    });

    it("a call of the application's own function: refreshes every cached read of the database, and warns", async () => {
      await warm(app, unrelated);
      await app.dataSource.query(`INSERT INTO ${t("calling_source")} (v) VALUES ('noted')`);
      expect((await recomputed(unrelated)).map((r: { v: string }) => r.v)).to.deep.equal([
        "untouched",
        "noted",
      ]);
      expect(
        warnings.some((w) => w.includes("call_note") && w.includes(`${ns}.note()`)),
        `warnings: ${JSON.stringify(warnings)}`,
      ).to.equal(true);
      await app.dataSource.query(`DELETE FROM ${t("unrelated")} WHERE v = 'noted'`);
    });
  });
});
