import "reflect-metadata";

export { attachSubscriber } from "./attach-subscriber";
export {
  CacheResponse,
  type CacheResponseDecoratorOptions,
  ResponseCacheInterceptor,
} from "./cache-response";
export type {
  QueryCacheModuleAsyncOptions,
  QueryCacheModuleOptions,
  QueryCacheModuleRootOptions,
} from "./module-options";
export { QueryCacheModule } from "./query-cache.module";
export { getQueryCacheToken, InjectQueryCache } from "./tokens";
