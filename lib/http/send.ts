import type { ServerResponse } from "node:http";
import { type RequestLike, ResponseCache, type StoredResponse } from "./response-cache";

/** Sends a stored response on a Node.js response: 304 when the client holds its ETag already. */
export function sendStored(request: RequestLike, response: ServerResponse, stored: StoredResponse, cacheHeaders: Record<string, string>): void {
  const headers = { ...stored.headers, ...cacheHeaders };
  if (ResponseCache.notModified(request, stored.etag)) {
    response.writeHead(304, notModifiedHeaders(headers));
    response.end();
    return;
  }
  // A HEAD entry has no body: its stored Content-Length is the one of the GET it stands for.
  if (request.method === "HEAD") {
    response.writeHead(stored.status, headers);
    response.end();
    return;
  }
  response.writeHead(stored.status, { ...headers, "content-length": String(Buffer.byteLength(stored.body)) });
  response.end(stored.body);
}

/** What a 304 repeats of the full response (RFC 9110 15.4.5). */
export function notModifiedHeaders(headers: Record<string, string | string[]>): Record<string, string | string[]> {
  const kept: Record<string, string | string[]> = {};
  for (const name of ["etag", "cache-control", "vary", "expires", "content-location"]) {
    if (headers[name] !== undefined) kept[name] = headers[name];
  }
  return kept;
}
