import { expect } from "chai";
import { ChangeFeed, ChangeFeedSetupError } from "../lib";
import { Post } from "./support/entities";
import { DeliveryLog, nextEvent, openFeedApp, outsideWrite } from "./support/feed-fixture";
import { type App, dropNamespace, openApp, selectCount, uniqueNamespace } from "./support/fixture";
import { LogicalPostgres } from "./support/logical-postgres";
import { PostRepository } from "./support/repositories";
import { warm } from "./support/warm";

describe("change feed: writes from outside the application invalidate", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace();
  const slot = `feed_${ns}`;
  let pg: LogicalPostgres;
  let app: App;
  let posts: PostRepository;
  let feed: ChangeFeed;
  let log: DeliveryLog;

  before(async () => {
    pg = await LogicalPostgres.start();
    app = await openFeedApp(pg, ns, { fresh: true });
    posts = new PostRepository(Post, app.dataSource.manager);
    feed = new ChangeFeed({ cache: app.cache, connection: pg.config, slot });
    log = new DeliveryLog(feed);
    await feed.start();
  });
  after(async () => {
    await feed?.stop();
    await dropNamespace(app.redis, ns);
    await app?.close();
    await pg?.stop();
  });

  /** Resets the posts past the library, and waits until the feed has delivered that too. */
  beforeEach(async () => {
    const { xid } = await outsideWrite(
      pg,
      `TRUNCATE "${ns}".post CASCADE`,
      `INSERT INTO "${ns}".post (title, published) VALUES ('one', true), ('two', true)`,
    );
    await log.covering(xid);
  });

  const titles = (rows: Post[]) => rows.map((p) => p.title);

  const outside: [string, string[], string[]][] = [
    [
      "INSERT",
      [`INSERT INTO "${ns}".post (title, published) VALUES ('three', true)`],
      ["one", "two", "three"],
    ],
    ["UPDATE", [`UPDATE "${ns}".post SET title = 'uno' WHERE title = 'one'`], ["uno", "two"]],
    ["DELETE", [`DELETE FROM "${ns}".post WHERE title = 'one'`], ["two"]],
    ["TRUNCATE", [`TRUNCATE "${ns}".post CASCADE`], []],
    [
      "COPY FROM",
      [`COPY "${ns}".post (title, published) FROM PROGRAM 'printf "three\\ttrue\\n"'`],
      ["one", "two", "three"],
    ],
  ];
  for (const [what, statements, expected] of outside) {
    it(`${what} by a plain pg client: the cached read is fresh once the feed delivered it`, async () => {
      expect(titles(await warm(app, () => posts.findAll()))).to.deep.equal(["one", "two"]);
      const { xid } = await outsideWrite(pg, ...statements);
      await log.covering(xid);
      const selects = selectCount(app.dataSource);
      expect(titles(await posts.findAll())).to.deep.equal(expected);
      expect(selectCount(app.dataSource), "the stale entry was not served").to.equal(selects + 1);
    });
  }

  it("a write to a partition invalidates reads of its partitioned table", async () => {
    await pg.sql(
      `CREATE TABLE IF NOT EXISTS "${ns}".measure (at int NOT NULL, v int) PARTITION BY RANGE (at)`,
    );
    await pg.sql(
      `CREATE TABLE IF NOT EXISTS "${ns}".measure_low PARTITION OF "${ns}".measure FOR VALUES FROM (0) TO (100)`,
    );
    const total = () =>
      app.cache.wrap("measure-total", async () =>
        Number((await app.dataSource.query(`SELECT count(*) AS n FROM "${ns}".measure`))[0].n),
      );
    const before = await warm(app, total);
    const { xid } = await outsideWrite(pg, `INSERT INTO "${ns}".measure VALUES (1, 1)`);
    const { delivery: delivered } = await log.covering(xid);
    expect(delivered.tables, "the stream names the partition, not its parent").to.include(
      `${ns}.measure_low`,
    );
    expect(await total()).to.equal(before + 1);
  });

  it("a second application with another namespace on the same database: its writes invalidate this one's reads", async () => {
    const other = await openFeedApp(pg, uniqueNamespace(), { schema: ns });
    try {
      expect(titles(await warm(app, () => posts.findAll()))).to.deep.equal(["one", "two"]);
      const xid = await other.dataSource.transaction(async (em) => {
        await em.getRepository(Post).save({ title: "three", published: true });
        return Number(
          (
            await em.query(`SELECT (pg_current_xact_id()::text::bigint % 4294967296)::int8 AS xid`)
          )[0].xid,
        );
      });
      await log.covering(xid);
      expect(titles(await posts.findAll())).to.deep.equal(["one", "two", "three"]);
    } finally {
      await other.close();
    }
  });

  it("without the feed, an outside write leaves the cached read stale (what the feed is for)", async () => {
    const unfed = await openFeedApp(pg, uniqueNamespace(), { schema: ns });
    try {
      const unfedPosts = new PostRepository(Post, unfed.dataSource.manager);
      expect(titles(await warm(unfed, () => unfedPosts.findAll()))).to.deep.equal(["one", "two"]);
      const { xid } = await outsideWrite(
        pg,
        `INSERT INTO "${ns}".post (title, published) VALUES ('three', true)`,
      );
      await log.covering(xid); // committed, and seen by the fed application
      const hits = unfed.cache.stats().hits;
      expect(titles(await unfedPosts.findAll()), "served from the cache, stale").to.deep.equal([
        "one",
        "two",
      ]);
      expect(unfed.cache.stats().hits).to.equal(hits + 1);
    } finally {
      await unfed.close();
    }
  });

  it("resumes from the slot: what was committed while it was stopped is delivered once it starts again", async () => {
    expect(titles(await warm(app, () => posts.findAll()))).to.deep.equal(["one", "two"]);
    await feed.stop();
    const { xid } = await outsideWrite(pg, `DELETE FROM "${ns}".post WHERE title = 'two'`);
    expect(titles(await posts.findAll()), "stopped: nothing invalidates").to.deep.equal([
      "one",
      "two",
    ]);
    await feed.start();
    await log.covering(xid);
    expect(titles(await posts.findAll())).to.deep.equal(["one"]);
  });

  it("reports the slot's lag, and warns past the bound set", async () => {
    const lag = await feed.lag();
    expect(lag?.active).to.equal(true);
    expect(lag?.bytes).to.be.a("number").at.least(0);
    const watcher = new ChangeFeed({
      cache: app.cache,
      connection: pg.config,
      slot,
      lagWarningBytes: 1,
      lagCheckInterval: 50,
      retryInterval: 60_000,
    });
    await watcher.start(); // the slot is held: this one stands by, and still watches the lag
    try {
      // WAL the publication does not carry: the holder confirms past it only at its next keepalive.
      await pg.sql(`SELECT pg_logical_emit_message(false, 'autocache-spec', repeat('x', 100000))`);
      const warned = await nextEvent<{ bytes: number }>(watcher, "lag");
      expect(warned.bytes).to.be.greaterThan(1);
    } finally {
      await watcher.stop();
    }
  });
});

describe("change feed: setup says what to run when it cannot set itself up", function () {
  this.timeout(60_000);
  let pg: LogicalPostgres;
  let app: App;

  before(async () => {
    pg = await LogicalPostgres.start();
    app = await openFeedApp(pg, uniqueNamespace(), { fresh: true });
    await pg.sql(`CREATE ROLE weak LOGIN PASSWORD 'weak'`);
  });
  after(async () => {
    await app?.close();
    await pg?.stop();
  });

  const weak = () => ({ ...pg.config, user: "weak", password: "weak" });
  const failure = (feed: ChangeFeed) =>
    feed.start().then(
      () => {
        throw new Error("start() succeeded");
      },
      (error: Error) => error,
    );

  it("wal_level=replica: the error says to set wal_level=logical", async () => {
    const shared = await openApp(uniqueNamespace());
    try {
      const url = new URL((shared.dataSource.options as { url: string }).url);
      const feed = new ChangeFeed({
        cache: shared.cache,
        connection: { connectionString: url.href },
        slot: "never_created",
      });
      const error = await failure(feed);
      expect(error).to.be.instanceOf(ChangeFeedSetupError);
      expect(error.message)
        .to.match(/wal_level=replica/)
        .and.to.include("ALTER SYSTEM SET wal_level = logical;");
    } finally {
      await shared.close();
    }
  });

  it("a role that may not create what is missing gets the exact SQL, step by step", async () => {
    const feed = () =>
      new ChangeFeed({
        cache: app.cache,
        connection: weak(),
        slot: "weak_slot",
        publication: "weak_pub",
      });
    let error = await failure(feed());
    expect(error).to.be.instanceOf(ChangeFeedSetupError);
    expect((error as ChangeFeedSetupError).sql).to.equal(
      `CREATE PUBLICATION "weak_pub" FOR ALL TABLES;`,
    );
    await pg.sql((error as ChangeFeedSetupError).sql);

    error = await failure(feed());
    expect((error as ChangeFeedSetupError).sql).to.equal(
      `SELECT pg_create_logical_replication_slot('weak_slot', 'pgoutput');`,
    );
    await pg.sql((error as ChangeFeedSetupError).sql);

    error = await failure(feed());
    expect(error.message).to.include(`ALTER ROLE "weak" WITH REPLICATION;`);
    await pg.sql(`ALTER ROLE "weak" WITH REPLICATION`);

    const working = feed();
    await working.start();
    expect(working.isActive).to.equal(true);
    await working.dropSlot();
    expect(
      await pg.sql(`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'weak_slot'`),
    ).to.have.length(0);
  });

  it("create: false leaves a missing slot to the user and says how", async () => {
    const feed = new ChangeFeed({
      cache: app.cache,
      connection: pg.config,
      slot: "not_there",
      create: false,
      publication: "weak_pub",
    });
    const error = await failure(feed);
    expect((error as ChangeFeedSetupError).sql).to.equal(
      `SELECT pg_create_logical_replication_slot('not_there', 'pgoutput');`,
    );
  });
});
