import type { ServerResponse } from "node:http";
import { type RequestLike, ResponseCache, type StoredResponse } from "./response-cache";

/** Sends a stored response on a Node.js response: 304 when the client holds its ETag already. */
export function sendStored(
  request: RequestLike,
  response: ServerResponse,
  stored: StoredResponse,
  cacheHeaders: Record<string, string>,
): void {
  const headers = { ...stored.headers, ...cacheHeaders };
  // Headers set one by one and sent with the body, as a handler does: a layer in front (a
  // compressor, say) sees them and may still change them.
  if (ResponseCache.notModified(request, stored.etag)) {
    response.statusCode = 304;
    for (const [name, value] of Object.entries(notModifiedHeaders(headers)))
      response.setHeader(name, value);
    response.end();
    return;
  }
  response.statusCode = stored.status;
  for (const [name, value] of Object.entries(headers)) response.setHeader(name, value);
  // A HEAD entry has no body: its stored Content-Length is the one of the GET it stands for.
  if (request.method === "HEAD") {
    response.end();
    return;
  }
  response.setHeader("content-length", Buffer.byteLength(stored.body));
  response.end(stored.body);
}

/** What a 304 repeats of the full response (RFC 9110 15.4.5). */
export function notModifiedHeaders(
  headers: Record<string, string | string[]>,
): Record<string, string | string[]> {
  const kept: Record<string, string | string[]> = {};
  for (const name of ["etag", "cache-control", "vary", "expires", "content-location"]) {
    if (headers[name] !== undefined) kept[name] = headers[name];
  }
  return kept;
}
