import type { QueryEvent } from "../lib/typeorm/subscriber";
import "reflect-metadata";
import { once } from "node:events";
import { Redis, type RedisOptions } from "ioredis";
import { Client } from "pg";
import {
  DataSource,
  type EntitySubscriberInterface,
  EventSubscriber,
  type Repository,
} from "typeorm";
import { getServices, stopServices } from "../example/services";
import { QueryCache, QueryCacheSubscriber, RedisStore } from "../lib";
import { EXCERPT, entities, FrontPageRepository, Post } from "./blog";
import { openLocalTier } from "./local-tier";

/** The bench's own PostgreSQL schema and Redis namespace: emptied before the run and removed after it. */
export const SCHEMA = "autocache_bench";
export const NAMESPACE = "bench";
export const FLOOR_KEY = `${NAMESPACE}:floor`;
const TYPEORM_PREFIX = `${NAMESPACE}:typeorm:`;
/** TypeORM's cache id for the front page; find with take and relations stores two queries, the second under "<id>-pagination". */
export const TYPEORM_CACHE_ID = "front-page";
export const TYPEORM_KEYS = [
  `${TYPEORM_PREFIX}${TYPEORM_CACHE_ID}`,
  `${TYPEORM_PREFIX}${TYPEORM_CACHE_ID}-pagination`,
];

export const AUTHORS = 10;
export const POSTS = 2_000;
/** Contender 8: one table per count of entries depending on it. */
export const DEPENDENT_COUNTS = [10, 1_000, 100_000] as const;
export const LOCAL_MAX_BYTES = 64 * 1024 * 1024;

export function dependentTable(count: number): string {
  return `${SCHEMA}.dep_${count}`;
}

/** Every statement each DataSource sent, counted without looking at it (so it costs next to nothing). */
const statements = new WeakMap<DataSource, number>();

@EventSubscriber()
export class StatementCounter implements EntitySubscriberInterface {
  afterQuery(event: QueryEvent): void {
    statements.set(event.connection, (statements.get(event.connection) ?? 0) + 1);
  }
}

export function statementCount(dataSource: DataSource): number {
  return statements.get(dataSource) ?? 0;
}

/** Commands one ioredis client sent, to tell a hit served in process (none) from one served by Redis. */
export interface CommandCounter {
  count: number;
}

function countCommands(redis: Redis): CommandCounter {
  const counter = { count: 0 };
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = (command, stream) => {
    counter.count++;
    return send(command, stream);
  };
  return counter;
}

export interface Bench {
  pgUrl: string;
  redisUrl: string;
  /** No subscriber at all: the uncached find and the save without the library. */
  plain: DataSource;
  /** TypeORM's own Redis query cache (its `cache` DataSource option), no subscriber. */
  typeorm: DataSource;
  /** QueryCacheSubscriber and a QueryCache on Redis only. */
  cached: DataSource;
  cache: QueryCache;
  cacheCommands: CommandCounter;
  /** Store errors the Redis-only cache reported (it fails open, so they would go unseen), by message. */
  cacheErrors: Map<string, number>;
  /** A second application instance on the same namespace, with the in-process tier when QueryCache has one. */
  local: DataSource;
  localCache?: QueryCache;
  localCommands: CommandCounter;
  localUnavailable?: string;
  /** The bench's own client: the floor, memory figures, cleanup. */
  redis: Redis;
  repos: {
    plain: Repository<Post>;
    typeorm: Repository<Post>;
    cachedPosts: Repository<Post>;
    cached: FrontPageRepository;
    local: FrontPageRepository;
  };
  close(): Promise<void>;
}

export async function openBench(say: (line: string) => void): Promise<Bench> {
  const { pgUrl, redisUrl } = await getServices();
  const closers: (() => Promise<unknown>)[] = [stopServices];
  const close = async () => {
    const errors: unknown[] = [];
    for (const step of closers.splice(0).reverse())
      await step().catch((error: unknown) => errors.push(error));
    if (errors.length > 0) throw errors[0];
  };
  try {
    const redis = await connectRedis(redisUrl);
    closers.push(() => redis.quit());
    closers.push(() => dropNamespace(redis));
    await dropNamespace(redis);

    closers.push(() => dropSchema(pgUrl));
    await dropSchema(pgUrl);
    await pgAdmin(pgUrl, `CREATE SCHEMA "${SCHEMA}"`);

    const plain = await openDataSource(pgUrl, { synchronize: true, subscribers: [] });
    closers.push(() => plain.destroy());
    await seed(plain);
    say(
      `  PostgreSQL: schema "${SCHEMA}" with ${AUTHORS} authors, ${POSTS} posts, and tables ${DEPENDENT_COUNTS.map((n) => `dep_${n}`).join(", ")}`,
    );

    const typeorm = await openDataSource(pgUrl, {
      subscribers: [StatementCounter],
      cache: {
        type: "ioredis",
        options: { ...redisOptions(redisUrl), keyPrefix: TYPEORM_PREFIX },
        duration: 600_000,
      },
    });
    closers.push(() => typeorm.destroy());

    const redisOnly = await openInstance(pgUrl, redisUrl, false);
    closers.push(() => redisOnly.close());
    const cacheErrors = new Map<string, number>();
    redisOnly.cache!.on("storeError", (error: Error) =>
      cacheErrors.set(error.message, (cacheErrors.get(error.message) ?? 0) + 1),
    );
    const local = await openInstance(pgUrl, redisUrl, true);
    closers.push(() => local.close());

    return {
      pgUrl,
      redisUrl,
      plain,
      typeorm,
      cached: redisOnly.dataSource,
      cache: redisOnly.cache!,
      cacheCommands: redisOnly.commands,
      cacheErrors,
      local: local.dataSource,
      localCache: local.cache,
      localCommands: local.commands,
      localUnavailable: local.unavailable,
      redis,
      repos: {
        plain: plain.getRepository(Post),
        typeorm: typeorm.getRepository(Post),
        cachedPosts: redisOnly.dataSource.getRepository(Post),
        cached: redisOnly.repo,
        local: local.repo,
      },
      close,
    };
  } catch (error) {
    await close().catch(() => undefined);
    throw error;
  }
}

/** One application instance: a DataSource with QueryCacheSubscriber, its own Redis client, and a QueryCache. */
export interface Instance {
  dataSource: DataSource;
  /** Undefined when the in-process tier was asked for and QueryCache does not have it. */
  cache?: QueryCache;
  commands: CommandCounter;
  repo: FrontPageRepository;
  unavailable?: string;
  close(): Promise<void>;
}

export async function openInstance(
  pgUrl: string,
  redisUrl: string,
  tier: boolean,
): Promise<Instance> {
  const dataSource = await openDataSource(pgUrl, {
    subscribers: [QueryCacheSubscriber, StatementCounter],
  });
  const redis = await connectRedis(redisUrl);
  const commands = countCommands(redis);
  const repo = new FrontPageRepository(Post, dataSource.manager);
  const options = {
    dataSource,
    store: new RedisStore(redis),
    namespace: NAMESPACE,
    defaultTtl: 600,
  };
  const opened = tier
    ? await openLocalTier(options, LOCAL_MAX_BYTES, () => repo.frontPage(), commands)
    : { cache: new QueryCache(options) };
  return {
    dataSource,
    cache: opened.cache,
    commands,
    repo,
    unavailable: opened.reason,
    async close() {
      await opened.cache?.close();
      await dataSource.destroy();
      await redis.quit();
    },
  };
}

async function openDataSource(
  url: string,
  options: {
    synchronize?: boolean;
    subscribers: Function[];
    cache?: { type: "ioredis"; options: RedisOptions; duration: number };
  },
): Promise<DataSource> {
  const dataSource = new DataSource({
    type: "postgres",
    url,
    schema: SCHEMA,
    entities,
    logging: false,
    ...options,
  });
  return dataSource.initialize();
}

async function seed(plain: DataSource): Promise<void> {
  await plain.query(
    `INSERT INTO "${SCHEMA}"."author" (name, bio)
     SELECT 'Author ' || i, 'Writes about databases, caches and the time they save. Author number ' || i || '.'
     FROM generate_series(1, ${AUTHORS}) AS i`,
  );
  await plain.query(
    `INSERT INTO "${SCHEMA}"."post" (title, slug, excerpt, views, "createdAt", "authorId")
     SELECT 'Post number ' || i || ': what we learned', 'post-number-' || i, $1, i * 7 % 1000,
            now() - (${POSTS} - i) * interval '1 hour', 1 + i % ${AUTHORS}
     FROM generate_series(1, ${POSTS}) AS i`,
    [EXCERPT],
  );
  for (const count of DEPENDENT_COUNTS) {
    await plain.query(
      `CREATE TABLE ${dependentTable(count)} (id serial PRIMARY KEY, note text NOT NULL)`,
    );
  }
}

// Not lazyConnect: the in-process tier follows invalidations on redis.duplicate(), and a duplicate
// of a lazyConnect client never connects by itself.
async function connectRedis(url: string): Promise<Redis> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  if (redis.status !== "ready") await once(redis, "ready");
  return redis;
}

/** TypeORM builds its own ioredis client from options, not from a URL. */
function redisOptions(url: string): RedisOptions {
  const u = new URL(url);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    db: u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
  };
}

/** Deletes every key under "bench:": entries, versions, the clock, the floor and TypeORM's entries. */
async function dropNamespace(redis: Redis): Promise<number> {
  let cursor = "0";
  let removed = 0;
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${NAMESPACE}:*`, "COUNT", 5000);
    cursor = next;
    if (keys.length > 0) removed += await redis.unlink(...keys);
  } while (cursor !== "0");
  return removed;
}

async function dropSchema(pgUrl: string): Promise<void> {
  await pgAdmin(pgUrl, `DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
}

async function pgAdmin(pgUrl: string, sql: string): Promise<void> {
  const client = new Client({ connectionString: pgUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
