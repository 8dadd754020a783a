import { expect } from "chai";
import type { MemjsClient } from "../../lib";
import { InvalidOptionError, MemcachedStore } from "../../lib";
import { runFreshness } from "../freshness/harness";
import { uniqueNamespace } from "../support/fixture";
import { MemcachedProcess } from "../support/memcached-process";
import { describeThroughQueryCache, expectClean, opsDone, summary, until } from "./backend-checks";

/** Short, so that calls to a server that is gone give up quickly and the runs stay short. */
const CACHE = { storeTimeout: 200 };
/** npm test runs short freshness runs; SOAK_OPS=20000 runs the long one too. */
const SOAK_OPS = Number(process.env.SOAK_OPS ?? 0);

/** memjs ships no types; the spec uses its client's promise API. */
const memjs: {
  Client: { create(servers: string, options: object): unknown };
  Utils: { hashCode(key: string): number };
} = require("memjs");

interface RawClient {
  get(key: string): Promise<{ value: Buffer | null }>;
  set(key: string, value: string, options: { expires?: number }): Promise<boolean>;
  delete(key: string): Promise<boolean>;
  quit(): void;
}

describe("MemcachedStore: the version protocol over Memcached, and what it keeps through evictions and restarts", function () {
  this.timeout(120_000);
  let server: MemcachedProcess;
  const stores: MemcachedStore[] = [];
  const raws: RawClient[] = [];
  const servers: MemcachedProcess[] = [];

  const open = (...on: MemcachedProcess[]) => {
    const store = new MemcachedStore({ servers: on.map((s) => s.address) });
    stores.push(store);
    return store;
  };
  /** A plain memjs client beside the store, to evict keys and read them as Memcached holds them. */
  const raw = (on: MemcachedProcess): RawClient => {
    const client = memjs.Client.create(on.address, {
      logger: { log: () => undefined },
      retries: 1,
    }) as unknown as RawClient;
    raws.push(client);
    return client;
  };
  const startServer = async () => {
    const started = await MemcachedProcess.start();
    servers.push(started);
    return started;
  };

  before(async () => {
    server = await startServer();
  });
  after(async () => {
    for (const store of stores) await store.close();
    for (const client of raws) client.quit();
    for (const s of servers) await s.kill();
  });

  function keys() {
    const ns = uniqueNamespace();
    const v = `${ns}:{${ns}:v}:`;
    return {
      clock: `${v}clock`,
      a: `${v}db:public.a`,
      b: `${v}db:public.b`,
      entry: (n = "k") => `${ns}:e:db:k:${n}`,
    };
  }

  /** Stores an entry of these versions, retrying once: a version's first use creates it and refuses. */
  async function stored(
    store: MemcachedStore,
    clock: string,
    key: string,
    deps: string[],
    value = "v",
  ): Promise<number> {
    for (let i = 0; i < 2; i++) {
      const stamp = await store.stamp(clock);
      if (await store.set({ key, value, deps, stamp, ttlSeconds: 60 }, clock)) return stamp;
    }
    throw new Error("the entry was refused twice");
  }

  describe("the store interface, directly", () => {
    it("refuses an entry whose version is missing, creates that version above every stamp, and admits the next computation", async () => {
      const store = open(server);
      const k = keys();
      const before = await store.stamp(k.clock);
      expect(
        await store.set(
          { key: k.entry(), value: "v", deps: [k.a], stamp: before, ttlSeconds: 60 },
          k.clock,
        ),
      ).to.equal(false);
      expect(
        (await store.lookup(k.entry(), k.clock)).hit,
        "refused entries are never served",
      ).to.equal(false);
      const version = Number((await raw(server).get(k.a)).value);
      expect(version).to.be.greaterThan(before);
      const stamp = await store.stamp(k.clock);
      expect(stamp).to.be.at.least(version);
      expect(
        await store.set(
          { key: k.entry(), value: "v", deps: [k.a], stamp, ttlSeconds: 60 },
          k.clock,
        ),
      ).to.equal(true);
      expect(await store.lookup(k.entry(), k.clock)).to.deep.equal({
        hit: true,
        value: "v",
        deps: [k.a],
      });
    });

    it("never serves a value computed before a bump, whether it reaches Memcached before or after the bump (invariant 2)", async () => {
      const store = open(server);
      const k = keys();
      await stored(store, k.clock, k.entry("first"), [k.a]);
      const staleStamp = await store.stamp(k.clock);
      await store.bump([k.a], k.clock);
      expect(
        (await store.lookup(k.entry("first"), k.clock)).hit,
        "stored before the bump",
      ).to.equal(false);
      expect(
        await store.set(
          { key: k.entry("late"), value: "old", deps: [k.a], stamp: staleStamp, ttlSeconds: 60 },
          k.clock,
        ),
      ).to.equal(false);
      expect((await store.lookup(k.entry("late"), k.clock)).hit, "stored after the bump").to.equal(
        false,
      );
    });

    it("never moves a version backwards, alone or under concurrent bumps from two clients", async () => {
      const k = keys();
      const [one, two] = [open(server), open(server)];
      const memcached = raw(server);
      await stored(one, k.clock, k.entry(), [k.a]);
      await Promise.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 ? one : two).bump([k.a, k.b], k.clock)),
      );
      const clock = String((await memcached.get(k.clock)).value);
      expect(
        String((await memcached.get(k.a)).value),
        "the last bump's version stayed, not an earlier racing one",
      ).to.equal(clock);
      expect(String((await memcached.get(k.b)).value)).to.equal(clock);

      const ahead = String(BigInt(clock) + 1_000_000_000n);
      await memcached.set(k.a, ahead, { expires: 0 });
      await one.bump([k.a], k.clock);
      expect(
        String((await memcached.get(k.a)).value),
        "a bump to a lower value leaves a higher version alone",
      ).to.equal(ahead);
    });

    it("serves nothing stale whichever key Memcached evicts: the entry, a version, the clock or the cleared mark", async () => {
      const store = open(server);
      const memcached = raw(server);
      const k = keys();
      await stored(store, k.clock, k.entry(), [k.a, k.b]);
      expect((await store.lookup(k.entry(), k.clock)).hit).to.equal(true);

      await memcached.delete(k.b);
      expect(
        (await store.lookup(k.entry(), k.clock)).hit,
        "a missing version counts as newer",
      ).to.equal(false);

      const oldStamp = await stored(store, k.clock, k.entry(), [k.a, k.b]);
      await memcached.delete(k.clock);
      expect(
        (await store.lookup(k.entry(), k.clock)).hit,
        "nothing was written: the entry stays good",
      ).to.equal(true);
      await store.bump([k.a], k.clock);
      expect(
        Number((await memcached.get(k.clock)).value),
        "the clock comes back above the stamps it handed out",
      ).to.be.greaterThan(oldStamp);
      expect((await store.lookup(k.entry(), k.clock)).hit).to.equal(false);
      expect(
        await store.set(
          { key: k.entry(), value: "old", deps: [k.a, k.b], stamp: oldStamp, ttlSeconds: 60 },
          k.clock,
        ),
      ).to.equal(false);

      await stored(store, k.clock, k.entry(), [k.a, k.b]);
      await memcached.delete(`${k.clock}:cleared`);
      expect(
        (await store.lookup(k.entry(), k.clock)).hit,
        "the namespace's cleared mark is a version like the others",
      ).to.equal(false);

      await stored(store, k.clock, k.entry(), [k.a, k.b]);
      await memcached.delete(k.entry());
      expect((await store.lookup(k.entry(), k.clock)).hit).to.equal(false);
    });

    it("serves no old entry after Memcached restarts empty, and refuses values stamped before the restart", async () => {
      const own = await startServer();
      const store = open(own);
      const k = keys();
      const oldStamp = await stored(store, k.clock, k.entry(), [k.a]);
      await own.kill();
      await own.start();
      const lookup = await store.lookup(k.entry(), k.clock);
      expect(lookup.hit).to.equal(false);
      expect(
        await store.set(
          { key: k.entry(), value: "old", deps: [k.a], stamp: oldStamp, ttlSeconds: 60 },
          k.clock,
        ),
      ).to.equal(false);
      expect(
        await store.stamp(k.clock),
        "the new clock starts above the stamps the lost one handed out",
      ).to.be.greaterThan(oldStamp);
      await stored(store, k.clock, k.entry(), [k.a]);
      expect((await store.lookup(k.entry(), k.clock)).hit).to.equal(true);
      await own.kill();
    });

    it("spreads keys over two servers, and when one is lost fails the calls that touch it and serves the others", async () => {
      const servers = [await startServer(), await startServer()];
      const store = open(...servers);
      // memjs picks a key's server by its hash, modulo the number of servers.
      const serverOf = (key: string) => memjs.Utils.hashCode(key) % 2;
      let k = keys();
      while (serverOf(k.clock) !== serverOf(`${k.clock}:cleared`)) k = keys();
      const kept = serverOf(k.clock);
      const onKept = (key: string) => serverOf(key) === kept;
      // Tables and entries picked by where the hash puts them, so that each case below has some.
      const entryOf = new Map<string, string>();
      const [served, versionLost, entryLost]: string[][] = [[], [], []];
      for (let i = 0; [served, versionLost, entryLost].some((list) => list.length < 3); i++) {
        if (i > 10_000) throw new Error("the hash never put keys in every case");
        const table = `${k.a}${i}`;
        entryOf.set(table, k.entry(`${table}#${i * 7}`));
        const list = !onKept(table)
          ? versionLost
          : onKept(entryOf.get(table)!)
            ? served
            : entryLost;
        if (list.length < 3) list.push(table);
      }
      for (const table of [...served, ...versionLost, ...entryLost])
        await stored(store, k.clock, entryOf.get(table)!, [table]);

      await servers[1 - kept].kill();
      await expectRejected(
        store.bump([versionLost[0]], k.clock),
        "a bump of a version on the lost server",
      );
      for (const t of [...versionLost, ...entryLost])
        await expectRejected(
          store.lookup(entryOf.get(t)!, k.clock),
          `a lookup touching the lost server (${t})`,
        );
      for (const t of served)
        expect(
          (await store.lookup(entryOf.get(t)!, k.clock)).hit,
          `${t}: every key on the server kept`,
        ).to.equal(true);
      await store.bump([served[0]], k.clock);
      expect(
        (await store.lookup(entryOf.get(served[0])!, k.clock)).hit,
        "bumped on the server kept",
      ).to.equal(false);
    });

    it("hashes keys longer than Memcached allows without letting two share an item, and declines values over its item size", async () => {
      const store = open(server);
      const k = keys();
      const long = (c: string) => k.entry(`${"x".repeat(300)}${c}`);
      await stored(store, k.clock, long("1"), [k.a], "one");
      await stored(store, k.clock, long("2"), [k.a], "two");
      expect(await store.lookup(long("1"), k.clock)).to.include({ hit: true, value: "one" });
      expect(await store.lookup(long("2"), k.clock)).to.include({ hit: true, value: "two" });
      const stamp = await store.stamp(k.clock);
      expect(
        await store.set(
          {
            key: k.entry("big"),
            value: "x".repeat(2 * 1024 * 1024),
            deps: [k.a],
            stamp,
            ttlSeconds: 60,
          },
          k.clock,
        ),
      ).to.equal(false);
    });

    it("keeps answering past a client's 2^31st request, where memjs's own request numbers overflow", async () => {
      const client = memjs.Client.create(server.address, {
        logger: { log: () => undefined },
      }) as MemjsClient;
      client.seq = 2 ** 31 - 3;
      const store = new MemcachedStore(client);
      const k = keys();
      try {
        await stored(store, k.clock, k.entry(), [k.a]);
        expect((await store.lookup(k.entry(), k.clock)).hit).to.equal(true);
        expect(client.seq).to.be.below(2 ** 31);
      } finally {
        client.quit();
      }
    });

    it("refuses a memjs client that fails over to another server, and needs at least one server", () => {
      const client = memjs.Client.create(server.address, {
        failover: true,
      }) as unknown as MemjsClient;
      expect(() => new MemcachedStore(client)).to.throw(InvalidOptionError, /failover: false/);
      expect(() => new MemcachedStore({ servers: [] })).to.throw(
        InvalidOptionError,
        /at least one/,
      );
    });
  });

  describeThroughQueryCache(async () => open(server));

  describe("the freshness checker over two instances sharing Memcached", () => {
    const factory =
      (...on: MemcachedProcess[]) =>
      () =>
        open(...on);

    it("finds no stale and no dirty read in 600 concurrent reads and writes over every path", async () => {
      const report = await runFreshness({
        ops: 600,
        seed: 31,
        workers: 8,
        store: factory(server),
        cache: CACHE,
      });
      console.log(summary("freshness over Memcached", report));
      expectClean(report);
      expect(report.hitRatio).to.be.greaterThan(0);
    });

    it("finds none when Memcached is killed mid-run, stays down for a second and comes back empty", async () => {
      const own = await startServer();
      let down = 0;
      const report = await runFreshness({
        ops: 1000,
        seed: 32,
        workers: 8,
        store: factory(own),
        cache: CACHE,
        during: async (env) => {
          await until("a third of the run is done", () => opsDone(env) >= 300);
          await own.kill();
          const struck = opsDone(env);
          await new Promise((resolve) => setTimeout(resolve, 1000));
          down = opsDone(env) - struck;
          await own.start();
        },
      });
      console.log(
        summary("freshness through a Memcached kill", report),
        `; ${down} ops while it was down`,
      );
      expectClean(report);
      expect(down, "operations ran while Memcached was down").to.be.greaterThan(0);
      expect(report.storeErrors, "the outage was seen").to.be.greaterThan(0);
      await own.kill();
    });

    it("finds none when one of two Memcached servers is lost mid-run for good", async () => {
      const [first, second] = [await startServer(), await startServer()];
      const report = await runFreshness({
        ops: 1000,
        seed: 33,
        workers: 8,
        store: factory(first, second),
        cache: CACHE,
        during: async (env) => {
          await until("a third of the run is done", () => opsDone(env) >= 300);
          await second.kill();
        },
      });
      console.log(summary("freshness through the loss of one of two Memcached servers", report));
      expectClean(report);
      expect(report.storeErrors, "the loss was seen").to.be.greaterThan(0);
      await first.kill();
    });

    (SOAK_OPS > 0 ? it : it.skip)(
      `soak (SOAK_OPS=${SOAK_OPS || "N"}): finds none in a long run`,
      async function () {
        this.timeout(0);
        const report = await runFreshness({
          ops: SOAK_OPS,
          seed: 34,
          workers: 8,
          store: factory(server),
          cache: CACHE,
        });
        console.log(summary("soak over Memcached", report));
        expectClean(report);
      },
    );
  });
});

async function expectRejected(promise: Promise<unknown>, what: string): Promise<void> {
  const outcome = await Promise.allSettled([promise]);
  expect(outcome[0].status, `${what} fails`).to.equal("rejected");
}
