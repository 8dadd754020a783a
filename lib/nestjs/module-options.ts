import type { InjectionToken, ModuleMetadata, OptionalFactoryDependency } from "@nestjs/common";
import type { Cluster, Redis, RedisOptions } from "ioredis";
import type { QueryCacheOptions } from "../options";
import type { CacheStore } from "../stores/store";

export interface QueryCacheModuleOptions extends Omit<QueryCacheOptions, "dataSource" | "store"> {
  /**
   * Redis as an ioredis client (yours: the module never closes it), or as a URL or ioredis
   * options (the module's: it connects, and quits on application shutdown).
   */
  redis?: Redis | Cluster | RedisOptions | string;
  /** Any other store, yours to close. Without redis or store, a MemoryStore in this process. */
  store?: CacheStore;
}

interface Connection {
  /**
   * The name of the TypeOrmModule connection whose DataSource is cached (its `name` option).
   * Default: the default connection.
   */
  dataSource?: string;
  /** Whether QueryCache can be injected everywhere without importing the module. Default true. */
  isGlobal?: boolean;
}

export type QueryCacheModuleRootOptions = QueryCacheModuleOptions & Connection;

export interface QueryCacheModuleAsyncOptions extends Connection {
  /** Modules that export what the factory injects (ConfigModule, say). */
  imports?: ModuleMetadata["imports"];
  inject?: (InjectionToken | OptionalFactoryDependency)[];
  useFactory: (...args: any[]) => QueryCacheModuleOptions | Promise<QueryCacheModuleOptions>;
}
