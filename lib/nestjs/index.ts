import "reflect-metadata";
export { QueryCacheModule } from "./query-cache.module";
export type { QueryCacheModuleAsyncOptions, QueryCacheModuleOptions, QueryCacheModuleRootOptions } from "./module-options";
export { getQueryCacheToken, InjectQueryCache } from "./tokens";
export { CacheResponse, type CacheResponseDecoratorOptions, ResponseCacheInterceptor } from "./cache-response";
export { attachSubscriber } from "./attach-subscriber";
