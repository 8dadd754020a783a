import { expect } from "chai";
import { DataSource } from "typeorm";
import { getServices } from "../example/services";
import { QueryCache, QueryCacheSubscriber, RedisStore } from "../lib";
import { entities, Post } from "./support/entities";
import {
  dropNamespace,
  openDataSource,
  openRedis,
  SelectCounter,
  uniqueNamespace,
} from "./support/fixture";
import { PostRepository } from "./support/repositories";

describe("lifecycle: the cache joins a DataSource before or after initialize()", () => {
  const ns = uniqueNamespace();

  before(async () => {
    // Creates the schema and its tables once.
    await (await openDataSource({ fresh: true, schema: ns })).destroy();
  });

  it("a QueryCache created before initialize() caches and invalidates like one created after", async () => {
    const { pgUrl } = await getServices();
    const redis = await openRedis();
    const dataSource = new DataSource({
      type: "postgres",
      url: pgUrl,
      schema: ns,
      entities,
      subscribers: [QueryCacheSubscriber, SelectCounter],
    });
    const cache = new QueryCache({ dataSource, store: new RedisStore(redis), namespace: ns });
    try {
      await dataSource.initialize();
      const posts = new PostRepository(Post, dataSource.manager);
      await posts.insert({ title: "a" });
      // A fresh namespace refuses its first entry while it creates the versions it needs.
      for (let i = 0; i < 3; i++) await posts.findAll();
      expect(cache.stats().hits).to.be.greaterThan(0);
      await posts.insert({ title: "b" });
      expect((await posts.findAll()).map((p) => p.title)).to.deep.equal(["a", "b"]);
    } finally {
      await cache.close();
      await dataSource.destroy();
      await dropNamespace(redis, ns);
      redis.disconnect();
    }
  });

  it("after close(), the DataSource can get a new cache, and the old one no longer invalidates", async () => {
    const dataSource = await openDataSource({ schema: ns });
    const redis = await openRedis();
    try {
      const first = new QueryCache({ dataSource, store: new RedisStore(redis), namespace: ns });
      await first.close();
      const second = new QueryCache({ dataSource, store: new RedisStore(redis), namespace: ns });
      const posts = new PostRepository(Post, dataSource.manager);
      await posts.findAll();
      await posts.insert({ title: "c" });
      expect(second.stats().invalidations).to.be.greaterThan(0);
      expect(first.stats().invalidations).to.equal(0);
      await second.close();
    } finally {
      await dataSource.destroy();
      await dropNamespace(redis, ns);
      redis.disconnect();
    }
  });
});
