import { expect } from "chai";
import Redis from "ioredis";
import type { Post } from "./support/entities";
import { type App, openApp, selectCount, uniqueNamespace } from "./support/fixture";
import { aclDenials, createNamespaceUser } from "./support/redis-acl";
import { RedisProcess } from "./support/redis-process";
import { sleep } from "./support/wait";
import { readUntilHit } from "./support/warm";

const viewsOf = (rows: Post[]) => rows.map((p) => p.views);

async function rejection(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => expect.fail("the command should have been refused"),
    (error: unknown) => error as Error,
  );
}

describe("ACL: the cache works under a Redis user restricted to its namespace's keys and channels", function () {
  this.timeout(30_000);
  const namespace = "blog";
  const schema = uniqueNamespace();
  let server: RedisProcess;
  let admin: Redis;
  const clients: Redis[] = [];
  const apps: App[] = [];
  const storeErrors: Error[] = [];

  function connectAsApp(): Redis {
    const client = new Redis({
      host: "127.0.0.1",
      port: server.port,
      username: "app",
      password: "secret",
      maxRetriesPerRequest: 1,
    });
    clients.push(client);
    return client;
  }

  /** One application instance, on a Redis client logged in as the restricted user. */
  async function openAppAsUser(
    options: { fresh?: boolean; local?: { maxBytes: number } } = {},
  ): Promise<App> {
    const app = await openApp(namespace, {
      fresh: options.fresh,
      schema,
      redis: connectAsApp(),
      cache: { local: options.local },
      setUp: true,
    });
    app.cache.on("storeError", (error) => storeErrors.push(error));
    apps.push(app);
    return app;
  }

  async function closeApp(app: App): Promise<void> {
    apps.splice(apps.indexOf(app), 1);
    await app.close();
  }

  const expectViews = (views: number[]) => (rows: Post[]) =>
    expect(viewsOf(rows)).to.deep.equal(views);

  before(async () => {
    server = await RedisProcess.start();
    admin = new Redis(server.url);
    await createNamespaceUser(admin, "app", "secret", namespace);
    await closeApp(await openAppAsUser({ fresh: true }));
  });

  after(async () => {
    for (const app of [...apps]) await closeApp(app).catch(() => undefined);
    for (const client of clients) client.disconnect();
    admin?.disconnect();
    await server?.stop();
  });

  afterEach(() => {
    storeErrors.length = 0;
  });

  it("the user can reach nothing outside the namespace", async () => {
    const client = connectAsApp();
    await admin.set("other:key", "private");
    await client.set(`${namespace}:probe`, "1");
    expect(await client.get(`${namespace}:probe`)).to.equal("1");
    for (const [what, command] of [
      ["GET outside the namespace", client.get("other:key")],
      ["SET outside the namespace", client.set("other:key", "overwritten")],
      [
        "a script touching a key outside the namespace",
        client.eval("return redis.call('GET', KEYS[1])", 1, "other:key"),
      ],
      ["PUBLISH outside the namespace", client.publish("other:channel", "hello")],
      ["KEYS", client.keys("*")],
      ["FLUSHDB", client.flushdb()],
    ] as const) {
      expect((await rejection(command)).message, what).to.match(/^NOPERM/);
    }
    expect(await admin.get("other:key")).to.equal("private");
    await client.unlink(`${namespace}:probe`);
    await admin.call("ACL", "LOG", "RESET");
  });

  it("misses, hits, invalidates and clears with no command, key or channel refused", async () => {
    const app = await openAppAsUser();
    const { cache, posts } = app;
    const title = "acl";
    await posts.save({ title, views: 1 });
    await readUntilHit(app, () => posts.byTitle({ title }), expectViews([1]));

    await posts.update({ title }, { views: 2 });
    expect(viewsOf(await posts.byTitle({ title })), "the read after a write").to.deep.equal([2]);
    await readUntilHit(app, () => posts.byTitle({ title }), expectViews([2]));

    expect(await cache.set("greeting", "hello")).to.equal(true);
    expect(await cache.get("greeting")).to.equal("hello");
    await cache.delete("greeting");
    expect(await cache.get("greeting")).to.equal(undefined);

    await cache.clear();
    const selects = selectCount(app.dataSource);
    expect(viewsOf(await posts.byTitle({ title }))).to.deep.equal([2]);
    expect(selectCount(app.dataSource), "the read after clear() ran SQL").to.be.greaterThan(
      selects,
    );
    await readUntilHit(app, () => posts.byTitle({ title }), expectViews([2]));

    expect(storeErrors.map((e) => e.message)).to.deep.equal([]);
    expect(cache.stats().errors).to.equal(0);
    expect(await aclDenials(admin)).to.deep.equal([]);
    const keys = await admin.keys("*");
    expect(keys.length).to.be.greaterThan(0);
    expect(keys.filter((key) => !key.startsWith(`${namespace}:`))).to.deep.equal(["other:key"]);
    await closeApp(app);
  });

  it("the in-process tier follows other processes' invalidations on a channel of the namespace", async () => {
    const one = await openAppAsUser({ local: { maxBytes: 1024 * 1024 } });
    const two = await openAppAsUser({ local: { maxBytes: 1024 * 1024 } });
    const title = "acl local";
    await one.posts.save({ title, views: 1 });
    await readUntilHit(one, () => one.posts.byTitle({ title }), expectViews([1]));
    await readUntilHit(two, () => two.posts.byTitle({ title }), expectViews([1]));

    await one.posts.update({ title }, { views: 2 });
    // The tier may lag by the time the announcement takes to arrive.
    const deadline = Date.now() + 5000; // catches a tier that never hears, not a slow one
    while (viewsOf(await two.posts.byTitle({ title }))[0] !== 2) {
      if (Date.now() > deadline)
        expect.fail(
          `the other process's tier still serves the old value: ${JSON.stringify(await aclDenials(admin))}`,
        );
      await sleep(10);
    }

    expect(storeErrors.map((e) => e.message)).to.deep.equal([]);
    expect(await aclDenials(admin)).to.deep.equal([]);
  });
});
