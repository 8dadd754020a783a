import { expect } from "chai";
import type { CacheStore } from "../../lib";
import { InvalidOptionError, QueryCache } from "../../lib";
import type { FreshnessReport } from "../freshness/harness";
import { Post } from "../support/entities";
import { type App, openApp, selectCount, uniqueNamespace } from "../support/fixture";
import { type PostRepository, repositories } from "../support/repositories";
import { warm } from "../support/warm";

/** A store a spec opened, with what it takes to close it. */
export type OpenedStore = CacheStore & { close?(): Promise<void> };

/**
 * What a user sees through a QueryCache, whatever store is under it: hits that run no SQL, writes
 * that refresh them, the same stats and events, the low-level API and clear(). Shared by the
 * Memcached and PostgreSQL specs.
 */
export function describeThroughQueryCache(openStore: () => Promise<OpenedStore>): void {
  describe("through a QueryCache", () => {
    const ns = uniqueNamespace();
    let app: App;
    let store: OpenedStore;
    let posts: PostRepository;

    before(async () => {
      store = await openStore();
      app = await openApp(ns, { fresh: true, cache: { store } });
      posts = repositories(app.dataSource).posts;
    });
    after(async () => {
      await app?.close();
      await store?.close?.();
    });
    beforeEach(async () => {
      await app.dataSource.query(
        `TRUNCATE "${ns}"."post_tags_tag", "${ns}"."comment", "${ns}"."post", "${ns}"."author", "${ns}"."tag" RESTART IDENTITY CASCADE`,
      );
      const author = await repositories(app.dataSource).authors.save({ name: "Ann" });
      await posts.save([
        { title: "one", published: true, author },
        { title: "two", published: true, author },
      ]);
    });

    it("serves a hit without SQL, with the entity classes, and refreshes it after each write path tried", async () => {
      const cached = await warm(app, () => posts.findPublished());
      expect(cached.map((p) => p.title)).to.deep.equal(["one", "two"]);
      expect(cached[0]).to.be.instanceOf(Post);
      expect(cached[0].author?.name).to.equal("Ann");
      const writes: [() => Promise<unknown>, string[]][] = [
        [() => posts.save({ title: "three", published: true }), ["one", "two", "three"]],
        [() => posts.update({ title: "one" }, { title: "uno" }), ["uno", "two", "three"]],
        [
          () => app.dataSource.query(`DELETE FROM "${ns}"."post" WHERE title = 'two'`),
          ["uno", "three"],
        ],
      ];
      for (const [write, expected] of writes) {
        await write();
        const selects = selectCount(app.dataSource);
        const after = await posts.findPublished();
        expect(after.map((p) => p.title)).to.deep.equal(expected);
        expect(selectCount(app.dataSource), "the read after the write ran SQL").to.be.greaterThan(
          selects,
        );
        await warm(app, () => posts.findPublished());
      }
    });

    it("counts hits, misses and sets, and emits hit and miss, as over Redis", async () => {
      const events: string[] = [];
      const onHit = () => events.push("hit");
      const onMiss = () => events.push("miss");
      app.cache.on("hit", onHit).on("miss", onMiss);
      try {
        const before = app.cache.stats();
        await warm(app, () => posts.findAll());
        const after = app.cache.stats();
        expect(after.hits - before.hits).to.equal(1);
        expect(after.misses - before.misses).to.be.at.least(1);
        expect(after.sets - before.sets).to.be.at.least(1);
        expect(events.filter((e) => e === "hit")).to.have.length(1);
        expect(events.filter((e) => e === "miss")).to.have.length(after.misses - before.misses);
        expect(after.errors - before.errors, "no store call failed").to.equal(0);
      } finally {
        app.cache.off("hit", onHit).off("miss", onMiss);
      }
    });

    it("keeps get, set, delete, wrap with dependsOn, and clear working", async () => {
      expect(await app.cache.set("k", { n: 1 })).to.equal(true);
      expect(await app.cache.get("k")).to.deep.equal({ n: 1 });
      await app.cache.delete("k");
      expect(await app.cache.get("k")).to.equal(undefined);

      let computed = 0;
      const count = () => app.cache.wrap("count", async () => ++computed, { dependsOn: [Post] });
      await count();
      await count();
      // A call returns before its entry is written; a store with a pool may answer the next
      // lookup on another connection first.
      await app.cache.settled();
      const settled = computed;
      expect(await count(), "served from the store").to.equal(settled);
      await app.cache.invalidate(Post);
      expect(await count(), "recomputed after invalidate").to.equal(settled + 1);

      await app.cache.set("kept", "value");
      await app.cache.clear();
      expect(await app.cache.get("kept"), "gone after clear").to.equal(undefined);
      expect(await app.cache.set("kept", "again")).to.equal(true);
      expect(await app.cache.get("kept")).to.equal("again");
    });

    it("refuses the in-process tier, which needs a store that can follow other processes' bumps", () => {
      expect(
        () =>
          new QueryCache({
            dataSource: app.dataSource,
            store,
            namespace: `${ns}x`,
            local: { maxBytes: 1 << 20 },
          }),
      ).to.throw(InvalidOptionError, /follow/);
    });
  });
}

export { expectClean } from "../freshness/verdict";

export function summary(what: string, report: FreshnessReport): string {
  return (
    `${what}: ${report.ops} ops, hit ratio ${report.hitRatio.toFixed(3)}, stale reads ${report.stale.length}, ` +
    `dirty reads ${report.dirty.length}, ${report.storeErrors} store errors, ${report.seconds.toFixed(1)} s`
  );
}

/** Operations the workload has finished so far (the seed is a recorded write, not an operation). */
export function opsDone(env: {
  recorder: {
    reads: unknown[];
    readErrors: unknown[];
    readDatabaseErrors: unknown[];
    writes: unknown[];
  };
}): number {
  const r = env.recorder;
  return r.reads.length + r.readErrors.length + r.readDatabaseErrors.length + r.writes.length - 1;
}

export async function until(
  what: string,
  condition: () => boolean,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
