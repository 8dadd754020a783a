import type { IncomingMessage, ServerResponse } from "node:http";
import type { QueryCache } from "../query-cache";
import { type CacheResponseOptions, ResponseCache, type StoredResponse } from "./response-cache";
import { sendStored } from "./send";

/** Express's request, as far as the middleware reads it. */
export interface ExpressRequestLike extends IncomingMessage {
  originalUrl?: string;
  baseUrl?: string;
  route?: { path?: unknown };
}

/**
 * Express middleware that caches whole GET and HEAD responses, invalidated by writes to the
 * tables the handler read. On a route, `app.get("/posts", cacheResponses(cache, { ttl: 60 }), handler)`;
 * with `app.use(...)`, for every route after it.
 */
export function cacheResponses(
  cache: QueryCache,
  options: CacheResponseOptions<ExpressRequestLike> = {},
) {
  const responses = new ResponseCache<ExpressRequestLike>(cache, options);
  return function cacheResponsesMiddleware(
    request: ExpressRequestLike,
    response: ServerResponse,
    next: (error?: unknown) => void,
  ): void {
    const route =
      typeof request.route?.path === "string"
        ? `${request.baseUrl ?? ""}${request.route.path}`
        : undefined;
    const planned = responses.planFor(urlOf(request), route);
    if (!planned) return next();
    responses
      .fetch<StoredResponse>(planned, () => capture(responses, response, planned.headers, next))
      .then(
        ({ value, ran }) => {
          if (!ran && value) sendStored(request, response, value, planned.headers);
        },
        (error: unknown) => {
          if (!response.headersSent) next(error);
        },
      );
  };
}

/** Keys use the URL as the application received it, before any router took its prefix off. */
function urlOf(request: ExpressRequestLike): ExpressRequestLike {
  if (request.originalUrl === undefined || request.originalUrl === request.url) return request;
  return Object.assign(Object.create(request) as ExpressRequestLike, { url: request.originalUrl });
}

/**
 * Lets the handler answer, and records what it sends. Whether the response may be shared is
 * decided when its head is written, so the cache headers go only on a response that is cached.
 */
function capture(
  responses: ResponseCache<ExpressRequestLike>,
  response: ServerResponse,
  cacheHeaders: Record<string, string>,
  next: (error?: unknown) => void,
): Promise<StoredResponse | { refused: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let refused: string | undefined;
    // A layer mounted before this one (compression, say) has wrapped the response already: what
    // is recorded here is its input, so the headers that describe its output are not stored, and
    // on a hit it runs again and sets them anew.
    const layered = Object.hasOwn(response, "write") || Object.hasOwn(response, "end");
    const collect = (chunk: unknown, encoding: unknown) => {
      if (chunk === undefined || chunk === null || typeof chunk === "function") return;
      chunks.push(
        Buffer.isBuffer(chunk)
          ? chunk
          : Buffer.from(
              chunk as string,
              typeof encoding === "string" ? (encoding as BufferEncoding) : "utf8",
            ),
      );
    };
    const { write, end, writeHead } = response;
    response.writeHead = function (this: ServerResponse, ...args: unknown[]) {
      const status = typeof args[0] === "number" ? args[0] : this.statusCode;
      refused = responses.refusal(status, this.getHeaders());
      if (!refused)
        for (const [name, value] of Object.entries(cacheHeaders)) this.setHeader(name, value);
      return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
    } as typeof writeHead;
    response.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]) {
      collect(chunk, rest[0]);
      return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    } as typeof write;
    response.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]) {
      collect(chunk, rest[0]);
      return (end as (...a: unknown[]) => ServerResponse).call(this, chunk, ...rest);
    } as typeof end;
    response.once("finish", () => {
      refused ??= responses.refusal(response.statusCode, response.getHeaders());
      if (refused) return resolve({ refused });
      const headers = response.getHeaders();
      if (layered) for (const name of ["content-encoding", "content-length"]) delete headers[name];
      resolve(ResponseCache.store(response.statusCode, headers, Buffer.concat(chunks)));
    });
    // A client that went away before the end: what was sent is not the whole response.
    response.once("close", () =>
      resolve({ refused: "the client closed the connection before the response ended" }),
    );
    next();
  });
}
