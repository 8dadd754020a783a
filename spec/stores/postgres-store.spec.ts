import { randomUUID } from "node:crypto";
import { expect } from "chai";
import { Pool } from "pg";
import { getServices } from "../../example/services";
import { InvalidOptionError, PostgresStore } from "../../lib";
import { runFreshness } from "../freshness/harness";
import { uniqueNamespace } from "../support/fixture";
import { describeThroughQueryCache, expectClean, opsDone, summary, until } from "./backend-checks";

const CACHE = { storeTimeout: 200 };
/** npm test runs short freshness runs; SOAK_OPS=20000 runs the long one too. */
const SOAK_OPS = Number(process.env.SOAK_OPS ?? 0);

describe("PostgresStore: the version protocol in UNLOGGED tables, and what it keeps through a TRUNCATE", function () {
  this.timeout(120_000);
  let admin: Pool;
  let connectionString: string;
  const schemas: string[] = [];
  const stores: PostgresStore[] = [];

  const newSchema = () => {
    const schema = `ac_store_${randomUUID().slice(0, 8)}`;
    schemas.push(schema);
    return schema;
  };
  const open = (schema: string, extra: { pool?: Pool; cleanupInterval?: number } = {}) => {
    const store = new PostgresStore({
      schema,
      ...(extra.pool ? { pool: extra.pool } : { connectionString }),
      cleanupInterval: extra.cleanupInterval,
    });
    stores.push(store);
    return store;
  };

  before(async () => {
    connectionString = (await getServices()).pgUrl;
    admin = new Pool({ connectionString, max: 2 });
  });
  // Each test closes the pools it opened: the server's connections are shared with other suites.
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
  });
  after(async () => {
    for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  });

  function keys() {
    const ns = uniqueNamespace();
    const v = `${ns}:{${ns}:v}:`;
    return {
      ns,
      clock: `${v}clock`,
      a: `${v}db:public.a`,
      b: `${v}db:public.b`,
      entry: (n = "k") => `${ns}:e:db:k:${n}`,
    };
  }

  async function stored(
    store: PostgresStore,
    clock: string,
    key: string,
    deps: string[],
    ttlSeconds = 60,
  ): Promise<number> {
    for (let i = 0; i < 2; i++) {
      const stamp = await store.stamp(clock);
      if (await store.set({ key, value: "v", deps, stamp, ttlSeconds }, clock)) return stamp;
    }
    throw new Error("the entry was refused twice");
  }

  const version = async (schema: string, key: string) =>
    (await admin.query(`SELECT version FROM "${schema}".autocache_versions WHERE key = $1`, [key]))
      .rows[0]?.version as string | undefined;

  describe("the store interface, directly", () => {
    it("creates its schema and UNLOGGED tables on first use, once, however many instances start together", async () => {
      const schema = newSchema();
      const k = keys();
      await Promise.all(
        [open(schema), open(schema), open(schema)].map((store) => store.stamp(k.clock)),
      );
      const { rows } = await admin.query(
        `SELECT c.relname, c.relpersistence FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY 1`,
        [schema],
      );
      expect(rows).to.deep.equal([
        { relname: "autocache_entries", relpersistence: "u" },
        { relname: "autocache_versions", relpersistence: "u" },
      ]);
    });

    it("refuses an entry whose version is missing, creates that version above every stamp, and admits the next computation", async () => {
      const schema = newSchema();
      const store = open(schema);
      const k = keys();
      const before = await store.stamp(k.clock);
      expect(
        await store.set(
          { key: k.entry(), value: "v", deps: [k.a], stamp: before, ttlSeconds: 60 },
          k.clock,
        ),
      ).to.equal(false);
      expect((await store.lookup(k.entry(), k.clock)).hit).to.equal(false);
      expect(Number(await version(schema, k.a))).to.be.greaterThan(before);
      const stamp = await store.stamp(k.clock);
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

    it("serves a hit in one statement on its own pool", async () => {
      const schema = newSchema();
      const pool = new Pool({ connectionString, max: 2 });
      let statements = 0;
      const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
      (pool as unknown as { query: (...args: unknown[]) => unknown }).query = (
        ...args: unknown[]
      ) => {
        statements++;
        return query(...args);
      };
      const store = open(schema, { pool });
      const k = keys();
      try {
        await stored(store, k.clock, k.entry(), [k.a, k.b]);
        statements = 0;
        expect((await store.lookup(k.entry(), k.clock)).hit).to.equal(true);
        expect(statements, "statements for one hit").to.equal(1);
      } finally {
        await store.close();
        await pool.end();
      }
    });

    it("never serves a value computed before a bump, whether it was stored before or after the bump (invariant 2)", async () => {
      const store = open(newSchema());
      const k = keys();
      await stored(store, k.clock, k.entry("first"), [k.a]);
      const staleStamp = await store.stamp(k.clock);
      await store.bump([k.a], k.clock);
      expect((await store.lookup(k.entry("first"), k.clock)).hit).to.equal(false);
      expect(
        await store.set(
          { key: k.entry("late"), value: "old", deps: [k.a], stamp: staleStamp, ttlSeconds: 60 },
          k.clock,
        ),
      ).to.equal(false);
      expect((await store.lookup(k.entry("late"), k.clock)).hit).to.equal(false);
    });

    it("never moves a version backwards, alone or under concurrent bumps from two instances", async () => {
      const schema = newSchema();
      const [one, two] = [open(schema), open(schema)];
      const k = keys();
      await stored(one, k.clock, k.entry(), [k.a]);
      await Promise.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 ? one : two).bump([k.b, k.a], k.clock)),
      );
      const clock = await version(schema, k.clock);
      expect(await version(schema, k.a)).to.equal(clock);
      expect(await version(schema, k.b)).to.equal(clock);
      const ahead = String(BigInt(clock!) + 1_000_000_000n);
      await admin.query(`UPDATE "${schema}".autocache_versions SET version = $2 WHERE key = $1`, [
        k.a,
        ahead,
      ]);
      await one.bump([k.a], k.clock);
      expect(
        await version(schema, k.a),
        "a bump to a lower value leaves a higher version alone",
      ).to.equal(ahead);
    });

    it("serves no old entry after its tables are truncated, and refuses values stamped before", async () => {
      const schema = newSchema();
      const store = open(schema);
      const k = keys();
      for (const tables of ["autocache_versions", "autocache_entries, autocache_versions"]) {
        const oldStamp = await stored(store, k.clock, k.entry(), [k.a]);
        expect((await store.lookup(k.entry(), k.clock)).hit).to.equal(true);
        await admin.query(
          `TRUNCATE ${tables
            .split(", ")
            .map((t) => `"${schema}".${t}`)
            .join(", ")}`,
        );
        expect((await store.lookup(k.entry(), k.clock)).hit, `after TRUNCATE ${tables}`).to.equal(
          false,
        );
        expect(
          await store.set(
            { key: k.entry(), value: "old", deps: [k.a], stamp: oldStamp, ttlSeconds: 60 },
            k.clock,
          ),
        ).to.equal(false);
        expect(
          await store.stamp(k.clock),
          "the clock comes back above the stamps it handed out",
        ).to.be.greaterThan(oldStamp);
      }
    });

    it("creates its tables again when they are dropped under it", async () => {
      const schema = newSchema();
      const store = open(schema);
      const k = keys();
      await stored(store, k.clock, k.entry(), [k.a]);
      await admin.query(`DROP TABLE "${schema}".autocache_entries, "${schema}".autocache_versions`);
      expect((await store.lookup(k.entry(), k.clock)).hit).to.equal(false);
      await stored(store, k.clock, k.entry(), [k.a]);
      expect((await store.lookup(k.entry(), k.clock)).hit).to.equal(true);
    });

    it("deletes expired entries when it reads them, and sweeps the others on a timer of its own", async () => {
      const schema = newSchema();
      const store = open(schema, { cleanupInterval: 100 });
      const k = keys();
      await stored(store, k.clock, k.entry("read"), [k.a], 1);
      await stored(store, k.clock, k.entry("unread"), [k.a], 1);
      await stored(store, k.clock, k.entry("live"), [k.a], 600);
      await admin.query(
        `UPDATE "${schema}".autocache_entries SET expires_at = now() - interval '1 second' WHERE expires_at < now() + interval '1 minute'`,
      );
      expect((await store.lookup(k.entry("read"), k.clock)).hit).to.equal(false);
      const left = async () =>
        (await admin.query(`SELECT key FROM "${schema}".autocache_entries ORDER BY key`)).rows.map(
          (r) => r.key,
        );
      const deadline = Date.now() + 30_000;
      while ((await left()).length > 1 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await left()).to.deep.equal([k.entry("live")]);
    });

    it("clears one namespace's entries, and refuses values computed before the clear", async () => {
      const schema = newSchema();
      const store = open(schema);
      const [k, other] = [keys(), keys()];
      await stored(store, k.clock, k.entry(), [k.a]);
      await stored(store, other.clock, other.entry(), [other.a]);
      const before = await store.stamp(k.clock);
      await store.clear({
        clockKey: k.clock,
        entryPrefix: `${k.ns}:e:`,
        versionPrefix: `${k.ns}:{${k.ns}:v}:`,
        channel: `${k.ns}:invalidations`,
      });
      expect((await store.lookup(k.entry(), k.clock)).hit).to.equal(false);
      expect(
        await store.set(
          { key: k.entry(), value: "old", deps: [k.a], stamp: before, ttlSeconds: 60 },
          k.clock,
        ),
      ).to.equal(false);
      expect(
        (await store.lookup(other.entry(), other.clock)).hit,
        "another namespace keeps its entries",
      ).to.equal(true);
    });

    it("reports a missing schema or connection where the store is made", () => {
      expect(() => new PostgresStore({ schema: "", connectionString })).to.throw(
        InvalidOptionError,
        /schema/,
      );
      expect(() => new PostgresStore({ schema: "x" })).to.throw(
        InvalidOptionError,
        /pool|connectionString/,
      );
    });
  });

  // Not one of `stores`: the shared checks keep it across their tests and close it themselves.
  describeThroughQueryCache(
    async () => new PostgresStore({ schema: newSchema(), connectionString }),
  );

  describe("the freshness checker over two instances sharing one PostgresStore schema", () => {
    it("finds no stale and no dirty read in 600 concurrent reads and writes over every path", async () => {
      const schema = newSchema();
      const report = await runFreshness({
        ops: 600,
        seed: 41,
        workers: 8,
        store: () => open(schema),
        cache: CACHE,
      });
      console.log(summary("freshness over PostgreSQL", report));
      expectClean(report);
      expect(report.hitRatio).to.be.greaterThan(0);
    });

    it("finds none when its tables are truncated three times mid-run", async () => {
      const schema = newSchema();
      const ops = 1000;
      let truncated = 0;
      const report = await runFreshness({
        ops,
        seed: 42,
        workers: 8,
        store: () => open(schema),
        cache: CACHE,
        during: async (env) => {
          for (const share of [0.25, 0.5, 0.75]) {
            await until(`${share * 100}% of the run is done`, () => opsDone(env) >= ops * share);
            await admin.query(
              `TRUNCATE "${schema}".autocache_entries, "${schema}".autocache_versions`,
            );
            truncated++;
          }
        },
      });
      console.log(summary("freshness through TRUNCATEs of the PostgresStore tables", report));
      expect(truncated).to.equal(3);
      expectClean(report);
    });

    (SOAK_OPS > 0 ? it : it.skip)(
      `soak (SOAK_OPS=${SOAK_OPS || "N"}): finds none in a long run`,
      async function () {
        this.timeout(0);
        const schema = newSchema();
        const report = await runFreshness({
          ops: SOAK_OPS,
          seed: 43,
          workers: 8,
          store: () => open(schema),
          cache: CACHE,
        });
        console.log(summary("soak over PostgreSQL", report));
        expectClean(report);
      },
    );
  });
});
