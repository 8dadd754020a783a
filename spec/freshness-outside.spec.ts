import { expect } from "chai";
import { runFreshness } from "./freshness/harness";
import { outsideWriters } from "./freshness/outside-writers";
import { DEFAULT_PROFILE } from "./freshness/workload";
import { LogicalPostgres } from "./support/logical-postgres";

/** Few rows and groups, so the outside writes land on rows the cached reads hold. */
const PROFILE = { ...DEFAULT_PROFILE, accounts: 8, groups: 2, items: 16, readShare: 0.85 };

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

describe("freshness with writers that bypass the library: the change feed", function () {
  this.timeout(300_000);
  let pg: LogicalPostgres;

  before(async () => {
    pg = await LogicalPostgres.start();
  });
  after(async () => {
    await pg?.stop();
  });

  it("feed on: no dirty read, and no stale read that started after the feed delivered the write it missed", async () => {
    const outside = outsideWriters({
      pgUrl: pg.url,
      writes: 120,
      seed: 11,
      profile: PROFILE,
      feed: "in-process",
    });
    const report = await runFreshness({
      ops: 1200,
      seed: 11,
      workers: 8,
      profile: PROFILE,
      pgUrl: pg.url,
      during: outside.during,
    });
    expect(
      report.unattributed,
      "every logged write belongs to a recorded operation",
    ).to.have.length(0);
    expect(report.readErrors).to.deep.equal([]);
    expect(report.dirty, "dirty reads").to.have.length(0);
    expect(
      report.stale.map((v) => `${v.read}: ${v.details[0]}`),
      "stale reads",
    ).to.deep.equal([]);
    expect(outside.result.committed, "outside writes committed").to.be.greaterThan(60);
    const delays = [...outside.result.delaysMs].sort((a, b) => a - b);
    console.log(
      `      outside commit returned -> feed delivered, over ${delays.length} writes: ` +
        `p50 ${percentile(delays, 0.5).toFixed(1)} ms, p99 ${percentile(delays, 0.99).toFixed(1)} ms, max ${delays[delays.length - 1].toFixed(1)} ms ` +
        `(hit ratio ${(report.hitRatio * 100).toFixed(0)}%)`,
    );
  });

  it("the feed's process killed (SIGKILL) halfway and replaced: nothing lost, no stale read after delivery", async () => {
    const outside = outsideWriters({
      pgUrl: pg.url,
      writes: 80,
      seed: 13,
      profile: PROFILE,
      feed: "killed-midway",
    });
    const report = await runFreshness({
      ops: 800,
      seed: 13,
      workers: 8,
      profile: PROFILE,
      pgUrl: pg.url,
      during: outside.during,
    });
    expect(report.unattributed).to.have.length(0);
    expect(report.dirty, "dirty reads").to.have.length(0);
    expect(
      report.stale.map((v) => `${v.read}: ${v.details[0]}`),
      "stale reads",
    ).to.deep.equal([]);
    expect(outside.result.committed).to.be.greaterThan(40);
  });

  it("feed off: the checker reports the outside writes' stale reads", async () => {
    const outside = outsideWriters({
      pgUrl: pg.url,
      writes: 120,
      seed: 12,
      profile: PROFILE,
      feed: "off",
    });
    const report = await runFreshness({
      ops: 1200,
      seed: 12,
      workers: 8,
      profile: PROFILE,
      pgUrl: pg.url,
      during: outside.during,
    });
    expect(report.dirty).to.have.length(0);
    expect(report.stale.length, "stale reads of outside writes").to.be.greaterThan(0);
  });
});
