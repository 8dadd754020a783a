import {
  Body,
  Controller,
  Get,
  HttpCode,
  Injectable,
  Module,
  Param,
  ParseIntPipe,
  Post as PostRoute,
} from "@nestjs/common";
import { InjectRepository, TypeOrmModule } from "@nestjs/typeorm";
import type { Repository } from "typeorm";
import { Cached } from "../../lib";
import { CacheResponse, QueryCacheModule } from "../../lib/nestjs";
import { Author, entities, Post } from "../entities";
import { SqlCounter } from "../sql-counter";

/** The example's own PostgreSQL schema, rebuilt on every run. */
export const NEST_SCHEMA = "autocache_example_nestjs";
export const NEST_NAMESPACE = "example-nestjs";

export interface PostView {
  id: number;
  title: string;
  author: string;
}

@Injectable()
export class PostsService {
  constructor(
    @InjectRepository(Post) private readonly posts: Repository<Post>,
    @InjectRepository(Author) private readonly authors: Repository<Author>,
  ) {}

  /** Cached for 60 s or until post or author is written; no cache field needed on the service. */
  @Cached(60)
  async list(): Promise<PostView[]> {
    const posts = await this.posts.find({ relations: { author: true }, order: { id: "ASC" } });
    return posts.map((p) => ({ id: p.id, title: p.title, author: p.author.name }));
  }

  async publish(title: string, authorId: number): Promise<PostView> {
    const author = await this.authors.findOneByOrFail({ id: authorId });
    const post = await this.posts.save({ title, author });
    return { id: post.id, title: post.title, author: author.name };
  }
}

@Controller("posts")
export class PostsController {
  constructor(private readonly posts: PostsService) {}

  /** The whole page is cached (ETag, Cache-Control: max-age=10) until post or author is written. */
  @Get()
  @CacheResponse({ ttl: 60, maxAge: 10 })
  async index(): Promise<{ posts: PostView[] }> {
    return { posts: await this.posts.list() };
  }

  @PostRoute("by/:author")
  @HttpCode(201)
  publish(
    @Param("author", ParseIntPipe) author: number,
    @Body() body: { title: string },
  ): Promise<PostView> {
    return this.posts.publish(body.title, author);
  }
}

/** The blog: TypeORM from settings, the cache on the same connection, one controller. */
export function blogModule(settings: { pgUrl: string; redisUrl: string }) {
  @Module({
    imports: [
      TypeOrmModule.forRootAsync({
        useFactory: () => ({
          type: "postgres",
          url: settings.pgUrl,
          schema: NEST_SCHEMA,
          entities,
          subscribers: [SqlCounter], // QueryCacheSubscriber is added by QueryCacheModule
          synchronize: true,
          dropSchema: true,
        }),
      }),
      TypeOrmModule.forFeature([Post, Author]),
      // A Redis URL: the module opens the connection and quits it when the app closes.
      QueryCacheModule.forRootAsync({
        useFactory: () => ({
          redis: settings.redisUrl,
          namespace: NEST_NAMESPACE,
          defaultTtl: 300,
        }),
      }),
    ],
    controllers: [PostsController],
    providers: [PostsService],
  })
  class BlogModule {}
  return BlogModule;
}
