import "reflect-metadata";

export { QueryCache, type CacheHealth, type CacheStats } from "./query-cache";
export type { QueryCacheEvents } from "./events";
export type { DetailedStats, MethodStats } from "./metrics/cache-metrics";
export { Cached, cached, type CachedOptions } from "./decorator/cached";
export { QueryCacheSubscriber } from "./typeorm/subscriber";
export { RedisStore, type RedisStoreOptions } from "./stores/redis-store";
export type { CircuitBreakerOptions } from "./stores/circuit-breaker";
export { MemoryStore, type MemoryStoreOptions } from "./stores/memory-store";
export { MemcachedStore, type MemcachedStoreOptions, type MemjsClient } from "./stores/memcached-store";
export { PostgresStore, type PostgresStoreOptions } from "./stores/postgres-store";
export type { CacheStore, FollowHandlers, KeySpace, Lookup, StoreEntry } from "./stores/store";
export type { Dependency, EntryOptions, QueryCacheOptions, SetOptions } from "./options";
export type { RowChange, RowImage } from "./invalidation/row-precision";
export {
  AutocacheError,
  CacheNotFoundError,
  ChangeFeedSetupError,
  CircuitOpenError,
  DataSourceNotInitializedError,
  DuplicateCacheError,
  InvalidOptionError,
  NotReplicatedError,
  StoreTimeoutError,
  StoreUnavailableError,
  SubscriberMissingError,
  UnkeyableArgumentError,
  UnserializableValueError,
} from "./errors";
export { ChangeFeed, type ChangeFeedEvents, type Delivery } from "./change-feed/change-feed";
export type { ChangeFeedOptions } from "./change-feed/feed-options";
export type { SlotLag } from "./change-feed/slot-setup";
