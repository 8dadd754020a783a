import type { QueryEvent } from "../../lib/typeorm/subscriber";
import "reflect-metadata";
import { randomUUID } from "node:crypto";
import Redis, { type Cluster } from "ioredis";
import { DataSource, type EntitySubscriberInterface, EventSubscriber } from "typeorm";
import { getServices } from "../../example/services";
import { QueryCache, QueryCacheSubscriber, RedisStore } from "../../lib";
import type { QueryCacheOptions } from "../../lib/options";
import { entities, Post } from "./entities";
import { PostRepository } from "./repositories";

/** Counts the SELECTs each DataSource runs, to prove hits run none. */
const selects = new WeakMap<DataSource, number>();

@EventSubscriber()
export class SelectCounter implements EntitySubscriberInterface {
  afterQuery(event: QueryEvent): void {
    // The cache reads the catalog on a connection of its own; TypeORM's metadata queries read pg_catalog.
    if (/^\s*select/i.test(event.query) && !/pg_catalog|information_schema/i.test(event.query)) {
      selects.set(event.connection, (selects.get(event.connection) ?? 0) + 1);
    }
  }
}

export function selectCount(dataSource: DataSource): number {
  return selects.get(dataSource) ?? 0;
}

const createdSchemas = new Set<string>();

/**
 * A DataSource on the test database, in its own PostgreSQL schema (so spec files never touch each
 * other's tables); `fresh` drops and recreates the tables.
 */
export async function openDataSource(
  options: { fresh?: boolean; schema?: string; extraEntities?: Function[]; pgUrl?: string } = {},
): Promise<DataSource> {
  // A server of the spec's own (pgUrl) is dropped whole when the spec stops it: its schemas need no cleanup.
  const shared = options.pgUrl === undefined;
  const pgUrl = options.pgUrl ?? (await getServices()).pgUrl;
  const schema = options.schema ?? "public";
  if (!shared || !createdSchemas.has(schema)) {
    const setup = new DataSource({ type: "postgres", url: pgUrl });
    await setup.initialize();
    await setup.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await setup.destroy();
    if (shared && schema !== "public") createdSchemas.add(schema);
  }
  const dataSource = new DataSource({
    type: "postgres",
    url: pgUrl,
    schema,
    entities: [...entities, ...(options.extraEntities ?? [])],
    subscribers: [QueryCacheSubscriber, SelectCounter],
    synchronize: options.fresh ?? false,
    dropSchema: options.fresh ?? false,
    logging: false,
  });
  return dataSource.initialize();
}

export async function openRedis(): Promise<Redis> {
  const { redisUrl } = await getServices();
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  return redis;
}

const namespaces = new Set<string>();

export function uniqueNamespace(): string {
  const namespace = `t${randomUUID().slice(0, 8)}`;
  namespaces.add(namespace);
  return namespace;
}

/**
 * Drops every namespace the run handed out, once all spec files are done: a store write or an
 * invalidation that lands after a spec's own cleanup leaves nothing behind either.
 */
export async function dropCreatedNamespaces(): Promise<void> {
  if (namespaces.size === 0) return;
  const redis = await openRedis();
  try {
    for (const namespace of namespaces) await dropNamespace(redis, namespace);
  } finally {
    redis.disconnect();
  }
  namespaces.clear();
}

/**
 * One application instance: a DataSource, a Redis client (single or Cluster) and a QueryCache over
 * them, the posts repository of the spec entities, and the store errors its cache reported.
 */
export interface App<R extends Redis | Cluster = Redis> {
  dataSource: DataSource;
  redis: R;
  cache: QueryCache;
  posts: PostRepository;
  storeErrors: Error[];
  close(): Promise<void>;
}

export interface AppOptions<R extends Redis | Cluster> {
  /** Drops and recreates the tables. */
  fresh?: boolean;
  cache?: Partial<QueryCacheOptions>;
  /** The schema of its tables; default the namespace. */
  schema?: string;
  extraEntities?: Function[];
  /** Its own client (closed with the app); default a new client of the shared Redis. */
  redis?: R;
  /**
   * Runs the cache's lazy setup (database identity, catalog) before returning, so that the
   * SELECT counts of a spec see only what its calls run.
   */
  setUp?: boolean;
  /** False leaves a lazyConnect client unconnected, for the cache to connect (or fail to). */
  connect?: false;
  /** A PostgreSQL server of the spec's own; default the shared one. */
  pgUrl?: string;
}

/** One application instance; its tables live in the schema named after the namespace unless told otherwise. */
export async function openApp<R extends Redis | Cluster = Redis>(
  namespace: string,
  options: AppOptions<R> = {},
): Promise<App<R>> {
  // ioredis reports every failed reconnection as an "error" event; outages are the specs' business.
  options.redis?.on("error", () => undefined);
  const dataSource = await openDataSource({ ...options, schema: options.schema ?? namespace });
  const redis = options.redis ?? ((await openRedis()) as R);
  if (redis.status === "wait" && options.connect !== false) await redis.connect();
  const cache = new QueryCache({
    dataSource,
    store: new RedisStore(redis),
    namespace,
    ...options.cache,
  });
  const storeErrors: Error[] = [];
  cache.on("storeError", (error) => storeErrors.push(error));
  if (options.setUp) await cache.get("set-up");
  return {
    dataSource,
    redis,
    cache,
    posts: new PostRepository(Post, dataSource.manager),
    storeErrors,
    async close() {
      await cache.close();
      await dataSource.destroy();
      redis.disconnect();
    },
  };
}

/**
 * Runs SQL on a connection of its own that no cache watches, as another application or a
 * migration tool would.
 */
export async function queryBehindTheCache(sql: string): Promise<void> {
  const other = new DataSource({ type: "postgres", url: (await getServices()).pgUrl });
  await other.initialize();
  try {
    await other.query(sql);
  } finally {
    await other.destroy();
  }
}

/** Deletes every key of a namespace, so tests leave Redis as they found it. */
export async function dropNamespace(redis: Redis, namespace: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${namespace}:*`, "COUNT", 1000);
    cursor = next;
    if (keys.length) await redis.unlink(...keys);
  } while (cursor !== "0");
}

/** Drops the schemas the tests created; run once after all spec files. */
export async function dropCreatedSchemas(): Promise<void> {
  if (createdSchemas.size === 0) return;
  const { pgUrl } = await getServices();
  const admin = new DataSource({ type: "postgres", url: pgUrl });
  await admin.initialize();
  for (const schema of createdSchemas)
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin.destroy();
  createdSchemas.clear();
}
