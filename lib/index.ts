import "reflect-metadata";

export { ChangeFeed, type ChangeFeedEvents, type Delivery } from "./change-feed/change-feed";
export type { ChangeFeedOptions } from "./change-feed/feed-options";
export type { SlotLag } from "./change-feed/slot-setup";
export { Cached, type CachedOptions, cached } from "./decorator/cached";
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
export type { QueryCacheEvents } from "./events";
export type { RowChange, RowImage } from "./invalidation/row-precision";
export type { DetailedStats, MethodStats } from "./metrics/cache-metrics";
export type { Dependency, EntryOptions, QueryCacheOptions, SetOptions } from "./options";
export { type CacheHealth, type CacheStats, QueryCache } from "./query-cache";
export type { CircuitBreakerOptions } from "./stores/circuit-breaker";
export {
  MemcachedStore,
  type MemcachedStoreOptions,
  type MemjsClient,
} from "./stores/memcached-store";
export { MemoryStore, type MemoryStoreOptions } from "./stores/memory-store";
export { PostgresStore, type PostgresStoreOptions } from "./stores/postgres-store";
export { RedisStore, type RedisStoreOptions } from "./stores/redis-store";
export type { CacheStore, FollowHandlers, KeySpace, Lookup, StoreEntry } from "./stores/store";
export { QueryCacheSubscriber } from "./typeorm/subscriber";
