import { expect } from "chai";
import Redis, { Cluster } from "ioredis";
import { KeyLayout } from "../lib/keys/key-layout";
import { keySlot } from "../lib/stores/redis/key-slot";
import { type Environment, type FreshnessReport, runFreshness } from "./freshness/harness";
import { RedisCluster } from "./support/redis-cluster";
import { RedisProcess } from "./support/redis-process";
import { until } from "./support/wait";

/** Operations the workload has finished so far (the seed is a recorded write, not an operation). */
function opsDone(env: Environment): number {
  const r = env.recorder;
  return r.reads.length + r.readErrors.length + r.readDatabaseErrors.length + r.writes.length - 1;
}

/** When the fault struck and ended, on the recorder's clock, to place any violation against it. */
interface FaultLog {
  struckAt?: number;
  endedAt?: number;
  opsAtStrike?: number;
  opsAtEnd?: number;
  hitsAtEnd?: number;
  errorsAtEnd?: number;
  /** Per instance, its store errors by name and when it saw the last one. */
  storeErrors: { byName: Map<string, number>; count: number; lastAt: number; last: string }[];
}

function faultLog(): FaultLog {
  return { storeErrors: [] };
}

/** Keeps count of each instance's store errors, to tell which one could not reach Redis when. */
function watchStoreErrors(env: Environment, fault: FaultLog): void {
  env.apps.forEach((app, i) => {
    const seen = (fault.storeErrors[i] = {
      byName: new Map<string, number>(),
      count: 0,
      lastAt: 0,
      last: "",
    });
    app.cache.on("storeError", (error) => {
      seen.byName.set(error.name, (seen.byName.get(error.name) ?? 0) + 1);
      seen.count++;
      seen.lastAt = env.recorder.now();
      seen.last = error.name;
    });
  });
}

function summary(what: string, report: FreshnessReport, extra: string): string {
  return (
    `freshness through ${what}: ${report.ops} ops, hit ratio ${report.hitRatio.toFixed(3)}, ` +
    `stale reads ${report.stale.length}, dirty reads ${report.dirty.length}; ${extra}`
  );
}

function explain(report: FreshnessReport, fault: FaultLog): string {
  const lines = [
    `${report.stale.length} stale, ${report.dirty.length} dirty reads; fault from ${fault.struckAt?.toFixed(0)} ms to ${fault.endedAt?.toFixed(0)} ms`,
    ...fault.storeErrors.map(
      (seen, i) =>
        `app${i + 1} store errors: ${[...seen.byName].map(([name, n]) => `${n} ${name}`).join(", ") || "none"}; last at ${seen.lastAt.toFixed(0)} ms (${seen.last})`,
    ),
  ];
  for (const v of [...report.stale, ...report.dirty].slice(0, 10))
    lines.push(`${v.kind} ${v.read}`, ...v.details.map((d) => `  ${d}`));
  return [...lines, ...report.readErrors.slice(0, 5)].join("\n");
}

function expectClean(
  report: FreshnessReport,
  fault: FaultLog,
  excused: (read: string) => boolean = () => false,
): void {
  expect(report.unattributed, "every logged write belongs to a recorded operation").to.have.length(
    0,
  );
  expect(report.readErrors, "no cached read threw anything but a database error").to.deep.equal([]);
  const stale = report.stale.filter((v) => !excused(v.read));
  expect(stale.length + report.dirty.length, explain({ ...report, stale }, fault)).to.equal(0);
  expect(report.reads).to.be.greaterThan(report.ops / 2);
}

/**
 * The spans during which some instance could not deliver its invalidations (it holds undelivered
 * ones, or its store is down). Writes it made then cannot reach the others until it can: what the
 * library promises there is that the writer itself serves nothing stale (invariant 6), and that
 * once every instance has delivered, nobody does.
 *
 * The state is sampled (QueryCache.health()), and a busy machine may sample late, so each span is
 * widened to what the samples prove: it opens at the last sample that saw every instance caught
 * up and closes at the first one that sees it again.
 */
class Convergence {
  readonly spans: [number, number][] = [];
  private open?: number;
  private lastCalm = 0;
  private timer?: NodeJS.Timeout;

  watch(env: Environment): void {
    this.timer = setInterval(() => {
      const now = env.recorder.now();
      const behind = env.apps.some((app) => {
        const health = app.cache.health();
        return health.undeliveredInvalidations > 0 || !health.storeReachable;
      });
      if (behind && this.open === undefined) this.open = this.lastCalm;
      if (!behind) {
        if (this.open !== undefined) this.spans.push([this.open, now]);
        this.open = undefined;
        this.lastCalm = now;
      }
    }, 5);
  }

  stop(): void {
    clearInterval(this.timer);
    if (this.open !== undefined) this.spans.push([this.open, Number.POSITIVE_INFINITY]);
  }

  /** Whether a read, by the start time in its description, began while some instance was behind. */
  covers(read: string): boolean {
    const start = Number(/\[([\d.]+) ms/.exec(read)?.[1]);
    return this.spans.some(([from, to]) => start >= from && start <= to);
  }
}

/**
 * The phases of a fault run, by counts of operations, whatever time they take: enough before the
 * fault that the cache is warm, enough during it to exercise the outage, and enough after it
 * that caching has resumed (an invalidation that failed during the fault is retried with a
 * backoff of up to a second, and until it lands its writer caches nothing that depends on it).
 */
const WARM_OPS = 1000;
const OPS_DURING = 300;
const OPS_AFTER = 1000;
const HITS_AFTER = 100;
/** Only a cap: the run ends when the phases are done. */
const MAX_OPS = 1_000_000;
/** Bounds a phase, so a cache that never recovers fails the spec instead of hanging it. */
const PHASE_MS = 180_000;
/** Short, so that calls made while Redis is gone give up on it quickly. */
const CACHE = { storeTimeout: 200 };

function opsSince(env: Environment, mark: number | undefined): number {
  return opsDone(env) - (mark ?? 0);
}

/** Runs the workload on until caching has resumed after the fault and OPS_AFTER more operations ran. */
async function recovered(env: Environment, fault: FaultLog): Promise<void> {
  fault.endedAt = env.recorder.now();
  fault.opsAtEnd = opsDone(env);
  fault.hitsAtEnd = env.hits().hits;
  await until(
    `${OPS_AFTER} operations and ${HITS_AFTER} hits after the fault`,
    () =>
      opsSince(env, fault.opsAtEnd) >= OPS_AFTER &&
      env.hits().hits - fault.hitsAtEnd! >= HITS_AFTER,
    PHASE_MS,
  );
}

describe("freshness through faults: no stale read across a Redis kill and a cluster failover", function () {
  // Phases wait for counts, not time: on a busy machine a run takes longer, never fails for it.
  this.timeout(4 * PHASE_MS);
  let server: RedisProcess | undefined;
  let cluster: RedisCluster | undefined;
  const clients: (Redis | Cluster)[] = [];

  after(async () => {
    for (const client of clients) client.disconnect();
    await server?.stop();
    await cluster?.stop();
  });

  it(`finds none outside the spans where an instance could not deliver its invalidations, when Redis is killed mid-run, stays down for ${OPS_DURING} operations and comes back empty`, async () => {
    const redis = (server = await RedisProcess.start());
    const fault = faultLog();
    // Each instance finds Redis back on its own schedule (its circuit breaker tries again after its
    // cool-down): until the last one has delivered, the others may serve what its writes made stale.
    const convergence = new Convergence();
    const report = await runFreshness({
      ops: MAX_OPS,
      seed: 21,
      workers: 8,
      cache: CACHE,
      connect: async () => {
        const client = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
        clients.push(client);
        // ioredis reports every failed reconnection while the server is down as an "error" event.
        client.on("error", () => undefined);
        await until("the client is ready", () => client.status === "ready");
        return client;
      },
      during: async (env) => {
        watchStoreErrors(env, fault);
        convergence.watch(env);
        await until(`${WARM_OPS} operations ran`, () => opsDone(env) >= WARM_OPS, PHASE_MS);
        try {
          await redis.kill();
          fault.struckAt = env.recorder.now();
          fault.opsAtStrike = opsDone(env);
          const errors = () => fault.storeErrors.reduce((n, seen) => n + seen.count, 0);
          await until(
            `${OPS_DURING} operations ran, and store errors were seen, while Redis was down`,
            () => opsSince(env, fault.opsAtStrike) >= OPS_DURING && errors() > 0,
            PHASE_MS,
          );
        } finally {
          await redis.start();
        }
        await recovered(env, fault);
        convergence.stop();
      },
    });
    const hitsAfter = report.hits - fault.hitsAtEnd!;
    const excused = report.stale.filter((v) => convergence.covers(v.read)).length;
    console.log(
      summary(
        "a Redis kill",
        report,
        `${fault.opsAtEnd! - fault.opsAtStrike!} ops while Redis was down, ${hitsAfter} hits after its restart, ` +
          `${report.storeErrors} store errors, ${excused} stale reads while an instance still held undelivered invalidations, ${report.seconds.toFixed(1)} s`,
      ),
    );
    expectClean(report, fault, (read) => convergence.covers(read));
    expect(report.storeErrors, "the outage was seen, and counted").to.be.greaterThan(0);
    expect(report.ops - fault.opsAtEnd!, "operations after the restart").to.be.at.least(OPS_AFTER);
    expect(hitsAfter, "hits after the restart").to.be.at.least(HITS_AFTER);
  });

  it("finds none outside the spans where an instance could not deliver its invalidations, when the master holding the versions is killed mid-run", async () => {
    const redis = (cluster = await RedisCluster.start());
    const fault = faultLog();
    const convergence = new Convergence();
    let promoted = "";
    const report = await runFreshness({
      ops: MAX_OPS,
      seed: 22,
      workers: 8,
      cache: CACHE,
      connect: async () => {
        const client = new Cluster(redis.startupNodes);
        clients.push(client);
        client.on("error", () => undefined);
        client.on("node error", () => undefined);
        await until("the cluster client is ready", () => client.status === "ready");
        return client;
      },
      during: async (env) => {
        watchStoreErrors(env, fault);
        convergence.watch(env);
        const slot = keySlot(KeyLayout.clockKey(env.namespace));
        const { master, replicas } = await redis.ownerOf(slot);
        expect(replicas, "replicas of the version slot's master").to.have.length(1);
        // An invalidation waits only for the replicas its client knows of; one it does not know
        // could be promoted without the latest bumps.
        for (const app of env.apps) {
          const client = app.redis as Cluster;
          await until("the client knows the version slot's replica", () => {
            client.refreshSlotsCache();
            return (client.slots[slot]?.length ?? 0) === 2;
          });
        }
        await until(`${WARM_OPS} operations ran`, () => opsDone(env) >= WARM_OPS, PHASE_MS);
        await master.kill();
        fault.struckAt = env.recorder.now();
        fault.opsAtStrike = opsDone(env);
        await redis.waitUntilHealthy();
        await recovered(env, fault);
        const owner = await redis.ownerOf(slot);
        promoted =
          owner.master.port === replicas[0].port
            ? "the replica was promoted"
            : `port ${owner.master.port} took over`;
      },
    });
    convergence.stop();
    const hitsAfter = report.hits - fault.hitsAtEnd!;
    const excused = report.stale.filter((v) => convergence.covers(v.read)).length;
    console.log(
      summary(
        "a cluster failover",
        report,
        `${fault.opsAtEnd! - fault.opsAtStrike!} ops in the ${((fault.endedAt! - fault.struckAt!) / 1000).toFixed(1)} s ` +
          `from the kill to a healthy cluster (${promoted}), ${hitsAfter} hits after it, ${report.storeErrors} store errors, ` +
          `${excused} stale reads while an instance still held undelivered invalidations, ${report.seconds.toFixed(1)} s`,
      ),
    );
    expectClean(report, fault, (read) => convergence.covers(read));
    expect(promoted).to.equal("the replica was promoted");
    expect(report.ops - fault.opsAtEnd!, "operations after the failover").to.be.at.least(OPS_AFTER);
    expect(hitsAfter, "hits after the failover").to.be.at.least(HITS_AFTER);
  });
});
