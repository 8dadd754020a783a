import { expect } from "chai";
import { InvalidOptionError } from "../lib";
import { refreshesEarly } from "../lib/serialization/freshness";
import { type App, dropNamespace, openApp, uniqueNamespace } from "./support/fixture";
import { repositories } from "./support/repositories";
import { warm } from "./support/warm";

describe("early refresh (XFetch): a hot entry is recomputed before it expires, by one caller", () => {
  it("the odds grow as expiry nears and with the computation's cost", () => {
    const now = 1_000_000;
    const entry = { expiresAt: now + 1000, computeMs: 100 };
    const share = (at: number, beta: number) => {
      let early = 0;
      for (let i = 1; i <= 1000; i++) if (refreshesEarly(entry, beta, at, i / 1001)) early++;
      return early / 1000;
    };
    expect(share(now, 1)).to.be.lessThan(0.001);
    expect(share(now + 900, 1)).to.be.within(0.3, 0.45);
    expect(share(now + 990, 1)).to.be.greaterThan(0.85);
    expect(share(now + 900, 3)).to.be.greaterThan(share(now + 900, 1));
    expect(share(now + 1000, 1)).to.equal(1);
  });

  describe("through the cache", () => {
    const ns = uniqueNamespace();
    let app: App;
    before(async () => {
      app = await openApp(ns, { fresh: true });
      await repositories(app.dataSource).posts.insert({ title: "a" });
    });
    after(async () => {
      await dropNamespace(app.redis, ns);
      await app.close();
    });

    it("an entry due for early refresh is recomputed once per process however many callers hit it", async () => {
      const posts = repositories(app.dataSource).posts;
      let runs = 0;
      const read = (beta: number) =>
        app.cache.wrap(
          `early-${beta}`,
          async () => {
            runs++;
            await new Promise((r) => setTimeout(r, 20));
            return posts.count();
          },
          { ttl: 60, earlyRefresh: { beta } },
        );
      await warm(app, () => read(1e-9));
      runs = 0;
      for (let i = 0; i < 5; i++) await read(1e-9);
      expect(runs, "far from expiry, hits are hits").to.equal(0);

      // A beta this large puts every entry "near expiry": each wave of callers refreshes once.
      await read(1e12);
      await read(1e12);
      await app.cache.settled(); // no flight is under way
      runs = 0;
      const values = await Promise.all(Array.from({ length: 20 }, () => read(1e12)));
      expect(runs).to.equal(1);
      expect(values.every((v) => v === 1)).to.equal(true);
    });

    it("rejects a bad earlyRefresh option (a rejected promise, as every other mistake in a call)", async () => {
      let computed = false;
      const call = app.cache.wrap("bad", () => (computed = true), { earlyRefresh: { beta: -1 } });
      const error = await call.then(
        () => expect.fail("should reject"),
        (e: unknown) => e,
      );
      expect(error)
        .to.be.instanceOf(InvalidOptionError)
        .and.to.match(/earlyRefresh/);
      expect(computed, "nothing ran").to.equal(false);
    });

    it("set() refuses earlyRefresh: a stored value has no computation to run again", async () => {
      const options = { earlyRefresh: true } as Parameters<typeof app.cache.set>[2];
      const error = await app.cache.set("early-set", 1, options).then(
        () => expect.fail("should reject"),
        (e: unknown) => e,
      );
      expect(error).to.be.instanceOf(InvalidOptionError);
      expect((error as Error).message).to.match(/wrap\(key, compute, \{ earlyRefresh \}\)/);
      expect(await app.cache.get("early-set"), "nothing was stored").to.equal(undefined);
    });
  });
});
