import { expect } from "chai";
import { SqlAnalyzer } from "../../lib/sql/analyzer";

const names = (relations: readonly { schema?: string; name: string }[]) =>
  relations.map((r) => (r.schema ? `${r.schema}.${r.name}` : r.name)).sort();

describe("unit: SQL analyzer (what a statement reads and writes, from PostgreSQL's own parser)", () => {
  const analyzer = new SqlAnalyzer();
  before(() => SqlAnalyzer.load());

  it("finds every relation a SELECT reads: joins, subqueries, CTE sources, schemas as written", () => {
    const effects = analyzer.analyze(`
      WITH recent AS (SELECT * FROM "blog"."post" WHERE id > 10)
      SELECT r.id FROM recent r JOIN author a ON a.id = r.author_id
      WHERE EXISTS (SELECT 1 FROM comment c WHERE c.post_id = r.id)`);
    expect(names(effects.reads)).to.include.members(["author", "blog.post", "comment"]);
    // A CTE's name is reported apart, so that it is not taken for a table of that name.
    expect(effects.cteNames).to.deep.equal(["recent"]);
    expect(effects.writes).to.deep.equal([]);
    expect(effects.opaqueWrite).to.equal(undefined);
  });

  it("finds the target and kind of each write, and what INSERT ... SELECT reads", () => {
    const kinds = (sql: string) =>
      analyzer
        .analyze(sql)
        .writes.map((w) => `${w.kind} ${w.schema ? `${w.schema}.` : ""}${w.name}`);
    expect(kinds(`INSERT INTO post (title) VALUES ('a')`)).to.deep.equal(["insert post"]);
    expect(kinds(`UPDATE "s"."post" SET views = 1`)).to.deep.equal(["update s.post"]);
    expect(kinds(`DELETE FROM post USING author WHERE post.author_id = author.id`)).to.deep.equal([
      "delete post",
    ]);
    const copy = analyzer.analyze(`INSERT INTO archive SELECT * FROM post`);
    expect(names(copy.reads)).to.include("post");
    expect(copy.writes.map((w) => w.name)).to.deep.equal(["archive"]);
  });

  it("finds TRUNCATE targets and whether they cascade", () => {
    const plain = analyzer.analyze(`TRUNCATE post, comment`);
    expect(names(plain.truncates)).to.deep.equal(["comment", "post"]);
    expect(plain.truncateCascades).to.equal(false);
    expect(analyzer.analyze(`TRUNCATE post CASCADE`).truncateCascades).to.equal(true);
  });

  it("finds transaction control in order", () => {
    const kinds = (sql: string) =>
      analyzer.analyze(sql).control.map((c) => ("name" in c ? `${c.kind} ${c.name}` : c.kind));
    expect(kinds("BEGIN")).to.deep.equal(["begin"]);
    expect(kinds("START TRANSACTION ISOLATION LEVEL SERIALIZABLE")).to.deep.equal(["begin"]);
    expect(kinds("SAVEPOINT s1")).to.deep.equal(["savepoint s1"]);
    expect(kinds("RELEASE SAVEPOINT s1")).to.deep.equal(["release s1"]);
    expect(kinds("ROLLBACK TO SAVEPOINT s1")).to.deep.equal(["rollback-to s1"]);
    expect(kinds("COMMIT")).to.deep.equal(["commit"]);
    expect(kinds("ROLLBACK")).to.deep.equal(["rollback"]);
  });

  it("says when a text may write what its tree does not show", () => {
    for (const sql of [
      "CALL refresh_everything()",
      "DO $$ BEGIN DELETE FROM post; END $$",
      "this is not SQL",
    ]) {
      expect(analyzer.analyze(sql).opaqueWrite, sql).to.be.a("string");
    }
  });

  it("reports the functions a statement calls", () => {
    expect(
      analyzer.analyze("SELECT my_schema.score(id), lower(title) FROM post").functions,
    ).to.include.members(["my_schema.score"]);
  });
});
