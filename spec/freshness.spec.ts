import { expect } from "chai";
import {
  LateBumpStore,
  LostBumpStore,
  StampAtSetStore,
  UncheckedLookupStore,
} from "./freshness/broken-stores";
import { Account, TABLES } from "./freshness/entities";
import {
  Environment,
  type FreshnessReport,
  runFreshness,
  type StoreFactory,
} from "./freshness/harness";
import {
  checkHistory,
  type LogEntry,
  type Observation,
  type ReadRecord,
  type WriteRecord,
} from "./freshness/history";
import { expectClean as expectCleanRun, explain } from "./freshness/verdict";

/**
 * Few rows, two groups, many slow readers (60 ms between their query and their write to the
 * cache) and a write every ten operations: the windows in which a broken cache goes wrong are
 * hit hundreds of times in a few hundred operations.
 */
const RACY = { readShare: 0.9, groups: 2, accounts: 6, slowReads: 20, slowMs: 60 };

function expectClean(report: FreshnessReport): void {
  expectCleanRun(report);
  expect(report.hitRatio, "the cache served some reads").to.be.greaterThan(0);
}

describe("freshness: a randomized checker over two application instances sharing one Redis", function () {
  this.timeout(120_000);

  it("finds no stale and no dirty read in 3000 concurrent reads and writes over every path (invariants 1-5)", async () => {
    const report = await runFreshness({ ops: 3000, seed: 3, workers: 8 });
    expectClean(report);
    const unused = [...report.paths].filter(([, n]) => n === 0).map(([p]) => p);
    expect(unused, "write paths that never changed a row").to.deep.equal([]);
  });

  it("finds none either in the race-prone workload that catches the broken caches below (invariant 2)", async () => {
    expectClean(await runFreshness({ ops: 600, seed: 4, workers: 8, profile: RACY }));
  });

  describe("catches deliberately broken caches", () => {
    const broken: [string, StoreFactory][] = [
      [
        "an entry stamped when stored instead of before its query ran (the stale-set race)",
        (redis) => new StampAtSetStore(redis),
      ],
      [
        "invalidation that lands 50 ms after the commit returned",
        (redis) => new LateBumpStore(redis, 50),
      ],
      ["invalidations that are lost", (redis) => new LostBumpStore(redis)],
      [
        "a lookup that serves entries without checking their versions",
        (redis) => new UncheckedLookupStore(redis),
      ],
    ];
    for (const [what, store] of broken) {
      it(`${what}: stale reads reported`, async () => {
        // How often a race window is hit depends on the machine's speed: a busy machine gets
        // further runs (other seeds) rather than a failure, and a correct store never gets here.
        const reports: FreshnessReport[] = [];
        for (let seed = 5; seed < 9 && !reports.some((r) => r.stale.length > 0); seed++) {
          const report = await runFreshness({ ops: 400, seed, workers: 8, profile: RACY, store });
          expect(report.unattributed).to.have.length(0);
          reports.push(report);
        }
        expect(
          reports.at(-1)!.stale.length,
          `runs: ${reports.length}\n${explain(reports.at(-1)!)}`,
        ).to.be.greaterThan(0);
      });
    }
  });

  describe("the checker itself", () => {
    it("reports a read of rolled-back data, or of data whose COMMIT was not yet sent, as dirty", async () => {
      const env = await Environment.open();
      try {
        const { dataSource, reads, schema } = env.apps[0];
        const clock = env.recorder;
        const saw = (id: string, key: number, rowSeq: number): ReadRecord => {
          const at = clock.now();
          return {
            id,
            label: id,
            start: at,
            end: at,
            observations: [
              { kind: "rows", table: TABLES.account, rows: [{ key: String(key), rowSeq }] },
            ],
          };
        };
        const runner = dataSource.createQueryRunner();
        const rowSeq = async (id: number) =>
          Number(
            (
              await runner.query(
                `SELECT row_seq FROM "${schema}"."${TABLES.account}" WHERE id = $1`,
                [id],
              )
            )[0].row_seq,
          );
        try {
          await runner.query(`SELECT set_config('fr.op', 'undone', false)`);
          let start = clock.now();
          await runner.startTransaction();
          await runner.manager.update(Account, { id: 1 }, { balance: 7 });
          clock.reads.push(saw("saw-rolled-back", 1, await rowSeq(1)));
          await runner.rollbackTransaction();
          clock.writes.push({
            id: "undone",
            label: "update",
            start,
            commitFrom: start,
            end: clock.now(),
            outcome: "rolled back",
          });

          await runner.query(`SELECT set_config('fr.op', 'late', false)`);
          start = clock.now();
          await runner.startTransaction();
          await runner.manager.update(Account, { id: 2 }, { balance: 7 });
          clock.reads.push(saw("saw-before-commit", 2, await rowSeq(2)));
          const commitFrom = clock.now();
          await runner.commitTransaction();
          clock.writes.push({
            id: "late",
            label: "update",
            start,
            commitFrom,
            end: clock.now(),
            outcome: "committed",
          });
          await runner.query(`SELECT set_config('fr.op', '', false)`);
        } finally {
          await runner.release();
        }
        const start = clock.now();
        const after = await reads.byId(2);
        clock.reads.push({
          id: "after-commit",
          label: "after-commit",
          start,
          end: clock.now(),
          observations: [
            {
              kind: "rows",
              table: TABLES.account,
              rows: [{ key: "2", rowSeq: after!.rowSeq }],
              filter: (s) => s.id === 2,
            },
          ],
        });

        const verdict = await env.verdict();
        expect(verdict.dirty.map((v) => v.read.split(" ")[0])).to.deep.equal([
          "saw-rolled-back",
          "saw-before-commit",
        ]);
        expect(verdict.stale).to.deep.equal([]);
        expect(verdict.unattributed).to.deep.equal([]);
      } finally {
        await env.close();
      }
    });

    it("requires a read to see only the writes that returned before it started", () => {
      const row = (version: number) => ({ id: 1, grp: 0, version, deleted_at: null });
      const writes: WriteRecord[] = [
        { id: "seed", label: "seed", start: 0, commitFrom: 0, end: 1, outcome: "committed" },
        { id: "w", label: "update", start: 10, commitFrom: 10, end: 20, outcome: "committed" },
      ];
      const log: LogEntry[] = [
        {
          ord: 1,
          table: TABLES.account,
          key: "1",
          kind: "insert",
          rowSeq: 101,
          state: row(1),
          op: "seed",
          txid: "1",
        },
        {
          ord: 2,
          table: TABLES.account,
          key: "1",
          kind: "update",
          rowSeq: 102,
          state: row(2),
          op: "w",
          txid: "2",
        },
      ];
      const byId = (rowSeq: number): Observation => ({
        kind: "rows",
        table: TABLES.account,
        rows: [{ key: "1", rowSeq }],
      });
      const group: Observation = {
        kind: "rows",
        table: TABLES.account,
        rows: [],
        filter: (s) => s.grp === 0 && s.deleted_at === null,
      };
      const read = (id: string, start: number, end: number, o: Observation): ReadRecord => ({
        id,
        label: id,
        start,
        end,
        observations: [o],
      });
      const verdict = checkHistory(
        writes,
        [
          read("during-old", 15, 25, byId(101)),
          read("during-new", 15, 25, byId(102)),
          read("after-old", 21, 22, byId(101)),
          read("after-new", 21, 22, byId(102)),
          read("before-commit-new", 5, 9, byId(102)),
          read("after-missing", 21, 22, group),
          read("count-after", 21, 22, {
            kind: "count",
            table: TABLES.account,
            count: 0,
            filter: (s) => s.grp === 0,
          }),
        ],
        log,
      );
      const names = (vs: { read: string }[]) => vs.map((v) => v.read.split(" ")[0]);
      expect(names(verdict.stale)).to.deep.equal(["after-old", "after-missing", "count-after"]);
      expect(names(verdict.dirty)).to.deep.equal(["before-commit-new"]);
    });
  });
});
