import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  Body,
  Controller,
  Get,
  Headers,
  HttpCode,
  Injectable,
  Module,
  NotFoundException,
  Param,
  Post as PostRoute,
  Res,
} from "@nestjs/common";
import { NestFactory } from "@nestjs/core";
import { ExpressAdapter } from "@nestjs/platform-express";
import { FastifyAdapter } from "@nestjs/platform-fastify";
import { getDataSourceToken, InjectRepository, TypeOrmModule } from "@nestjs/typeorm";
import express from "express";
import fastify from "fastify";
import type Redis from "ioredis";
import { DataSource, type Repository } from "typeorm";
import { getServices } from "../../example/services";
import { Cached, QueryCache, QueryCacheSubscriber, RedisStore } from "../../lib";
import { cacheResponseHooks, cacheResponses } from "../../lib/http";
import { CacheResponse, QueryCacheModule } from "../../lib/nestjs";
import { entities, Post } from "./entities";
import { openRedis, SelectCounter } from "./fixture";

/** One running HTTP application over the test database: its URL, and what the specs look into. */
export interface HttpApp {
  url: string;
  dataSource: DataSource;
  cache: QueryCache;
  close(): Promise<void>;
}

export type HttpAppKind = "nestjs-express" | "nestjs-fastify" | "express" | "fastify";

export interface HttpAppOptions {
  namespace: string;
  schema: string;
  /** Shared by the apps of one spec (the application's own client); each app gets one when absent. */
  redis?: Redis;
}

/**
 * Every kind serves the same routes:
 *   GET /posts              published titles, cached for 60 s
 *   GET /posts/:id          one post's title, cached; 404 when there is none (not cached)
 *   GET /greeting           cached, keyed by Accept-Language
 *   GET /session            cached, but it sets a cookie (so it is not)
 *   GET /mine               cached per user: the key rule reads X-User, so Authorization may come along
 *   GET /count              not cached: the number of posts
 *   GET /raw                (NestJS only) @CacheResponse on a handler that answers through @Res()
 *   POST /posts             { title } inserts a published post
 */
export async function startHttpApp(kind: HttpAppKind, options: HttpAppOptions): Promise<HttpApp> {
  const ownRedis = options.redis ? undefined : await openRedis();
  const redis = options.redis ?? (ownRedis as Redis);
  const started =
    kind === "nestjs-express" || kind === "nestjs-fastify"
      ? await startNest(kind === "nestjs-fastify", options, redis)
      : await startPlain(kind, options, redis);
  return {
    ...started,
    async close() {
      await started.close();
      ownRedis?.disconnect();
    },
  };
}

// ---- NestJS: a service with @InjectRepository and @Cached, a controller with @CacheResponse.

@Injectable()
class PostsService {
  constructor(@InjectRepository(Post) private readonly posts: Repository<Post>) {}

  // Found through the injected repository: the service holds no DataSource of its own.
  @Cached(60)
  async publishedTitles(): Promise<string[]> {
    const rows = await this.posts.find({ where: { published: true }, order: { id: "ASC" } });
    return rows.map((p) => p.title);
  }

  async title(id: number): Promise<string | undefined> {
    return (await this.posts.findOne({ where: { id } }))?.title;
  }

  count(): Promise<number> {
    return this.posts.count();
  }

  async add(title: string): Promise<void> {
    await this.posts.insert({ title, published: true });
  }
}

@Controller()
class PostsController {
  constructor(private readonly posts: PostsService) {}

  @Get("posts")
  @CacheResponse({ ttl: 60 })
  async list(): Promise<{ titles: string[] }> {
    return { titles: await this.posts.publishedTitles() };
  }

  @Get("posts/:id")
  @CacheResponse({ ttl: 60 })
  async one(@Param("id") id: string): Promise<{ title: string }> {
    const title = await this.posts.title(Number(id));
    if (title === undefined) throw new NotFoundException();
    return { title };
  }

  @Get("greeting")
  @CacheResponse({ ttl: 60, vary: ["accept-language"], maxAge: 30 })
  async greeting(
    @Headers("accept-language") language?: string,
  ): Promise<{ greeting: string; posts: number }> {
    return {
      greeting: language?.startsWith("fr") ? "bonjour" : "hello",
      posts: await this.posts.count(),
    };
  }

  @Get("session")
  @CacheResponse({ ttl: 60 })
  async session(
    @Res({ passthrough: true }) response: {
      header?: (n: string, v: string) => void;
      setHeader?: (n: string, v: string) => void;
    },
  ): Promise<{ posts: number }> {
    if (response.setHeader) response.setHeader("set-cookie", "session=abc");
    else response.header?.("set-cookie", "session=abc");
    return { posts: await this.posts.count() };
  }

  @Get("mine")
  @CacheResponse({
    ttl: 60,
    key: (request: { headers: Record<string, unknown> }) =>
      typeof request.headers["x-user"] === "string" ? request.headers["x-user"] : undefined,
  })
  async mine(@Headers("x-user") user: string): Promise<{ user: string; posts: number }> {
    return { user, posts: await this.posts.count() };
  }

  // Answers through the platform's response itself: nothing for the interceptor to replay.
  @Get("raw")
  @CacheResponse({ ttl: 60 })
  async raw(
    @Res() response: { json?: (body: unknown) => void; send: (body: unknown) => void },
  ): Promise<void> {
    const body = { posts: await this.posts.count() };
    if (response.json) response.json(body);
    else response.send(body);
  }

  @Get("count")
  async count(): Promise<{ posts: number }> {
    return { posts: await this.posts.count() };
  }

  @PostRoute("posts")
  @HttpCode(201)
  async create(@Body() body: { title: string }): Promise<{ ok: true }> {
    await this.posts.add(body.title);
    return { ok: true };
  }
}

async function startNest(
  onFastify: boolean,
  options: HttpAppOptions,
  redis: Redis,
): Promise<Omit<HttpApp, "close"> & { close(): Promise<void> }> {
  const { pgUrl } = await getServices();
  @Module({
    imports: [
      TypeOrmModule.forRoot({
        type: "postgres",
        url: pgUrl,
        schema: options.schema,
        entities,
        subscribers: [SelectCounter],
        logging: false,
      }),
      TypeOrmModule.forFeature([Post]),
      QueryCacheModule.forRoot({ redis, namespace: options.namespace }),
    ],
    controllers: [PostsController],
    providers: [PostsService],
  })
  class AppModule {}
  const app = await NestFactory.create(
    AppModule,
    onFastify ? new FastifyAdapter() : new ExpressAdapter(),
    { logger: false, abortOnError: false },
  );
  await app.listen(0, "127.0.0.1");
  return {
    url: (await app.getUrl()).replace("[::1]", "127.0.0.1"),
    dataSource: app.get<DataSource>(getDataSourceToken()),
    cache: app.get(QueryCache),
    close: () => app.close(),
  };
}

// ---- Plain Express and Fastify: the same routes on a DataSource and QueryCache of their own.

async function startPlain(
  kind: "express" | "fastify",
  options: HttpAppOptions,
  redis: Redis,
): Promise<Omit<HttpApp, "close"> & { close(): Promise<void> }> {
  const { pgUrl } = await getServices();
  const dataSource = await new DataSource({
    type: "postgres",
    url: pgUrl,
    schema: options.schema,
    entities,
    subscribers: [QueryCacheSubscriber, SelectCounter],
    logging: false,
  }).initialize();
  const cache = new QueryCache({
    dataSource,
    store: new RedisStore(redis),
    namespace: options.namespace,
  });
  const posts = dataSource.getRepository(Post);
  const routes = {
    list: async () => ({
      titles: (await posts.find({ where: { published: true }, order: { id: "ASC" } })).map(
        (p) => p.title,
      ),
    }),
    one: async (id: string) => (await posts.findOne({ where: { id: Number(id) } }))?.title,
    count: async () => ({ posts: await posts.count() }),
    add: (title: string) => posts.insert({ title, published: true }),
    user: (headers: Record<string, unknown>) =>
      typeof headers["x-user"] === "string" ? headers["x-user"] : undefined,
  };
  const shutdown = async () => {
    await cache.close();
    await dataSource.destroy();
  };
  if (kind === "express") {
    const app = express();
    app.use(express.json());
    app.get(
      "/posts",
      cacheResponses(cache, { ttl: 60 }),
      async (_req, res) => void res.json(await routes.list()),
    );
    app.get("/posts/:id", cacheResponses(cache, { ttl: 60 }), async (req, res) => {
      const title = await routes.one(String(req.params.id));
      if (title === undefined) res.status(404).json({ message: "Not Found" });
      else res.json({ title });
    });
    app.get(
      "/greeting",
      cacheResponses(cache, { ttl: 60, vary: ["accept-language"], maxAge: 30 }),
      async (req, res) => {
        res.json({
          greeting: req.headers["accept-language"]?.startsWith("fr") ? "bonjour" : "hello",
          ...(await routes.count()),
        });
      },
    );
    app.get("/session", cacheResponses(cache, { ttl: 60 }), async (_req, res) => {
      res.cookie("session", "abc");
      res.json(await routes.count());
    });
    app.get(
      "/mine",
      cacheResponses(cache, { ttl: 60, key: (req) => routes.user(req.headers) }),
      async (req, res) => {
        res.json({ user: req.headers["x-user"], ...(await routes.count()) });
      },
    );
    app.get("/count", async (_req, res) => void res.json(await routes.count()));
    app.post("/posts", async (req, res) => {
      await routes.add(req.body.title);
      res.status(201).json({ ok: true });
    });
    const server = await new Promise<Server>((resolve) => {
      const s = app.listen(0, "127.0.0.1", () => resolve(s));
    });
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      dataSource,
      cache,
      async close() {
        await new Promise<void>((resolve, reject) =>
          server.close((error) => (error ? reject(error) : resolve())),
        );
        await shutdown();
      },
    };
  }
  const app = fastify();
  app.get("/posts", cacheResponseHooks(cache, { ttl: 60 }), () => routes.list());
  app.get<{ Params: { id: string } }>(
    "/posts/:id",
    cacheResponseHooks(cache, { ttl: 60 }),
    async (request, reply) => {
      const title = await routes.one(request.params.id);
      if (title === undefined) return reply.code(404).send({ message: "Not Found" });
      return { title };
    },
  );
  app.get(
    "/greeting",
    cacheResponseHooks(cache, { ttl: 60, vary: ["accept-language"], maxAge: 30 }),
    async (request) => ({
      greeting: request.headers["accept-language"]?.startsWith("fr") ? "bonjour" : "hello",
      ...(await routes.count()),
    }),
  );
  app.get("/session", cacheResponseHooks(cache, { ttl: 60 }), async (_request, reply) => {
    reply.header("set-cookie", "session=abc");
    return routes.count();
  });
  app.get(
    "/mine",
    cacheResponseHooks(cache, { ttl: 60, key: (request) => routes.user(request.headers) }),
    async (request) => ({
      user: request.headers["x-user"],
      ...(await routes.count()),
    }),
  );
  app.get("/count", () => routes.count());
  app.post<{ Body: { title: string } }>("/posts", async (request, reply) => {
    await routes.add(request.body.title);
    return reply.code(201).send({ ok: true });
  });
  const url = await app.listen({ port: 0, host: "127.0.0.1" });
  return {
    url,
    dataSource,
    cache,
    async close() {
      await app.close();
      await shutdown();
    },
  };
}
