import "reflect-metadata";

export { QueryCache, type CacheStats } from "./query-cache";
export { Cached, cached, type CachedOptions } from "./decorator/cached";
export { QueryCacheSubscriber } from "./typeorm/subscriber";
export { RedisStore } from "./stores/redis-store";
export { MemoryStore, type MemoryStoreOptions } from "./stores/memory-store";
export type { CacheStore, KeySpace, Lookup, StoreEntry } from "./stores/store";
export type { Dependency, EntryOptions, QueryCacheOptions } from "./options";
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
