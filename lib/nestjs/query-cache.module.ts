import {
  type DynamicModule,
  Inject,
  Module,
  type OnApplicationShutdown,
  type Provider,
} from "@nestjs/common";
import { getDataSourceToken } from "@nestjs/typeorm";
import type { Cluster, Redis, RedisOptions } from "ioredis";
import type { DataSource } from "typeorm";
import { fallbackCache, setFallbackCache } from "../decorator/find-cache";
import { InvalidOptionError } from "../errors";
import { QueryCache } from "../query-cache";
import { RedisStore } from "../stores/redis-store";
import { attachSubscriber } from "./attach-subscriber";
import type {
  QueryCacheModuleAsyncOptions,
  QueryCacheModuleOptions,
  QueryCacheModuleRootOptions,
} from "./module-options";
import { getQueryCacheToken, MODULE_HANDLE, MODULE_OPTIONS } from "./tokens";

/** What one module instance opened, and what it must close. */
interface Handle {
  readonly cache: QueryCache;
  /** The Redis client the module created from options; a client the application passed stays its own. */
  readonly ownedRedis?: Redis | Cluster;
}

/**
 * The QueryCache of a TypeOrmModule connection, made injectable:
 *
 *     QueryCacheModule.forRoot({ redis: "redis://127.0.0.1:6379", namespace: "blog" })
 *
 * It registers QueryCacheSubscriber on the DataSource, makes the cache the one @Cached finds
 * from services that hold no DataSource of their own, and on application shutdown flushes
 * pending invalidations, closes the cache and quits the Redis client it created.
 */
@Module({})
export class QueryCacheModule implements OnApplicationShutdown {
  constructor(@Inject(MODULE_HANDLE) private readonly handle: Handle) {}

  static forRoot(options: QueryCacheModuleRootOptions = {}): DynamicModule {
    const { dataSource, isGlobal, ...cacheOptions } = options;
    return QueryCacheModule.build({ dataSource, isGlobal }, [
      { provide: MODULE_OPTIONS, useValue: cacheOptions },
    ]);
  }

  /** Options from other providers: `{ imports: [ConfigModule], inject: [ConfigService], useFactory: (config) => ({ ... }) }`. */
  static forRootAsync(options: QueryCacheModuleAsyncOptions): DynamicModule {
    if (typeof options?.useFactory !== "function")
      throw new InvalidOptionError(
        "QueryCacheModule.forRootAsync: useFactory must be a function that returns the module options.",
      );
    return QueryCacheModule.build(
      options,
      [{ provide: MODULE_OPTIONS, useFactory: options.useFactory, inject: options.inject ?? [] }],
      options.imports,
    );
  }

  private static build(
    connection: { dataSource?: string; isGlobal?: boolean },
    optionProviders: Provider[],
    imports: DynamicModule["imports"] = [],
  ): DynamicModule {
    const name = connection.dataSource;
    const token = getQueryCacheToken(name);
    const providers: Provider[] = [
      ...optionProviders,
      {
        provide: MODULE_HANDLE,
        useFactory: (options: QueryCacheModuleOptions, dataSource: DataSource) =>
          open(options, dataSource, token === QueryCache),
        inject: [MODULE_OPTIONS, getDataSourceToken(name)],
      },
      { provide: token, useFactory: (handle: Handle) => handle.cache, inject: [MODULE_HANDLE] },
    ];
    return {
      module: QueryCacheModule,
      global: connection.isGlobal ?? true,
      imports,
      providers,
      exports: [token],
    };
  }

  async onApplicationShutdown(): Promise<void> {
    const { cache, ownedRedis } = this.handle;
    setFallbackCache(cache, false);
    try {
      await cache.close();
    } finally {
      if (ownedRedis) await ownedRedis.quit().catch(() => ownedRedis.disconnect());
    }
  }
}

function open(
  options: QueryCacheModuleOptions,
  dataSource: DataSource,
  isDefault: boolean,
): Handle {
  if (typeof options !== "object" || options === null)
    throw new InvalidOptionError(
      "QueryCacheModule: the options must be an object, such as { redis: process.env.REDIS_URL }.",
    );
  const { redis, store, ...rest } = options;
  if (redis !== undefined && store !== undefined)
    throw new InvalidOptionError("QueryCacheModule: pass redis or store, not both.");
  const ownedRedis = redis === undefined || isClient(redis) ? undefined : connect(redis);
  const client = isClient(redis) ? redis : ownedRedis;
  // Before the cache: it checks at construction that the DataSource has its subscriber.
  attachSubscriber(dataSource);
  let cache: QueryCache;
  try {
    cache = new QueryCache({
      ...rest,
      dataSource,
      store: store ?? (client ? new RedisStore(client) : undefined),
    });
  } catch (error) {
    ownedRedis?.disconnect();
    throw error;
  }
  if (isDefault || !fallbackCache()) setFallbackCache(cache, true);
  return { cache, ownedRedis };
}

function isClient(redis: unknown): redis is Redis | Cluster {
  return (
    typeof redis === "object" &&
    redis !== null &&
    typeof (redis as Redis).sendCommand === "function" &&
    typeof (redis as Redis).quit === "function"
  );
}

function connect(redis: RedisOptions | string): Redis {
  let ioredis: typeof import("ioredis");
  try {
    ioredis = require("ioredis") as typeof import("ioredis");
  } catch {
    throw new InvalidOptionError(
      "QueryCacheModule: redis options need the ioredis package; install it (npm install ioredis).",
    );
  }
  return typeof redis === "string" ? new ioredis.Redis(redis) : new ioredis.Redis(redis);
}
