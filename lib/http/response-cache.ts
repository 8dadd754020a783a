import { createHash } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import { InvalidOptionError } from "../errors";
import { argumentsDigest, PLAIN_DATA } from "../keys/stable-key";
import { checkTtl, type Dependency } from "../options";
import { type FetchPlan, QueryCache } from "../query-cache";
import { tracking } from "../tracking/tracking-context";

/** What the response cache needs of a request; Express's, Fastify's and Node's requests all have it. */
export interface RequestLike {
  method?: string;
  url?: string;
  headers: IncomingHttpHeaders;
}

export interface CacheResponseOptions<Request extends RequestLike = RequestLike> {
  /** Seconds a cached response lives at most; writes to what it read end it sooner. Default: the cache's defaultTtl. */
  ttl?: number;
  /** Request headers that choose between responses (e.g. "accept-language"): their values join the key, and the response names them in `Vary`. */
  vary?: readonly string[];
  /** Sends `Cache-Control: max-age=<seconds>` (public, or private for keyed requests) with cacheable responses, for browsers and proxies. */
  maxAge?: number;
  /** Statuses cached besides 2xx (206 never is), e.g. [404] to cache "not found" pages, which a write also invalidates. */
  statuses?: readonly number[];
  /**
   * Requests with `Authorization` or a cookie are not cached unless this names whose response it
   * is: it returns the key part (a user or tenant id, say), or undefined to leave the request
   * uncached. It also runs for anonymous requests.
   */
  key?: (request: Request) => string | number | undefined;
  /** Tables (entity classes or names) the page depends on beyond the ones its SQL reads. */
  dependsOn?: readonly Dependency[];
  /** Names the page in warnings and metrics instead of its route: "GET <name>". */
  name?: string;
}

/** A response as it is stored: enough to send it again without the handler. */
export interface StoredResponse {
  status: number;
  headers: Record<string, string | string[]>;
  /** UTF-8 text when the body is text, bytes otherwise. */
  body: string | Buffer;
  etag: string;
}

/** How one request is cached: the plan for QueryCache.fetch, and what the response must say. */
export interface RequestPlan {
  plan: FetchPlan;
  /** The Cache-Control and Vary headers a cacheable response gets. */
  headers: Record<string, string>;
}

/** Response headers as Node.js, Express and Fastify hand them out. */
export type ResponseHeaders = Readonly<Record<string, string | number | string[] | undefined>>;

// Per-connection and per-response headers: a replayed response gets its own.
const UNSTORED = new Set([
  "connection",
  "keep-alive",
  "transfer-encoding",
  "date",
  "age",
  "set-cookie",
  "proxy-connection",
  "upgrade",
]);

/**
 * The framework-neutral half of whole-response caching: which requests and responses may be
 * shared, their keys, and their ETags. A response is cached with the tables its handler read
 * (the handler runs inside QueryCache.fetch, tracked like a @Cached method), so a write to any
 * of them invalidates it.
 */
export class ResponseCache<Request extends RequestLike = RequestLike> {
  private readonly ttl?: number;
  private readonly vary: readonly string[];
  private readonly cacheControl?: { public: string; private: string };
  private readonly statuses: ReadonlySet<number>;

  constructor(
    readonly cache: QueryCache,
    private readonly options: CacheResponseOptions<Request> = {},
  ) {
    if (!(cache instanceof QueryCache))
      throw new InvalidOptionError("response cache: the first argument must be a QueryCache.");
    if (typeof options !== "object" || options === null)
      throw new InvalidOptionError(
        "response cache: options must be an object such as { ttl: 60 }.",
      );
    if (options.ttl !== undefined) this.ttl = checkTtl("response cache: ttl", options.ttl);
    if (
      options.vary !== undefined &&
      (!Array.isArray(options.vary) || options.vary.some((h) => typeof h !== "string" || h === ""))
    ) {
      throw new InvalidOptionError(
        'response cache: vary must be an array of request header names, e.g. ["accept-language"].',
      );
    }
    this.vary = (options.vary ?? []).map((h) => h.toLowerCase());
    if (options.maxAge !== undefined) {
      if (!Number.isInteger(options.maxAge) || options.maxAge < 0) {
        throw new InvalidOptionError(
          `response cache: maxAge must be a whole number of seconds (0 or more), got ${String(options.maxAge)}.`,
        );
      }
      this.cacheControl = {
        public: `public, max-age=${options.maxAge}`,
        private: `private, max-age=${options.maxAge}`,
      };
    }
    if (
      options.statuses !== undefined &&
      (!Array.isArray(options.statuses) ||
        options.statuses.some((s) => !Number.isInteger(s) || s < 100 || s > 599))
    ) {
      throw new InvalidOptionError(
        "response cache: statuses must be an array of HTTP status codes, e.g. [404].",
      );
    }
    this.statuses = new Set(options.statuses ?? []);
    if (options.key !== undefined && typeof options.key !== "function") {
      throw new InvalidOptionError(
        "response cache: key must be a function of the request that returns whose response it is (or undefined).",
      );
    }
  }

  /**
   * The plan for this request, or undefined when it must not be served from or stored in the
   * cache: not GET or HEAD, a range request, or a request that carries credentials while no
   * `key` says whose response it is.
   */
  planFor(request: Request, route: string | undefined): RequestPlan | undefined {
    const method = request.method ?? "GET";
    if (method !== "GET" && method !== "HEAD") return undefined;
    const headers = request.headers;
    if (headers.range !== undefined) return undefined;
    const credentials = headers.authorization !== undefined || headers.cookie !== undefined;
    let who: string | number | undefined;
    if (this.options.key) {
      who = this.options.key(request);
      if (who === undefined) return undefined;
    } else if (credentials) {
      return undefined;
    }
    const varied = this.vary.map((h) => headers[h] ?? null);
    const digest = argumentsDigest([request.url ?? "/", varied, who ?? null], PLAIN_DATA);
    const label = `${method} ${this.options.name ?? route ?? "(any route)"}`;
    const responseHeaders: Record<string, string> = {};
    if (this.cacheControl)
      responseHeaders["cache-control"] = credentials
        ? this.cacheControl.private
        : this.cacheControl.public;
    if (this.vary.length > 0) responseHeaders.vary = this.vary.join(", ");
    return {
      plan: {
        key: (keys) => keys.method("response", method, digest),
        label,
        ttl: this.ttl,
        dependsOn: this.options.dependsOn,
      },
      headers: responseHeaders,
    };
  }

  /** Why a response must not be shared, or undefined when it may be. */
  refusal(status: number, headers: ResponseHeaders): string | undefined {
    if (headers["set-cookie"] !== undefined) return "the response sets a cookie";
    if (status === 206 || ((status < 200 || status > 299) && !this.statuses.has(status)))
      return `the response has status ${status}`;
    const cacheControl = String(headers["cache-control"] ?? "");
    if (/\b(no-store|private)\b/i.test(cacheControl))
      return `the handler sent Cache-Control: ${cacheControl}`;
    return undefined;
  }

  /** The response to store, built from what the handler sent. */
  static store(status: number, headers: ResponseHeaders, body: Buffer): StoredResponse {
    const kept: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined || UNSTORED.has(name)) continue;
      kept[name] = Array.isArray(value) ? value.map(String) : String(value);
    }
    const etag = typeof kept.etag === "string" ? kept.etag : ResponseCache.etagOf(body);
    kept.etag = etag;
    const text = body.toString("utf8");
    return {
      status,
      headers: kept,
      body: Buffer.byteLength(text) === body.length && !text.includes("\uFFFD") ? text : body,
      etag,
    };
  }

  /** A strong ETag of the bytes. */
  static etagOf(body: Buffer | string): string {
    return `"${createHash("sha1").update(body).digest("base64url")}"`;
  }

  /** Whether If-None-Match names this ETag (weak comparison, as RFC 9110 asks for GET). */
  static notModified(request: RequestLike, etag: string): boolean {
    const header = request.headers["if-none-match"];
    if (header === undefined) return false;
    const wanted = opaque(etag);
    return String(header)
      .split(",")
      .some((tag) => tag.trim() === "*" || opaque(tag.trim()) === wanted);
  }

  /**
   * Runs the handler as the miss of QueryCache.fetch and resolves what it stored (or undefined
   * when the handler answered this request itself); `run` resolves the response once it is sent,
   * or a reason when it must not be stored, which keeps it out of the cache.
   */
  async fetch<T>(
    planned: RequestPlan,
    run: () => Promise<T | { refused: string }>,
  ): Promise<{ value: T; ran: boolean }> {
    let ran = false;
    const value = await this.cache.fetch(planned.plan, async () => {
      ran = true;
      const context = tracking.current();
      const outcome = await run();
      if (isRefusal(outcome)) {
        context?.refuse(outcome.refused);
        return null;
      }
      return outcome;
    });
    return { value: value as T, ran };
  }
}

function isRefusal(value: unknown): value is { refused: string } {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as { refused?: unknown }).refused === "string"
  );
}

function opaque(tag: string): string {
  return tag.startsWith("W/") ? tag.slice(2) : tag;
}
