import type { QueryEvent } from "../../lib/typeorm/subscriber";
import "reflect-metadata";
import { randomUUID } from "node:crypto";
import Redis from "ioredis";
import { DataSource, type EntitySubscriberInterface, EventSubscriber } from "typeorm";
import { QueryCache, QueryCacheSubscriber, RedisStore } from "../../lib";
import type { QueryCacheOptions } from "../../lib/options";
import { getServices } from "../../example/services";
import { entities } from "./entities";


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
export async function openDataSource(options: { fresh?: boolean; schema?: string; extraEntities?: Function[] } = {}): Promise<DataSource> {
  const { pgUrl } = await getServices();
  const schema = options.schema ?? "public";
  if (!createdSchemas.has(schema)) {
    const setup = new DataSource({ type: "postgres", url: pgUrl });
    await setup.initialize();
    await setup.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await setup.destroy();
    if (schema !== "public") createdSchemas.add(schema);
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

/** One application instance: a DataSource, a Redis client and a QueryCache over them. */
export interface App {
  dataSource: DataSource;
  redis: Redis;
  cache: QueryCache;
  close(): Promise<void>;
}

/** One application instance; its tables live in the schema named after the namespace unless told otherwise. */
export async function openApp(
  namespace: string,
  options: { fresh?: boolean; cache?: Partial<QueryCacheOptions>; schema?: string; extraEntities?: Function[]; redis?: Redis } = {},
): Promise<App> {
  const dataSource = await openDataSource({ ...options, schema: options.schema ?? namespace });
  const redis = options.redis ?? (await openRedis());
  if (redis.status === "wait") await redis.connect();
  const cache = new QueryCache({ dataSource, store: new RedisStore(redis), namespace, ...options.cache });
  return {
    dataSource,
    redis,
    cache,
    async close() {
      await cache.close();
      await dataSource.destroy();
      redis.disconnect();
    },
  };
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
  for (const schema of createdSchemas) await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin.destroy();
  createdSchemas.clear();
}
