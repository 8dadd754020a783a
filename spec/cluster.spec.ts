import { expect } from "chai";
import { Cluster } from "ioredis";
import { KeyLayout } from "../lib/keys/key-layout";
import type { Post } from "./support/entities";
import { type App, openApp, selectCount, uniqueNamespace } from "./support/fixture";
import { RedisCluster } from "./support/redis-cluster";
import { sleep, timed, until } from "./support/wait";
import { readUntilHit } from "./support/warm";

const viewsOf = (rows: Post[]) => rows.map((p) => p.views);

/** A call waits for a few store timeouts at most (1 s); the bound leaves a busy machine room and still catches a call that waits out the failover. */
const BOUNDED_MS = 5000;

/** Every key on every running master that matches a pattern, by node port. */
async function keysByMaster(
  cluster: RedisCluster,
  pattern: string,
): Promise<Map<number, string[]>> {
  const found = new Map<number, string[]>();
  for (const info of await cluster.topology()) {
    if (!info.flags.includes("master") || info.flags.includes("fail")) continue;
    const node = cluster.node(info.port);
    const keys: string[] = [];
    let cursor = "0";
    do {
      const [next, ...page] = (await node.cli("SCAN", cursor, "MATCH", pattern, "COUNT", "1000"))
        .trim()
        .split("\n");
      cursor = next;
      keys.push(...page.filter((k) => k !== ""));
    } while (cursor !== "0");
    found.set(info.port, keys);
  }
  return found;
}

describe("Redis Cluster: slot-safe storage, clear() on every master, and failover without stale reads", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace();
  const versionTag = `{${ns}:v}`;
  let redis: RedisCluster;
  let versionSlot: number;
  let a: App<Cluster>;
  let b: App<Cluster>;
  const apps: App<Cluster>[] = [];

  async function openClusterApp(fresh: boolean): Promise<App<Cluster>> {
    const client = new Cluster(redis.startupNodes);
    // ioredis reports every failed reconnection to a killed node as a "node error" event.
    client.on("node error", () => undefined);
    const app = await openApp(ns, { fresh, redis: client });
    apps.push(app);
    await until("the cluster client is ready", () => client.status === "ready");
    // The first call reads the database's identity and catalog; do it now so that SELECT counts
    // in the tests are those of the cached methods alone.
    await app.cache.get("set-up");
    return app;
  }

  /** Restarts the nodes a test killed (each rejoins as a replica) and waits until all are in sync. */
  async function restoreCluster(): Promise<void> {
    for (const node of redis.nodes) await node.start();
    await redis.waitUntilHealthy();
  }

  /** Waits until the client has learned (from CLUSTER SLOTS) every replica of the version slot's master. */
  async function untilClientKnowsReplicas(app: App<Cluster>): Promise<void> {
    const { replicas } = await redis.ownerOf(versionSlot);
    await until("the client knows the version slot's replicas", () => {
      app.redis.refreshSlotsCache();
      return (app.redis.slots[versionSlot]?.length ?? 0) === replicas.length + 1;
    });
  }

  before(async () => {
    redis = await RedisCluster.start();
    versionSlot = await redis.slotOf(KeyLayout.clockKey(ns));
    a = await openClusterApp(true);
    b = await openClusterApp(false);
  });

  after(async () => {
    for (const app of apps) await app.close().catch(() => undefined);
    await redis?.stop();
  });

  it("keeps a namespace's versions and clock in one slot, and spreads its entries over the masters", async () => {
    await a.posts.save({ title: "spread", views: 1 });
    for (let i = 0; i < 30; i++)
      await readUntilHit(
        a,
        () => a.posts.byTitle({ title: `spread ${i}` }),
        (rows) => expect(rows).to.deep.equal([]),
      );

    const versions = [...(await keysByMaster(redis, `${ns}:${versionTag}:*`)).values()].filter(
      (keys) => keys.length > 0,
    );
    expect(versions, "masters holding versions").to.have.length(1);
    expect(versions[0]).to.include(KeyLayout.clockKey(ns));
    const entries = [...(await keysByMaster(redis, `${ns}:e:*`)).values()].filter(
      (keys) => keys.length > 0,
    );
    expect(entries.length, "masters holding entries").to.be.greaterThan(1);
    expect(entries.flat()).to.have.length(30);
  });

  it("serves a hit without running SQL, and a write invalidates it", async () => {
    const title = "core";
    await a.posts.save({ title, views: 1 });
    await readUntilHit(
      a,
      () => a.posts.byTitle({ title }),
      (rows) => expect(viewsOf(rows)).to.deep.equal([1]),
    );

    const selects = selectCount(a.dataSource);
    await a.posts.update({ title }, { views: 2 });
    expect(viewsOf(await a.posts.byTitle({ title }))).to.deep.equal([2]);
    expect(selectCount(a.dataSource), "the read after the write ran SQL").to.be.greaterThan(
      selects,
    );
    await readUntilHit(
      a,
      () => a.posts.byTitle({ title }),
      (rows) => expect(viewsOf(rows)).to.deep.equal([2]),
    );
  });

  it("two DataSources sharing the cluster see each other's invalidations", async () => {
    const title = "shared";
    await a.posts.save({ title, views: 1 });
    await readUntilHit(
      a,
      () => a.posts.byTitle({ title }),
      (rows) => expect(viewsOf(rows)).to.deep.equal([1]),
    );
    await readUntilHit(
      b,
      () => b.posts.byTitle({ title }),
      (rows) => expect(viewsOf(rows)).to.deep.equal([1]),
    );

    await a.posts.update({ title }, { views: 2 });
    expect(viewsOf(await b.posts.byTitle({ title })), "b reads a's write").to.deep.equal([2]);
    await readUntilHit(
      b,
      () => b.posts.byTitle({ title }),
      (rows) => expect(viewsOf(rows)).to.deep.equal([2]),
    );
    await readUntilHit(
      a,
      () => a.posts.byTitle({ title }),
      (rows) => expect(viewsOf(rows)).to.deep.equal([2]),
    );

    await b.posts.update({ title }, { views: 3 });
    expect(viewsOf(await a.posts.byTitle({ title })), "a reads b's write").to.deep.equal([3]);
  });

  it("clear() deletes this namespace's entries on every master, and nothing else", async () => {
    const foreign = Array.from({ length: 20 }, (_, i) => `foreign:${i}`);
    for (const key of foreign) await a.redis.set(key, "kept");
    const title = "cleared";
    await a.posts.save({ title, views: 1 });
    await readUntilHit(
      a,
      () => a.posts.byTitle({ title }),
      (rows) => expect(viewsOf(rows)).to.deep.equal([1]),
    );
    for (let i = 0; i < 10; i++)
      await readUntilHit(
        a,
        () => a.posts.byTitle({ title: `cleared ${i}` }),
        () => undefined,
      );
    const before = [...(await keysByMaster(redis, `${ns}:e:*`)).values()].filter(
      (keys) => keys.length > 0,
    );
    expect(before.length, "masters holding entries before clear()").to.be.greaterThan(1);

    await a.cache.clear();

    expect(
      [...(await keysByMaster(redis, `${ns}:e:*`)).values()].flat(),
      "entries left",
    ).to.deep.equal([]);
    for (const key of foreign) expect(await a.redis.get(key), key).to.equal("kept");
    const selects = selectCount(a.dataSource);
    expect(viewsOf(await a.posts.byTitle({ title }))).to.deep.equal([1]);
    expect(selectCount(a.dataSource), "the read after clear() ran SQL").to.be.greaterThan(selects);
    for (const key of foreign) await a.redis.unlink(key);
  });

  it("an invalidation the replica has not acknowledged is retried, so a failover that loses it serves nothing stale", async () => {
    const title = "lost bump";
    await restoreCluster();
    await untilClientKnowsReplicas(a);
    const { master, replicas } = await redis.ownerOf(versionSlot);
    expect(replicas, "replicas of the version slot's master").to.have.length(1);
    const [replica] = replicas;
    await a.posts.save({ title, views: 1 });
    await readUntilHit(
      a,
      () => a.posts.byTitle({ title }),
      (rows) => expect(viewsOf(rows)).to.deep.equal([1]),
    );
    await readUntilHit(
      b,
      () => b.posts.byTitle({ title }),
      (rows) => expect(viewsOf(rows)).to.deep.equal([1]),
    );

    // Freeze the replica and queue more replication traffic than the sockets buffer, so what
    // the master writes next stays in its own memory and dies with it.
    const filler = `filler:${versionTag}`;
    const chunk = "x".repeat(1024 * 1024);
    const delivered = a.cache.stats().invalidations;
    replica.freeze();
    let thawed = false;
    try {
      for (let i = 0; i < 48; i++) await a.redis.append(filler, chunk);
      await a.posts.update({ title }, { views: 2 });
      expect(
        a.cache.stats().invalidations,
        "the unreplicated invalidation does not count as delivered",
      ).to.equal(delivered);
      expect(a.storeErrors.map((e) => e.name)).to.include("NotReplicatedError");
      await master.kill();
      replica.thaw();
      thawed = true;
    } finally {
      if (!thawed) replica.thaw();
    }
    await redis.waitUntilHealthy();
    const kept = Number(await replica.cli("STRLEN", filler));
    expect(kept, "the failover lost the tail of the replication stream").to.be.below(
      48 * chunk.length,
    );

    for (let i = 0; i < 5; i++)
      expect(
        viewsOf(await a.posts.byTitle({ title })),
        "the writer after the failover",
      ).to.deep.equal([2]);
    await readUntilHit(
      a,
      () => a.posts.byTitle({ title }),
      (rows) => expect(viewsOf(rows)).to.deep.equal([2]),
    );
    // Once the retry has landed, other processes cannot see the old value either.
    await until(
      "the writer's retry delivered its invalidation",
      () => a.cache.stats().invalidations > delivered,
    );
    await readUntilHit(
      b,
      () => b.posts.byTitle({ title }),
      (rows) => expect(viewsOf(rows)).to.deep.equal([2]),
    );

    await a.redis.unlink(filler);
  });

  it("keeps answering fresh data while the master of the versions fails over, and serves nothing stale afterwards", async () => {
    const title = "failover";
    await restoreCluster();
    await untilClientKnowsReplicas(a);
    const { master } = await redis.ownerOf(versionSlot);
    await a.posts.save({ title, views: 0 });
    await readUntilHit(
      a,
      () => a.posts.byTitle({ title }),
      (rows) => expect(viewsOf(rows)).to.deep.equal([0]),
    );
    await readUntilHit(
      b,
      () => b.posts.byTitle({ title }),
      (rows) => expect(viewsOf(rows)).to.deep.equal([0]),
    );

    let recovered = false;
    let recoveryFailed: Error | undefined;
    let views = 0;
    const durations: number[] = [];
    const errorsBefore = a.cache.stats().errors;
    // A run of writes, each followed by cached reads that must see it, from before the kill
    // until well after the replica took over.
    for (let round = 1, afterRecovery = 0; afterRecovery < 5; round++) {
      if (round === 3) {
        await master.kill();
        redis.waitUntilHealthy().then(
          () => {
            recovered = true;
          },
          (error: Error) => {
            recoveryFailed = error;
          },
        );
      }
      if (recoveryFailed) throw recoveryFailed;
      if (recovered) afterRecovery++;
      views++;
      const write = await timed(() => a.posts.update({ title }, { views }));
      durations.push(write.ms);
      for (let read = 0; read < 3; read++) {
        const { value, ms } = await timed(() => a.posts.byTitle({ title }));
        durations.push(ms);
        expect(viewsOf(value), `round ${round}, read ${read}`).to.deep.equal([views]);
      }
      await sleep(50);
    }
    expect(
      Math.max(...durations),
      `slowest call during the failover: ${Math.max(...durations).toFixed(0)} ms`,
    ).to.be.below(BOUNDED_MS);
    expect(
      a.cache.stats().errors,
      "store errors during the failover are counted",
    ).to.be.greaterThan(errorsBefore);

    // After the failover: both processes cache again, and read every write.
    await readUntilHit(
      a,
      () => a.posts.byTitle({ title }),
      (rows) => expect(viewsOf(rows)).to.deep.equal([views]),
    );
    await readUntilHit(
      b,
      () => b.posts.byTitle({ title }),
      (rows) => expect(viewsOf(rows)).to.deep.equal([views]),
    );
    for (let i = 0; i < 3; i++) {
      views++;
      await a.posts.update({ title }, { views });
      expect(
        viewsOf(await b.posts.byTitle({ title })),
        "b reads a's write after the failover",
      ).to.deep.equal([views]);
      await readUntilHit(
        b,
        () => b.posts.byTitle({ title }),
        (rows) => expect(viewsOf(rows)).to.deep.equal([views]),
      );
    }
  });
});
