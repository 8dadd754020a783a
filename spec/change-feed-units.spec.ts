import { expect } from "chai";
import type { Pgoutput } from "pg-logical-replication";
import { Backlog } from "../lib/change-feed/backlog";
import { formatLsn, parseLsn } from "../lib/change-feed/lsn";
import { type CommittedTransaction, TransactionAssembler } from "../lib/change-feed/transactions";

/** The change feed's pieces that need no server: how messages become transactions, and how they merge. */
describe("change feed, without a server", () => {
  const relation = (
    oid: number,
    name: string,
    columns: string[] = ["id", "title"],
  ): Pgoutput.MessageRelation => ({
    tag: "relation",
    relationOid: oid,
    schema: "s",
    name,
    replicaIdentity: "default",
    columns: columns.map((c) => ({
      name: c,
      flags: c === "id" ? 1 : 0,
      typeOid: 23,
      typeMod: -1,
      typeSchema: null,
      typeName: null,
      parser: (raw: unknown) => raw,
    })),
    keyColumns: columns.filter((c) => c === "id"),
  });
  const begin = (xid: number): Pgoutput.MessageBegin => ({
    tag: "begin",
    commitLsn: null,
    commitTime: 0n,
    xid,
  });
  const commit = (end: string): Pgoutput.MessageCommit => ({
    tag: "commit",
    flags: 0,
    commitLsn: null,
    commitEndLsn: end,
    commitTime: 1_700_000_000_000_000n,
  });

  it("reads and writes WAL positions", () => {
    expect(parseLsn("16/B374D848")).to.equal((0x16n << 32n) | 0xb374d848n);
    expect(formatLsn(parseLsn("0/1A2B3C"))).to.equal("0/1A2B3C");
    expect(parseLsn("1/0") > parseLsn("0/FFFFFFFF")).to.equal(true);
  });

  it("turns a transaction's messages into one committed transaction with its tables, rows and end", () => {
    const assembler = new TransactionAssembler();
    const post = relation(1, "post");
    const tag = relation(2, "tag", ["id"]);
    for (const message of [begin(7), post, tag] as Pgoutput.Message[])
      expect(assembler.accept(message)).to.equal(undefined);
    assembler.accept({ tag: "insert", relation: post, new: { id: 1, title: "a" } });
    assembler.accept({
      tag: "update",
      relation: post,
      key: { id: 1 },
      old: null,
      new: { id: 2, title: "a" },
    });
    assembler.accept({
      tag: "update",
      relation: post,
      key: null,
      old: null,
      new: { id: 2, title: undefined },
    });
    assembler.accept({ tag: "delete", relation: post, key: { id: 2 }, old: null });
    assembler.accept({ tag: "delete", relation: relation(3, "loose", []), key: null, old: null });
    assembler.accept({ tag: "truncate", cascade: false, restartIdentity: false, relations: [tag] });
    expect(assembler.inTransaction).to.equal(true);
    const done = assembler.accept(commit("0/10")) as CommittedTransaction;
    expect(assembler.inTransaction).to.equal(false);
    expect(done.xid).to.equal(7);
    expect(done.endLsn).to.equal(0x10n);
    expect(done.commitTime).to.equal(1_700_000_000_000);
    expect([...done.tables.keys()]).to.deep.equal(["s.post", "s.loose", "s.tag"]);
    expect(done.truncated).to.deep.equal([{ schema: "s", name: "tag" }]);
    expect(done.rows.map((r) => [r.kind, r.before, r.after])).to.deep.equal([
      ["insert", undefined, { id: 1, title: "a" }],
      ["update", { id: 1 }, { id: 2, title: "a" }],
      // The key did not change, so the server sent no old key: the new row's is the old one's, and
      // an unchanged TOASTed value (undefined) is unknown, not NULL.
      ["update", { id: 2 }, { id: 2 }],
      ["delete", { id: 2 }, undefined],
      ["delete", {}, undefined],
    ]);
    expect(done.relationsChanged).to.equal(false);
  });

  it("notices a relation announced again with another shape (DDL), and drops a transaction cut off by reset()", () => {
    const assembler = new TransactionAssembler();
    assembler.accept(begin(1));
    assembler.accept(relation(1, "post"));
    assembler.accept({ tag: "insert", relation: relation(1, "post"), new: { id: 1 } });
    assembler.reset();
    expect(assembler.accept(commit("0/20")), "a COMMIT without its BEGIN commits nothing").to.equal(
      undefined,
    );
    assembler.accept(begin(2));
    const altered = relation(1, "post", ["id", "title", "body"]);
    assembler.accept(altered);
    assembler.accept({ tag: "insert", relation: altered, new: { id: 2 } });
    expect((assembler.accept(commit("0/30")) as CommittedTransaction).relationsChanged).to.equal(
      true,
    );
  });

  it("merges waiting transactions into one delivery, lets rows go past the bound, and puts a failed delivery back first", () => {
    const tx = (xid: number, end: bigint, table: string, rows: number): CommittedTransaction => ({
      xid,
      endLsn: end,
      commitTime: xid,
      tables: new Map([[`s.${table}`, { schema: "s", name: table }]]),
      rows: Array.from({ length: rows }, () => ({
        table: { schema: "s", name: table },
        kind: "insert" as const,
        identity: "default" as const,
        after: {},
      })),
      truncated: [],
      relationsChanged: false,
    });
    const backlog = new Backlog(5);
    backlog.add(tx(1, 10n, "a", 2));
    backlog.add(tx(2, 20n, "b", 2));
    const batch = backlog.take();
    expect(backlog.isEmpty).to.equal(true);
    expect([...(batch?.tables.keys() ?? [])]).to.deep.equal(["s.a", "s.b"]);
    expect(batch?.rows).to.have.length(4);
    expect(batch?.endLsn).to.equal(20n);
    expect(batch?.transactions).to.equal(2);

    backlog.add(tx(3, 30n, "c", 2));
    backlog.putBack(batch!);
    const again = backlog.take();
    expect(again?.xids).to.deep.equal([1, 2, 3]);
    expect(again?.endLsn).to.equal(30n);
    expect(again?.rows, "6 rows are past the bound of 5: whole tables count").to.equal(undefined);
    expect(again?.firstCommitTime).to.equal(1);
  });
});
