import type {
  FastifyReply,
  FastifyRequest,
  onSendHookHandler,
  preHandlerHookHandler,
} from "fastify";
import type { QueryCache } from "../query-cache";
import { type CacheResponseOptions, ResponseCache, type StoredResponse } from "./response-cache";
import { notModifiedHeaders } from "./send";

export interface FastifyResponseHooks {
  preHandler: preHandlerHookHandler;
  onSend: onSendHookHandler;
}

/**
 * Fastify hooks that cache whole GET and HEAD responses, invalidated by writes to the tables the
 * handler read. On a route, `app.get("/posts", cacheResponseHooks(cache, { ttl: 60 }), handler)`;
 * for every route, add both with `app.addHook("preHandler", hooks.preHandler)` and
 * `app.addHook("onSend", hooks.onSend)`.
 */
export function cacheResponseHooks(
  cache: QueryCache,
  options: CacheResponseOptions<FastifyRequest> = {},
): FastifyResponseHooks {
  const responses = new ResponseCache<FastifyRequest>(cache, options);
  /** The misses whose handler runs now, waiting for what onSend sees of their response. */
  const running = new WeakMap<
    FastifyRequest,
    {
      resolve(outcome: StoredResponse | { refused: string }): void;
      headers: Record<string, string>;
    }
  >();

  const preHandler = ((
    request: FastifyRequest,
    reply: FastifyReply,
    done: (error?: Error) => void,
  ): void => {
    const planned = responses.planFor(request, request.routeOptions.url);
    if (!planned) return done();
    responses
      .fetch<StoredResponse>(
        planned,
        () =>
          new Promise((resolve) => {
            running.set(request, { resolve, headers: planned.headers });
            reply.raw.once("close", () =>
              resolve({ refused: "the client closed the connection before the response ended" }),
            );
            done();
          }),
      )
      .then(
        ({ value, ran }) => {
          if (!ran && value) send(request, reply, value, planned.headers);
        },
        (error: Error) => {
          if (!reply.sent) done(error);
        },
      );
  }) as preHandlerHookHandler;

  const onSend = ((
    request: FastifyRequest,
    reply: FastifyReply,
    payload: unknown,
    done: (error: Error | null, payload?: unknown) => void,
  ): void => {
    const miss = running.get(request);
    if (!miss) return done(null, payload);
    running.delete(request);
    const refused =
      typeof payload === "string" ||
      Buffer.isBuffer(payload) ||
      payload === null ||
      payload === undefined
        ? responses.refusal(reply.statusCode, reply.getHeaders())
        : "the response is a stream";
    if (refused) {
      miss.resolve({ refused });
      return done(null, payload);
    }
    for (const [name, value] of Object.entries(miss.headers)) reply.header(name, value);
    const body = Buffer.isBuffer(payload)
      ? payload
      : Buffer.from((payload as string | null | undefined) ?? "");
    if (!reply.hasHeader("etag")) reply.header("etag", ResponseCache.etagOf(body));
    miss.resolve(ResponseCache.store(reply.statusCode, reply.getHeaders(), body));
    done(null, payload);
  }) as onSendHookHandler;

  return { preHandler, onSend };
}

function send(
  request: FastifyRequest,
  reply: FastifyReply,
  stored: StoredResponse,
  cacheHeaders: Record<string, string>,
): void {
  const headers: Record<string, string | string[]> = { ...stored.headers, ...cacheHeaders };
  if (ResponseCache.notModified(request, stored.etag)) {
    reply.code(304).headers(notModifiedHeaders(headers)).send();
    return;
  }
  // Fastify counts the body itself, and leaves it out of a HEAD response.
  delete headers["content-length"];
  reply.code(stored.status).headers(headers).send(stored.body);
}
