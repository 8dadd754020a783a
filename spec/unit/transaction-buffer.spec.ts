import { expect } from "chai";
import { TransactionBuffer } from "../../lib/invalidation/transaction-buffer";

describe("unit: transaction buffer (invalidations wait for the outermost COMMIT)", () => {
  const connection = {};
  let buffer: TransactionBuffer;
  beforeEach(() => {
    buffer = new TransactionBuffer();
  });

  const due = (set: Set<string> | undefined) => (set ? [...set].sort() : set);

  it("holds nothing outside a transaction", () => {
    expect(buffer.isOpen(connection)).to.equal(false);
    expect(buffer.hold(connection, ["a"])).to.equal(false);
    expect(buffer.apply(connection, { kind: "commit" }, true)).to.equal(undefined);
  });

  it("hands over what was written at COMMIT, and drops it at ROLLBACK", () => {
    buffer.apply(connection, { kind: "begin" }, true);
    expect(buffer.isOpen(connection)).to.equal(true);
    expect(buffer.hold(connection, ["a", "b"])).to.equal(true);
    expect(due(buffer.apply(connection, { kind: "commit" }, true))).to.deep.equal(["a", "b"]);
    expect(buffer.isOpen(connection)).to.equal(false);

    buffer.apply(connection, { kind: "begin" }, true);
    buffer.hold(connection, ["a"]);
    expect(buffer.apply(connection, { kind: "rollback" }, true)).to.equal(undefined);
    expect(buffer.isOpen(connection)).to.equal(false);
  });

  it("keeps connections apart", () => {
    const other = {};
    buffer.apply(connection, { kind: "begin" }, true);
    buffer.hold(connection, ["a"]);
    expect(buffer.isOpen(other)).to.equal(false);
    expect(buffer.hold(other, ["b"])).to.equal(false);
  });

  it("does not flush at a savepoint's RELEASE, and drops what ROLLBACK TO undoes", () => {
    buffer.apply(connection, { kind: "begin" }, true);
    buffer.hold(connection, ["outer"]);
    buffer.apply(connection, { kind: "savepoint", name: "s1" }, true);
    buffer.hold(connection, ["kept"]);
    expect(buffer.apply(connection, { kind: "release", name: "s1" }, true)).to.equal(undefined);
    buffer.apply(connection, { kind: "savepoint", name: "s2" }, true);
    buffer.hold(connection, ["undone"]);
    buffer.apply(connection, { kind: "rollback-to", name: "s2" }, true);
    buffer.hold(connection, ["after"]);
    expect(due(buffer.apply(connection, { kind: "commit" }, true))).to.deep.equal(["after", "kept", "outer"]);
  });

  it("ignores control statements that failed", () => {
    buffer.apply(connection, { kind: "begin" }, false);
    expect(buffer.isOpen(connection)).to.equal(false);
    buffer.apply(connection, { kind: "begin" }, true);
    buffer.hold(connection, ["a"]);
    buffer.apply(connection, { kind: "savepoint", name: "s" }, true);
    buffer.hold(connection, ["b"]);
    buffer.apply(connection, { kind: "rollback-to", name: "s" }, false);
    expect(due(buffer.apply(connection, { kind: "commit" }, true))).to.deep.equal(["a", "b"]);
  });

  it("hands nothing over when the COMMIT failed (PostgreSQL rolled back)", () => {
    buffer.apply(connection, { kind: "begin" }, true);
    buffer.hold(connection, ["a"]);
    expect(buffer.apply(connection, { kind: "commit" }, false)).to.equal(undefined);
    expect(buffer.isOpen(connection)).to.equal(false);
  });
});
