import { expect } from "chai";
import Redis from "ioredis";
import type { DataSource } from "typeorm";
import { QueryCache, RedisStore } from "../lib";
import type { Post } from "./support/entities";
import { openDataSource, selectCount, uniqueNamespace } from "./support/fixture";
import { RedisProcess } from "./support/redis-process";
import { type PostRepository, repositories } from "./support/repositories";

const STORE_TIMEOUT = 200;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const viewsOf = (rows: Post[]) => rows.map((p) => p.views);

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - start };
}

describe("circuit breaker: a store that keeps failing is skipped for a while, then tried again by itself", function () {
  this.timeout(30_000);
  const ns = uniqueNamespace();
  let server: RedisProcess;
  let dataSource: DataSource;
  let redis: Redis;
  let admin: Redis;
  let cache: QueryCache;
  let posts: PostRepository;
  const storeErrors: Error[] = [];

  /** Calls a cached read until it is a hit that runs no SQL, checking every answer on the way. */
  async function readUntilHit(title: string, views: number, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hits = cache.stats().hits;
      const selects = selectCount(dataSource);
      expect(viewsOf(await posts.byTitle({ title }))).to.deep.equal([views]);
      if (cache.stats().hits > hits) {
        expect(selectCount(dataSource), "a hit runs no SQL").to.equal(selects);
        return;
      }
      if (Date.now() > deadline) throw new Error("the read was never served from the cache again");
      await sleep(50);
    }
  }

  /** Store commands Redis has run since the last CONFIG RESETSTAT (those a pause held back included). */
  async function scriptCalls(): Promise<number> {
    const stats = await admin.info("commandstats");
    return [...stats.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
  }

  /** Pauses every client of the server (this admin connection included) for `ms`. */
  async function pause(ms: number): Promise<number> {
    await admin.call("CLIENT", "PAUSE", String(ms), "ALL");
    return Date.now() + ms;
  }

  before(async () => {
    server = await RedisProcess.start();
    dataSource = await openDataSource({ fresh: true, schema: ns });
    redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
    admin = new Redis(server.url);
    cache = new QueryCache({ dataSource, store: new RedisStore(redis), namespace: ns, storeTimeout: STORE_TIMEOUT });
    cache.on("storeError", (error: Error) => storeErrors.push(error));
    posts = repositories(dataSource).posts;
  });

  after(async () => {
    await admin?.call("CLIENT", "UNPAUSE").catch(() => undefined);
    await cache?.close();
    await dataSource?.destroy();
    redis?.disconnect();
    admin?.disconnect();
    await server?.stop();
  });

  it("answers fast once the breaker opens on a paused Redis, and caches again after the pause without a restart", async () => {
    const title = "paused";
    await posts.save({ title, views: 1 });
    await readUntilHit(title, 1);
    await admin.config("RESETSTAT");
    storeErrors.length = 0;

    const pausedUntil = await pause(4000);
    const durations: number[] = [];
    let views = 1;
    while (Date.now() < pausedUntil - 1000) {
      if (durations.length === 40) {
        views = 2;
        const write = await timed(() => posts.update({ title }, { views }));
        expect(write.ms, "a write while the breaker is open").to.be.below(1000);
      }
      const { value, ms } = await timed(() => posts.byTitle({ title }));
      expect(viewsOf(value), `read ${durations.length} during the pause`).to.deep.equal([views]);
      durations.push(ms);
    }
    expect(views, "the write happened during the pause").to.equal(2);
    const names = new Set(storeErrors.map((e) => e.name));
    expect([...names]).to.include.members(["StoreTimeoutError", "CircuitOpenError"]);

    // The first calls wait for the timeout; once the breaker opens, calls no longer wait (only
    // a trial call per cool-down does).
    const threshold = 5;
    expect(durations.slice(0, threshold).every((ms) => ms >= STORE_TIMEOUT * 0.9), "the first calls waited for the store").to.equal(true);
    const afterOpen = durations.slice(threshold);
    const fast = afterOpen.filter((ms) => ms < 50).length;
    expect(fast / afterOpen.length, `${fast} of ${afterOpen.length} calls under 50 ms once the breaker opened`).to.be.at.least(0.8);

    await sleep(pausedUntil + 100 - Date.now());
    const sent = await scriptCalls();
    expect(sent, `store calls sent during ${durations.length} cached reads`).to.be.below(durations.length / 4);

    // No restart of anything: the breaker lets a trial through, and the cache serves hits again.
    await readUntilHit(title, 2);
    await posts.update({ title }, { views: 3 });
    expect(viewsOf(await posts.byTitle({ title })), "invalidation works as before").to.deep.equal([3]);
    await readUntilHit(title, 3);
  });

  it("opens on a burst of concurrent timeouts, so the calls after it do not wait", async () => {
    const title = "burst";
    await posts.save({ title, views: 1 });
    await readUntilHit(title, 1);

    const pausedUntil = await pause(2500);
    const burst = await Promise.all(Array.from({ length: 20 }, () => timed(() => posts.byTitle({ title }))));
    for (const { value } of burst) expect(viewsOf(value)).to.deep.equal([1]);
    expect(Math.min(...burst.map((r) => r.ms)), "the burst waited for the store").to.be.at.least(STORE_TIMEOUT * 0.9);
    const next = await Promise.all(Array.from({ length: 5 }, async () => (await timed(() => posts.byTitle({ title }))).ms));
    expect(Math.max(...next), "calls right after the burst do not wait for the timeout").to.be.below(STORE_TIMEOUT / 2);

    await sleep(pausedUntil + 100 - Date.now());
    await readUntilHit(title, 1);
  });
});
