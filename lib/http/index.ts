export { cacheResponses, type ExpressRequestLike } from "./express";
export { cacheResponseHooks, type FastifyResponseHooks } from "./fastify";
export {
  type CacheResponseOptions,
  type RequestLike,
  ResponseCache,
  type StoredResponse,
} from "./response-cache";
