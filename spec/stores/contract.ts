import { expect } from "chai";
import type { CacheStore, FollowHandlers, KeySpace, StoreEntry } from "../../lib";
import { KeyLayout } from "../../lib/keys/key-layout";
import { uniqueNamespace } from "../support/fixture";
import { until } from "../support/wait";

/** A store under test, and what the contract needs to reach behind it. */
export interface StoreDriver {
  readonly store: CacheStore;
  /**
   * Deletes a version key behind the store's back, as eviction or a restart does. Stores whose
   * versions cannot be lost (a MemoryStore's live as long as the process) leave it out.
   */
  loseVersion?(versionKey: string): Promise<void>;
  close(): Promise<void>;
}

/** A namespace's keys, laid out as the cache lays them out (versions and clock in one cluster slot). */
function space(): KeyLayout & KeySpace {
  return new KeyLayout(uniqueNamespace(), { database: "db", scope: "db.public" });
}

/**
 * What every CacheStore must do, whatever it keeps entries in (lib/stores/store.ts says it in
 * words; this says it in checks). Each store's spec runs it, as bentocache and keyv run one suite
 * for all their drivers. What set() answers for a dependency that has no version yet is left to
 * each store; that such an entry is never served stale is not.
 */
export function storeContract(name: string, open: () => Promise<StoreDriver>): void {
  describe(`store contract: ${name}`, function () {
    this.timeout(30_000);
    let driver: StoreDriver;
    let store: CacheStore;
    let keys: KeyLayout;
    let post: string;
    let author: string;
    let serial = 0;

    before(async () => {
      driver = await open();
      store = driver.store;
    });
    after(() => driver?.close());
    beforeEach(() => {
      keys = space();
      post = keys.version("public.post");
      author = keys.version("public.author");
    });

    const entryKey = () => keys.user(`entry-${++serial}`);
    const entry = (
      key: string,
      stamp: number,
      deps: readonly string[] = [keys.everything, post],
      value = `value of ${key}`,
    ): StoreEntry => ({
      key,
      value,
      deps,
      stamp,
      ttlSeconds: 60,
    });

    /** Stores an entry stamped now, after its dependencies' versions: it must be stored and served. */
    async function put(
      deps: readonly string[] = [keys.everything, post],
      value?: string,
    ): Promise<StoreEntry> {
      const written = entry(entryKey(), await store.stamp(keys.clockKey), deps, value);
      expect(
        await store.set(written, keys.clockKey),
        "an entry stamped after its versions is stored",
      ).to.equal(true);
      return written;
    }

    /** Gives the dependencies versions, then puts an entry. */
    async function stored(
      deps: readonly string[] = [keys.everything, post],
      value?: string,
    ): Promise<StoreEntry> {
      await store.bump(deps, keys.clockKey);
      return put(deps, value);
    }

    async function expectHit(written: StoreEntry, why?: string): Promise<void> {
      const found = await store.lookup(written.key, keys.clockKey);
      expect(found, why).to.deep.equal({ hit: true, value: written.value, deps: written.deps });
    }

    async function expectMiss(key: string, why?: string): Promise<number> {
      const found = await store.lookup(key, keys.clockKey);
      expect(found.hit, why).to.equal(false);
      return (found as { stamp: number }).stamp;
    }

    it("is available once connected", () => {
      expect(store.available).to.equal(true);
    });

    it("a lookup of an absent key is a miss that carries the current stamp", async () => {
      const stamp = await expectMiss(entryKey());
      expect(stamp).to.be.a("number");
      expect(stamp).to.equal(await store.stamp(keys.clockKey));
    });

    it("serves an entry as it was stored: value and dependencies, byte for byte", async () => {
      const unicode = await stored([keys.everything, post, author], 'é ✓ \n \u0000 {"json": [1]}');
      await expectHit(unicode);
    });

    it("versions only move forward: every bump moves past every stamp handed out before it", async () => {
      let last = await store.stamp(keys.clockKey);
      for (let i = 0; i < 5; i++) {
        await store.bump([post], keys.clockKey);
        const next = await store.stamp(keys.clockKey);
        expect(next, `stamp after bump ${i + 1}`).to.be.greaterThan(last);
        last = next;
      }
    });

    it("never serves an entry whose dependency was bumped after it was stored", async () => {
      const written = await stored([keys.everything, post, author]);
      await store.bump([author], keys.clockKey);
      const stamp = await expectMiss(written.key, "a dependency moved past the entry's stamp");
      expect(stamp, "the miss's stamp is at or after the bump").to.equal(
        await store.stamp(keys.clockKey),
      );
      await expectMiss(written.key, "and it stays a miss");
    });

    it("never serves a set whose dependency was bumped after its stamp was taken (no stale set)", async () => {
      await store.bump([keys.everything, post], keys.clockKey);
      const stamp = await store.stamp(keys.clockKey);
      await store.bump([post], keys.clockKey); // a write commits while the value is being computed
      const late = entry(entryKey(), stamp);
      const accepted = await store.set(late, keys.clockKey);
      await expectMiss(late.key, `set answered ${accepted}, but the entry is outdated`);
    });

    it("a bump of one dependency leaves the entries that do not depend on it", async () => {
      await store.bump([keys.everything, post, author], keys.clockKey);
      const onPost = await put([keys.everything, post]);
      const onAuthor = await put([keys.everything, author]);
      await store.bump([post], keys.clockKey);
      await expectMiss(onPost.key);
      await expectHit(onAuthor);
    });

    it("an entry stamped before a bump is refused however late it arrives, and one stamped after it is served", async () => {
      const old = await stored();
      await store.bump([post], keys.clockKey);
      expect(
        await store.set(
          entry(old.key, old.stamp, old.deps, "recomputed from before"),
          keys.clockKey,
        ),
        "re-stored with its old stamp",
      ).to.be.a("boolean");
      await expectMiss(old.key);
      const fresh = entry(old.key, await store.stamp(keys.clockKey), old.deps, "recomputed");
      expect(await store.set(fresh, keys.clockKey)).to.equal(true);
      await expectHit(fresh);
    });

    it("treats a version missing at read time as moved: the entry is a miss", async function () {
      if (!driver.loseVersion) this.skip();
      const written = await stored([keys.everything, post]);
      await driver.loseVersion!(post);
      await expectMiss(written.key, "its version is gone, so a write may have been lost with it");
    });

    it("delete removes one entry and no other", async () => {
      await store.bump([keys.everything, post], keys.clockKey);
      const gone = await put();
      const kept = await put();
      await store.delete(gone.key);
      await expectMiss(gone.key);
      await expectHit(kept);
      await store.delete(entryKey()); // absent: no error
    });

    it("an entry lives for its ttl", async () => {
      await store.bump([keys.everything, post], keys.clockKey);
      const short = { ...entry(entryKey(), await store.stamp(keys.clockKey)), ttlSeconds: 1 };
      expect(await store.set(short, keys.clockKey)).to.equal(true);
      await until(
        "the entry expired",
        async () => !(await store.lookup(short.key, keys.clockKey)).hit,
        10_000,
        100,
      );
    });

    it("clear empties its namespace, refuses what was computed before it, and leaves other namespaces alone", async () => {
      const mine = await stored();
      const before = await store.stamp(keys.clockKey);
      const other = keys;
      keys = space();
      post = keys.version("public.post");
      const ours = await stored();
      const computing = entry(keys.user("computed-before-clear"), await store.stamp(keys.clockKey));

      await store.clear(keys);
      await expectMiss(ours.key, "this namespace's entry");
      await store.set(computing, keys.clockKey);
      await expectMiss(computing.key, "a value computed before clear() and stored after it");

      keys = other;
      await expectHit(mine, "another namespace's entry");
      expect(await store.stamp(keys.clockKey), "another namespace's clock").to.equal(before);
    });

    describe("following invalidations (stores that can)", () => {
      /** Follows a channel until closed, recording what arrives. */
      async function follower(channel: string) {
        const seen: string[][] = [];
        const states: boolean[] = [];
        const handlers: FollowHandlers = {
          invalidated: (bumped) => seen.push(bumped),
          state: (live) => states.push(live),
        };
        const handle = store.follow!(channel, handlers);
        await until("the follower is live", () => states.at(-1) === true);
        return { seen, states, handle };
      }

      beforeEach(function () {
        if (!store.follow) this.skip();
      });

      it("bump announces the bumped version keys on the channel it is given", async () => {
        const { seen, handle } = await follower(keys.channel);
        try {
          await store.bump([post, author], keys.clockKey, keys.channel);
          await until("the bump was announced", () => seen.length > 0);
          expect(seen[0]).to.deep.equal([post, author]);
        } finally {
          await handle.close();
        }
      });

      it("clear announces the versions it bumps, so other processes' tiers empty too", async () => {
        await stored([keys.everything, post]);
        const { seen, handle } = await follower(keys.channel);
        try {
          await store.clear(keys);
          await until("the clear was announced", () => seen.flat().includes(post));
        } finally {
          await handle.close();
        }
      });

      it("reports that it stopped following once closed", async () => {
        const { states, handle } = await follower(keys.channel);
        await handle.close();
        expect(states.at(-1)).to.equal(false);
      });
    });
  });
}
