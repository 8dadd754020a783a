import { expect } from "chai";
import { type Ended, TransactionBuffer } from "../../lib/invalidation/transaction-buffer";

describe("unit: transaction buffer (invalidations wait for the outermost COMMIT)", () => {
  // A runner that has not connected stands for its own session, and reports no server status.
  const connection = {};
  let buffer: TransactionBuffer;
  beforeEach(() => {
    buffer = new TransactionBuffer();
  });

  const due = (ended: Ended | undefined) => (ended ? [...ended.deps].sort() : ended);

  it("holds nothing outside a transaction", () => {
    expect(buffer.isOpen(connection)).to.equal(false);
    expect(buffer.hold(connection, ["a"])).to.equal(false);
    expect(buffer.apply(connection, { kind: "commit" })).to.equal(undefined);
  });

  it("hands over what was written at COMMIT, and drops it at ROLLBACK", () => {
    buffer.apply(connection, { kind: "begin" });
    expect(buffer.isOpen(connection)).to.equal(true);
    expect(buffer.hold(connection, ["a", "b"])).to.equal(true);
    expect(due(buffer.apply(connection, { kind: "commit" }))).to.deep.equal(["a", "b"]);
    expect(buffer.isOpen(connection)).to.equal(false);

    buffer.apply(connection, { kind: "begin" });
    buffer.hold(connection, ["a"]);
    expect(buffer.apply(connection, { kind: "rollback" })).to.equal(undefined);
    expect(buffer.isOpen(connection)).to.equal(false);
  });

  it("keeps connections apart", () => {
    const other = {};
    buffer.apply(connection, { kind: "begin" });
    buffer.hold(connection, ["a"]);
    expect(buffer.isOpen(other)).to.equal(false);
    expect(buffer.hold(other, ["b"])).to.equal(false);
  });

  it("does not flush at a savepoint's RELEASE, and drops what ROLLBACK TO undoes", () => {
    buffer.apply(connection, { kind: "begin" });
    buffer.hold(connection, ["outer"]);
    buffer.apply(connection, { kind: "savepoint", name: "s1" });
    buffer.hold(connection, ["kept"]);
    expect(buffer.apply(connection, { kind: "release", name: "s1" })).to.equal(undefined);
    buffer.apply(connection, { kind: "savepoint", name: "s2" });
    buffer.hold(connection, ["undone"]);
    buffer.apply(connection, { kind: "rollback-to", name: "s2" });
    buffer.hold(connection, ["after"]);
    expect(due(buffer.apply(connection, { kind: "commit" }))).to.deep.equal([
      "after",
      "kept",
      "outer",
    ]);
  });

  it("COMMIT AND CHAIN hands over what was written and opens the next transaction", () => {
    buffer.apply(connection, { kind: "begin" });
    buffer.hold(connection, ["a"]);
    expect(due(buffer.apply(connection, { kind: "commit", chain: true }))).to.deep.equal(["a"]);
    expect(buffer.isOpen(connection)).to.equal(true);
    buffer.hold(connection, ["b"]);
    expect(due(buffer.apply(connection, { kind: "commit" }))).to.deep.equal(["b"]);
  });

  it("hands nothing over when the COMMIT failed (PostgreSQL rolled back)", () => {
    buffer.apply(connection, { kind: "begin" });
    buffer.hold(connection, ["a"]);
    buffer.abort(connection);
    expect(buffer.isOpen(connection)).to.equal(false);
    expect(buffer.apply(connection, { kind: "commit" })).to.equal(undefined);
  });

  it("remembers DDL run inside the transaction until its COMMIT", () => {
    expect(buffer.changedCatalog(connection)).to.equal(false);
    buffer.apply(connection, { kind: "begin" });
    expect(buffer.changedCatalog(connection)).to.equal(true);
    expect(buffer.apply(connection, { kind: "commit" })?.changedCatalog).to.equal(true);
  });
});
