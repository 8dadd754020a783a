import { expect } from "chai";
import type { Lookup, StoreEntry } from "../lib";
import { RedisStore } from "../lib";
import { Post } from "./support/entities";
import { type App, dropNamespace, openApp, openRedis, uniqueNamespace } from "./support/fixture";
import { repositories } from "./support/repositories";
import { until } from "./support/wait";

/**
 * Replies that reach the client in one socket read: held, then resolved in one synchronous loop,
 * in the order Redis sent them (which is what ioredis does with a chunk holding several replies).
 */
class CoalescingStore extends RedisStore {
  holding = false;
  readonly held: { kind: string; go(): void }[] = [];

  override lookup(key: string, clockKey: string): Promise<Lookup> {
    return this.hold(super.lookup(key, clockKey), "lookup");
  }

  override set(entry: StoreEntry, clockKey: string): Promise<boolean> {
    return this.hold(super.set(entry, clockKey), "set");
  }

  release(): void {
    this.holding = false;
    for (const reply of this.held.splice(0)) reply.go();
  }

  private hold<T>(reply: Promise<T>, kind: string): Promise<T> {
    if (!this.holding) return reply;
    return new Promise<T>((resolve, reject) =>
      reply.then((value) => this.held.push({ kind, go: () => resolve(value) }), reject),
    );
  }
}

describe("single flight: a caller that starts after a write never takes a flight that read before it", () => {
  const ns = uniqueNamespace();
  let writer: App;
  let reader: App;
  let store: CoalescingStore;

  before(async () => {
    writer = await openApp(ns, { fresh: true });
    store = new CoalescingStore(await openRedis());
    reader = await openApp(ns, { cache: { store } });
  });
  after(async () => {
    await dropNamespace(writer.redis, ns);
    await reader.close();
    store.redis.disconnect();
    await writer.close();
  });

  it("when the leader's set reply and the follower's lookup reply arrive in one read (invariant 1)", async () => {
    const posts = repositories(reader.dataSource).posts;
    await posts.findAll(); // creates the versions its entry depends on (a first entry is refused)
    await repositories(writer.dataSource).posts.insert([{ title: "a" }, { title: "b" }]);
    store.holding = true;
    const leader = posts.findAll(); // misses, queries, stores: its set reply is held
    await until(
      "a lookup reply is held",
      () => store.held.some((h) => h.kind === "lookup"),
      undefined,
      2,
    );
    store.release();
    store.holding = true;
    await until(
      "a set reply is held",
      () => store.held.some((h) => h.kind === "set"),
      undefined,
      2,
    );
    await writer.dataSource.getRepository(Post).insert({ title: "c" }); // commits, invalidates, returns
    const follower = posts.findAll(); // starts after the insert returned
    await until(
      "a lookup reply is held",
      () => store.held.some((h) => h.kind === "lookup"),
      undefined,
      2,
    );
    store.release(); // the two replies together, in Redis's order: set, then lookup
    expect(await leader, "the leader read before the insert").to.have.length(2);
    expect(await follower, "the follower started after the insert returned").to.have.length(3);
  });
});
