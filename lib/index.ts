import "reflect-metadata";

export { QueryCache, type CacheStats } from "./query-cache";
export { Cached, cached, type CachedOptions } from "./decorator/cached";
export { QueryCacheSubscriber } from "./typeorm/subscriber";
export { NotReplicatedError, RedisStore, type RedisStoreOptions } from "./stores/redis-store";
export { CircuitOpenError } from "./stores/circuit-breaker";
export { StoreTimeoutError, StoreUnavailableError } from "./stores/store-guard";
export { MemoryStore, type MemoryStoreOptions } from "./stores/memory-store";
export type { CacheStore, KeySpace, Lookup, StoreEntry } from "./stores/store";
export type { Dependency, EntryOptions, QueryCacheOptions } from "./options";
export type { RowChange, RowImage } from "./invalidation/row-precision";
export {
  AutocacheError,
  CacheNotFoundError,
  DataSourceNotInitializedError,
  DuplicateCacheError,
  InvalidOptionError,
  SubscriberMissingError,
  UnkeyableArgumentError,
  UnserializableValueError,
} from "./errors";
