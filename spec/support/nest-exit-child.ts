import "reflect-metadata";
import { Controller, Get, Module } from "@nestjs/common";
import { NestFactory } from "@nestjs/core";
import { ExpressAdapter } from "@nestjs/platform-express";
import { FastifyAdapter } from "@nestjs/platform-fastify";
import { getDataSourceToken, InjectRepository, TypeOrmModule } from "@nestjs/typeorm";
import type { DataSource, Repository } from "typeorm";
import { getServices } from "../../example/services";
import { CacheResponse, QueryCacheModule } from "../../lib/nestjs";
import { entities, Post } from "./entities";

/**
 * A child process for the shutdown spec: a NestJS app whose QueryCacheModule owns its Redis
 * connection (given as a URL). It serves a cached page and a write, closes the app, and must then
 * exit by itself: nothing here calls process.exit.
 * argv: <schema> <namespace> <"express" | "fastify">
 */
const [schema, namespace, platform] = process.argv.slice(2);

@Controller()
class PostsController {
  constructor(@InjectRepository(Post) private readonly posts: Repository<Post>) {}

  @Get("posts")
  @CacheResponse({ ttl: 60 })
  async list(): Promise<string[]> {
    return (await this.posts.find({ order: { id: "ASC" } })).map((p) => p.title);
  }
}

async function main(): Promise<void> {
  const { pgUrl, redisUrl } = await getServices();
  @Module({
    imports: [
      TypeOrmModule.forRoot({ type: "postgres", url: pgUrl, schema, entities, logging: false }),
      TypeOrmModule.forFeature([Post]),
      QueryCacheModule.forRootAsync({
        useFactory: async () => ({ redis: redisUrl, namespace, local: { maxBytes: 1024 * 1024 } }),
      }),
    ],
    controllers: [PostsController],
  })
  class AppModule {}
  const app = await NestFactory.create(
    AppModule,
    platform === "fastify" ? new FastifyAdapter() : new ExpressAdapter(),
    { logger: false, abortOnError: false },
  );
  await app.listen(0, "127.0.0.1");
  const url = (await app.getUrl()).replace("[::1]", "127.0.0.1");
  for (let i = 0; i < 2; i++) await (await fetch(`${url}/posts`)).text();
  await app
    .get<DataSource>(getDataSourceToken())
    .getRepository(Post)
    .insert({ title: "before shutdown" });
  await app.close();
  console.log("closed");
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
