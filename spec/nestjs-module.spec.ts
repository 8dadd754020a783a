import { execFile } from "node:child_process";
import { join } from "node:path";
import { Global, Injectable, Module } from "@nestjs/common";
import { NestFactory } from "@nestjs/core";
import { getDataSourceToken, InjectRepository, TypeOrmModule } from "@nestjs/typeorm";
import { expect } from "chai";
import type Redis from "ioredis";
import { DataSource, Repository } from "typeorm";
import { getServices } from "../example/services";
import { Cached, QueryCache, QueryCacheSubscriber, RedisStore } from "../lib";
import { attachSubscriber, InjectQueryCache, QueryCacheModule } from "../lib/nestjs";
import { entities, Post } from "./support/entities";
import {
  openApp,
  openDataSource,
  openRedis,
  SelectCounter,
  selectCount,
  uniqueNamespace,
} from "./support/fixture";
import { warm } from "./support/warm";

class PostRepository extends Repository<Post> {
  @Cached(60)
  titles(): Promise<Post[]> {
    return this.find({ order: { id: "ASC" } });
  }
}

@Injectable()
class InjectedService {
  constructor(@InjectRepository(Post) readonly posts: Repository<Post>) {}

  @Cached(60)
  async count(): Promise<number> {
    return this.posts.count();
  }
}

/** Holds nothing of TypeORM: @Cached falls back to the module's cache. */
@Injectable()
class PlainService {
  constructor(private readonly injected: InjectedService) {}

  @Cached(60)
  async doubled(): Promise<number> {
    return 2 * (await this.injected.posts.count());
  }
}

@Injectable()
class ReportsService {
  constructor(
    @InjectRepository(Post, "reports") readonly posts: Repository<Post>,
    @InjectQueryCache("reports") readonly cache: QueryCache,
  ) {}

  @Cached(60)
  async count(): Promise<number> {
    return this.posts.count();
  }
}

const CONFIG = "CONFIG";

/** A stand-in for @nestjs/config: a global module that provides the settings. */
function configModule(settings: { namespace: string }) {
  @Global()
  @Module({ providers: [{ provide: CONFIG, useValue: settings }], exports: [CONFIG] })
  class ConfigModule {}
  return ConfigModule;
}

describe("QueryCacheModule: the cache of a TypeOrmModule connection, injectable", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace();
  let redis: Redis;

  before(async () => {
    const setup = await openDataSource({ fresh: true, schema: ns });
    await setup.getRepository(Post).insert([{ title: "a" }, { title: "b" }]);
    await setup.destroy();
    redis = await openRedis();
  });

  after(() => redis?.disconnect());

  it("forRootAsync: options from an injected provider; the subscriber is registered, @Cached works in services and custom repositories without extra fields", async () => {
    const { pgUrl } = await getServices();
    @Module({
      imports: [
        configModule({ namespace: ns }),
        TypeOrmModule.forRoot({
          type: "postgres",
          url: pgUrl,
          schema: ns,
          entities,
          subscribers: [SelectCounter],
          logging: false,
        }),
        TypeOrmModule.forFeature([Post]),
        QueryCacheModule.forRootAsync({
          inject: [CONFIG],
          useFactory: (c: { namespace: string }) => ({ redis, namespace: c.namespace }),
        }),
      ],
      providers: [
        InjectedService,
        PlainService,
        {
          provide: PostRepository,
          useFactory: (ds: DataSource) => new PostRepository(Post, ds.manager),
          inject: [getDataSourceToken()],
        },
      ],
    })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, {
      logger: false,
      abortOnError: false,
    });
    try {
      const dataSource = app.get<DataSource>(getDataSourceToken());
      const cache = app.get(QueryCache);
      expect(cache.dataSource).to.equal(dataSource);
      expect(
        dataSource.subscribers.some((s) => s instanceof QueryCacheSubscriber),
        "registered without being listed",
      ).to.equal(true);
      const service = app.get(InjectedService);
      const plain = app.get(PlainService);
      const repository = app.get(PostRepository);
      for (const read of [
        () => service.count(),
        () => plain.doubled(),
        () => repository.titles(),
      ]) {
        let served = false;
        for (let i = 0; i < 3 && !served; i++) {
          const selects = selectCount(dataSource);
          await read();
          served = selectCount(dataSource) === selects;
        }
        expect(served, "served from the cache with no SQL").to.equal(true);
      }
      const byMethod = cache.stats({ byMethod: true }).byMethod;
      expect(Object.keys(byMethod)).to.include.members([
        "InjectedService.count",
        "PlainService.doubled",
        "PostRepository<Post>.titles",
      ]);
      await repository.insert({ title: "c" });
      expect(await service.count(), "fresh after a write").to.equal(3);
      expect(await plain.doubled()).to.equal(6);
      expect((await repository.titles()).map((p) => p.title)).to.deep.equal(["a", "b", "c"]);
    } finally {
      await app.close();
    }
    expect(redis.status, "a client the application passed stays open").to.equal("ready");
  });

  it("a named connection gets its own cache, found by @Cached through the service's injected repository", async () => {
    const { pgUrl } = await getServices();
    @Module({
      imports: [
        TypeOrmModule.forRoot({
          type: "postgres",
          url: pgUrl,
          schema: ns,
          entities,
          logging: false,
        }),
        TypeOrmModule.forRoot({
          name: "reports",
          type: "postgres",
          url: pgUrl,
          schema: ns,
          entities,
          subscribers: [SelectCounter],
          logging: false,
        }),
        TypeOrmModule.forFeature([Post], "reports"),
        QueryCacheModule.forRoot({ redis, namespace: ns }),
        QueryCacheModule.forRoot({ dataSource: "reports", redis, namespace: ns }),
      ],
      providers: [ReportsService],
    })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, {
      logger: false,
      abortOnError: false,
    });
    try {
      const reports = app.get(ReportsService);
      const reportsSource = app.get<DataSource>(getDataSourceToken("reports"));
      expect(reports.cache.dataSource).to.equal(reportsSource);
      expect(app.get(QueryCache)).to.not.equal(reports.cache);
      const before = reports.cache.stats().misses;
      await reports.count();
      expect(reports.cache.stats().misses, "the reports connection's cache ran the call").to.equal(
        before + 1,
      );
    } finally {
      await app.close();
    }
  });

  it("attachSubscriber on a DataSource not yet initialized keeps the subscriber through initialize()", async () => {
    const { pgUrl } = await getServices();
    const dataSource = new DataSource({
      type: "postgres",
      url: pgUrl,
      schema: ns,
      entities,
      subscribers: [SelectCounter],
    });
    attachSubscriber(dataSource);
    attachSubscriber(dataSource);
    await dataSource.initialize();
    try {
      expect(
        dataSource.subscribers.filter((s) => s instanceof QueryCacheSubscriber),
      ).to.have.length(1);
      expect(dataSource.subscribers.some((s) => s instanceof SelectCounter)).to.equal(true);
    } finally {
      await dataSource.destroy();
    }
  });

  it("app.close() delivers an invalidation still pending when the app shuts down", async () => {
    const { pgUrl } = await getServices();
    const other = await openApp(ns);
    // Refuses every invalidation until the cache is being closed: only the flush on shutdown can deliver it.
    let closing = false;
    const store = new Proxy(new RedisStore(redis), {
      get(target, property) {
        if (property === "bump" && !closing)
          return () =>
            Promise.reject(
              Object.assign(new Error("bump refused by the spec"), { storeAnswered: true }),
            );
        const value = Reflect.get(target, property) as unknown;
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    @Module({
      imports: [
        TypeOrmModule.forRoot({
          type: "postgres",
          url: pgUrl,
          schema: ns,
          entities,
          logging: false,
        }),
        QueryCacheModule.forRoot({ store, namespace: ns }),
      ],
    })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, {
      logger: false,
      abortOnError: false,
    });
    try {
      const cache = app.get(QueryCache);
      const close = cache.close.bind(cache);
      cache.close = () => {
        closing = true;
        return close();
      };
      const theirs = new PostRepository(Post, other.dataSource.manager);
      const before = (await warm(other, () => theirs.titles())).map((p) => p.title);
      await app
        .get<DataSource>(getDataSourceToken())
        .getRepository(Post)
        .insert({ title: "written before shutdown" });
      expect(
        (await theirs.titles()).map((p) => p.title),
        "the invalidation is still pending",
      ).to.deep.equal(before);
      await app.close();
      expect(
        (await theirs.titles()).map((p) => p.title),
        "delivered by app.close()",
      ).to.include("written before shutdown");
    } finally {
      await other.close();
    }
  });

  for (const platform of ["express", "fastify"]) {
    it(`on ${platform}, after app.close() the process exits by itself (the module quits the Redis connection it opened)`, async () => {
      const child = join(__dirname, "support", "nest-exit-child.js");
      const started = Date.now();
      const { code, stdout, stderr } = await new Promise<{
        code: number | null;
        stdout: string;
        stderr: string;
      }>((resolve) => {
        const proc = execFile(
          process.execPath,
          [child, ns, ns, platform],
          { timeout: 45_000 },
          (error, stdout, stderr) =>
            resolve({
              code: error ? ((error as { code?: number }).code ?? null) : 0,
              stdout,
              stderr,
            }),
        );
        proc.stdin?.end();
      });
      expect(stderr).to.equal("");
      expect(stdout.trim()).to.equal("closed");
      expect(code, `exited by itself (after ${Date.now() - started} ms)`).to.equal(0);
    });
  }
});
