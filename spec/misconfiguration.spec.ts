import { expect } from "chai";
import { DataSource, Repository } from "typeorm";
import { getServices } from "../example/services";
import { Cached, QueryCache, QueryCacheSubscriber, RedisStore } from "../lib";
import { InvalidStoreClientError, SubscriberMissingError, UnknownTableError } from "../lib/errors";
import { entities, Post } from "./support/entities";
import { type App, openApp, openRedis, uniqueNamespace } from "./support/fixture";

class TypoRepository extends Repository<Post> {
  @Cached({ ttl: 60, dependsOn: ["comments"] })
  withComments(): Promise<Post[]> {
    return this.find();
  }

  @Cached({ ttl: 60, dependsOn: ["comment"] })
  spelledRight(): Promise<Post[]> {
    return this.find();
  }
}

// A type-level check: the build fails if @Cached ever accepts a synchronous method again.
// biome-ignore lint/suspicious/noExportsInTest: exported so that the compiler keeps the unused class and checks it
export class SynchronousMethods {
  // @ts-expect-error a cached call returns a Promise, so a method declared to return a number cannot be cached
  @Cached(60)
  count(): number {
    return 1;
  }

  @Cached(60)
  countLater(): Promise<number> {
    return Promise.resolve(1);
  }
}

async function thrown(work: () => unknown): Promise<unknown> {
  try {
    await work();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe("misconfiguration is reported where it is made, with the fix", () => {
  const ns = uniqueNamespace();

  describe("a DataSource without QueryCacheSubscriber", () => {
    const options = async (subscribers: unknown[]) => {
      const { pgUrl } = await getServices();
      return new DataSource({
        type: "postgres",
        url: pgUrl,
        schema: ns,
        entities,
        subscribers: subscribers as never,
      });
    };

    it("is refused by the constructor before initialize(), whether subscribers are listed as classes or instances", async () => {
      const error = await thrown(async () => new QueryCache({ dataSource: await options([]) }));
      expect(error).to.be.instanceOf(SubscriberMissingError);
      expect((error as Error).message).to.include("subscribers: [QueryCacheSubscriber]");
      for (const subscribers of [[QueryCacheSubscriber], [new QueryCacheSubscriber()]]) {
        const cache = new QueryCache({ dataSource: await options(subscribers) });
        await cache.close();
      }
    });

    it("is refused by the constructor after initialize()", async () => {
      const dataSource = await (await options([])).initialize();
      try {
        expect(await thrown(() => new QueryCache({ dataSource }))).to.be.instanceOf(
          SubscriberMissingError,
        );
      } finally {
        await dataSource.destroy();
      }
    });
  });

  describe("a store client that is not ioredis", () => {
    it("new RedisStore({}) throws InvalidStoreClientError naming what to pass", () => {
      expect(() => new RedisStore({} as never)).to.throw(
        InvalidStoreClientError,
        /new RedisStore\(new Redis\(url\)\).*a plain object/,
      );
    });

    it("a node-redis client is refused by name", () => {
      // The shape of a node-redis v4/v5 client: isOpen, sendCommand, connect, no status.
      const nodeRedis = {
        isOpen: false,
        isReady: false,
        connect: async () => undefined,
        sendCommand: async () => undefined,
        get: async () => null,
      };
      expect(() => new RedisStore(nodeRedis as never)).to.throw(
        InvalidStoreClientError,
        /a node-redis client/,
      );
    });

    it("an ioredis client, connected or not, is taken", async () => {
      const redis = await openRedis();
      try {
        expect(new RedisStore(redis)).to.be.instanceOf(RedisStore);
      } finally {
        redis.disconnect();
      }
    });
  });

  describe("dependsOn or invalidate() naming a table that does not exist", () => {
    let app: App;

    before(async () => {
      app = await openApp(ns, { fresh: true });
    });
    after(async () => {
      await app.close();
    });

    it("fails the first call that resolves it with UnknownTableError, instead of never invalidating", async () => {
      const repository = new TypoRepository(Post, app.dataSource.manager);
      const error = await thrown(() => repository.withComments());
      expect(error).to.be.instanceOf(UnknownTableError);
      expect((error as Error).message).to.include(`"comments" does not exist`);
      expect(await repository.spelledRight()).to.deep.equal([]);
    });

    it("wrap(), set() and invalidate() report it too", async () => {
      expect(
        await thrown(() => app.cache.wrap("k", async () => 1, { dependsOn: ["nope"] })),
      ).to.be.instanceOf(UnknownTableError);
      expect(await thrown(() => app.cache.set("k", 1, { dependsOn: ["nope"] }))).to.be.instanceOf(
        UnknownTableError,
      );
      expect(await thrown(() => app.cache.invalidate("nope"))).to.be.instanceOf(UnknownTableError);
      expect(await thrown(() => app.cache.invalidate(`${ns}.post`, "comment"))).to.equal(undefined);
    });

    it("a table created after the catalog was read is found, not reported", async () => {
      await app.dataSource.query(`CREATE TABLE "${ns}"."late" (id int)`);
      expect(await app.cache.wrap("late", async () => 1, { dependsOn: [`${ns}.late`] })).to.equal(
        1,
      );
    });
  });
});
