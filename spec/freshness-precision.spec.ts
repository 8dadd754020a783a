import { expect } from "chai";
import { RowPrecision } from "../lib/invalidation/row-precision";
import type { KeyLayout } from "../lib/keys/key-layout";
import { runFreshness } from "./freshness/harness";
import { explain } from "./freshness/verdict";

/** Few rows and groups and a write every ten operations, as in freshness.spec's racy profile. */
const RACY = { readShare: 0.9, groups: 2, accounts: 6, slowReads: 4, slowMs: 30 };

type WriteKeys = RowPrecision["writeKeys"];

/** Runs with RowPrecision.writeKeys replaced by a broken version of itself. */
async function withBrokenWrites<T>(
  broken: (original: WriteKeys) => WriteKeys,
  run: () => Promise<T>,
): Promise<T> {
  const original = RowPrecision.prototype.writeKeys;
  RowPrecision.prototype.writeKeys = broken(original);
  try {
    return await run();
  } finally {
    RowPrecision.prototype.writeKeys = original;
  }
}

/**
 * The freshness checker under row precision (invariant 9 never weakens 1 and 2): its reads are
 * bounded by id, IN lists, a foreign key, an indexed group and a composite key, and its writes
 * move rows into and out of those conditions on every path; and it catches row precision that is
 * deliberately wrong.
 */
describe("freshness under row precision", function () {
  this.timeout(300_000);

  it("finds no stale and no dirty read with bounded reads and writes over every path", async () => {
    const report = await runFreshness({ ops: 3000, seed: 21, workers: 8 });
    expect(report.unattributed).to.have.length(0);
    expect(report.readErrors).to.deep.equal([]);
    expect(report.stale.length + report.dirty.length, explain(report)).to.equal(0);
    expect(report.hits).to.be.greaterThan(0);
  });

  describe("catches deliberately broken row precision", () => {
    const broken: [string, (original: WriteKeys) => WriteKeys][] = [
      [
        "a write that ignores the rows' previous values (no version for an unknown previous value)",
        (original) =>
          function (this: RowPrecision, ...args) {
            return original
              .apply(this, args)
              ?.filter((key) => !/#[^=~#]*!?$/.test(key.slice(key.lastIndexOf("#"))));
          },
      ],
      [
        "an insert that bumps only its table's version, ignoring the rows it inserted",
        (original) =>
          function (this: RowPrecision, table, scope, ...rest) {
            const keys = original.call(this, table, scope, ...rest);
            return scope.kind === "insert" ? keys?.filter((key) => !key.includes("#")) : keys;
          },
      ],
      [
        "a write whose rows are unknown treated as a row write (no rows, so no row version)",
        (original) =>
          function (this: RowPrecision, table, scope, ...rest) {
            const keys = original.call(this, table, scope, ...rest);
            return keys ?? [(this as unknown as { keys: KeyLayout }).keys.version(table)];
          },
      ],
    ];
    for (const [what, breakIt] of broken) {
      it(`${what}: stale reads reported`, async () => {
        const report = await withBrokenWrites(breakIt, () =>
          runFreshness({ ops: 1200, seed: 23, workers: 8, profile: RACY }),
        );
        expect(report.unattributed).to.have.length(0);
        expect(report.stale.length, explain(report)).to.be.greaterThan(0);
      });
    }
  });
});
