import { expect } from "chai";
import Redis from "ioredis";
import { InvalidOptionError, QueryCache } from "../lib";
import type { Post } from "./support/entities";
import { type App, openApp, uniqueNamespace } from "./support/fixture";
import { RedisProcess } from "./support/redis-process";
import { timed } from "./support/wait";
import { readUntilHit } from "./support/warm";

const STORE_TIMEOUT = 200;
/** Set through QueryCacheOptions.circuitBreaker, so the counts below also prove the option is used. */
const BREAKER = { failureThreshold: 3, coolDownMs: 500 };
const viewsOf = (rows: Post[]) => rows.map((p) => p.views);
const expectViews = (views: number) => (rows: Post[]) =>
  expect(viewsOf(rows)).to.deep.equal([views]);

describe("circuit breaker: a store that keeps failing is skipped for a while, then tried again by itself", function () {
  this.timeout(120_000);
  const ns = uniqueNamespace();
  let server: RedisProcess;
  let admin: Redis;
  let app: App;

  /** Store commands Redis has run since the last CONFIG RESETSTAT (those a freeze held back included). */
  async function scriptCalls(): Promise<number> {
    const stats = await admin.info("commandstats");
    return [...stats.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)].reduce(
      (sum, m) => sum + Number(m[1]),
      0,
    );
  }

  const errorsNamed = (name: string, from = 0) =>
    app.storeErrors.slice(from).filter((e) => e.name === name).length;

  before(async () => {
    server = await RedisProcess.start();
    admin = new Redis(server.url);
    const redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
    app = await openApp(ns, {
      fresh: true,
      redis,
      cache: { storeTimeout: STORE_TIMEOUT, circuitBreaker: BREAKER },
    });
  });

  after(async () => {
    server?.thaw();
    await app?.close();
    admin?.disconnect();
    await server?.stop();
  });

  it("answers without waiting once the breaker opens on a frozen Redis, and caches again after the thaw without a restart", async () => {
    const { posts } = app;
    const title = "frozen";
    await posts.save({ title, views: 1 });
    await readUntilHit(app, () => posts.byTitle({ title }), expectViews(1));
    await admin.config("RESETSTAT");
    app.storeErrors.length = 0;

    // Frozen until the spec thaws it: the phases below are counted in calls, not in time.
    server.freeze();
    const started = performance.now();
    let reads = 0;
    let first = 0;
    try {
      for (const views of [1, 2]) {
        if (views === 2) await posts.update({ title }, { views });
        for (let i = 0; i < 40; i++, reads++) {
          const { value, ms } = await timed(() => posts.byTitle({ title }));
          if (reads === 0) first = ms;
          expect(viewsOf(value), `read ${reads} while Redis is frozen`).to.deep.equal([views]);
        }
      }
    } finally {
      server.thaw();
    }
    const frozenMs = performance.now() - started;
    expect(first, "the first call waited for the store").to.be.at.least(STORE_TIMEOUT * 0.9);
    expect(
      errorsNamed("CircuitOpenError"),
      "calls that skipped the store without waiting",
    ).to.be.greaterThan(0);
    // Only the calls that opened the breaker, one trial per cool-down, and calls already under way
    // when it opened can have waited for the store: whatever the machine's speed, the rest did not.
    const trials = Math.ceil(frozenMs / BREAKER.coolDownMs) + 1;
    expect(
      errorsNamed("StoreTimeoutError"),
      `timeouts in ${reads} reads and a write over ${frozenMs.toFixed(0)} ms`,
    ).to.be.at.most(BREAKER.failureThreshold + trials + 2);
    const sent = await scriptCalls();
    expect(sent, `store scripts sent during ${reads} cached reads`).to.be.below(reads / 4);

    // No restart of anything: the breaker lets a trial through, and the cache serves hits again.
    await readUntilHit(app, () => posts.byTitle({ title }), expectViews(2));
    await posts.update({ title }, { views: 3 });
    expect(viewsOf(await posts.byTitle({ title })), "invalidation works as before").to.deep.equal([
      3,
    ]);
    await readUntilHit(app, () => posts.byTitle({ title }), expectViews(3));
  });

  it("opens on a burst of concurrent timeouts, so the calls after it do not wait", async () => {
    const { posts } = app;
    const title = "burst";
    await posts.save({ title, views: 1 });
    await readUntilHit(app, () => posts.byTitle({ title }), expectViews(1));

    server.freeze();
    try {
      const burst = await Promise.all(
        Array.from({ length: 20 }, () => timed(() => posts.byTitle({ title }))),
      );
      for (const { value } of burst) expect(viewsOf(value)).to.deep.equal([1]);
      expect(Math.min(...burst.map((r) => r.ms)), "the burst waited for the store").to.be.at.least(
        STORE_TIMEOUT * 0.9,
      );
      const before = app.storeErrors.length;
      const next = await Promise.all(Array.from({ length: 5 }, () => posts.byTitle({ title })));
      for (const rows of next) expect(viewsOf(rows)).to.deep.equal([1]);
      // Without the breaker each of them would time out on its lookup. With it, at most one trial
      // may wait (should a cool-down have passed); the others skip the store.
      expect(
        errorsNamed("StoreTimeoutError", before),
        "calls right after the burst that waited for the store",
      ).to.be.at.most(1);
      expect(
        errorsNamed("CircuitOpenError", before),
        "store calls the open breaker refused",
      ).to.be.at.least(1);
    } finally {
      server.thaw();
    }
    await readUntilHit(app, () => posts.byTitle({ title }), expectViews(1));
  });

  it("refuses circuitBreaker options it cannot use", () => {
    for (const circuitBreaker of [
      { failureThreshold: 0 },
      { failureThreshold: 1.5 },
      { coolDownMs: -1 },
      { coolDownMs: Number.NaN },
    ]) {
      expect(
        () => new QueryCache({ dataSource: app.dataSource, namespace: ns, circuitBreaker }),
        JSON.stringify(circuitBreaker),
      ).to.throw(InvalidOptionError, /circuitBreaker\.(failureThreshold|coolDownMs)/);
    }
  });
});
