import { randomUUID } from "node:crypto";
import {
  applyDecorators,
  type CallHandler,
  type ExecutionContext,
  Injectable,
  type NestInterceptor,
  SetMetadata,
  UseInterceptors,
} from "@nestjs/common";
import { HttpAdapterHost, ModuleRef, Reflector } from "@nestjs/core";
import { lastValueFrom, type Observable, of } from "rxjs";
import { InvalidOptionError } from "../errors";
import {
  type CacheResponseOptions,
  type RequestLike,
  ResponseCache,
  type ResponseHeaders,
} from "../http/response-cache";
import type { QueryCache } from "../query-cache";
import { getQueryCacheToken } from "./tokens";

export interface CacheResponseDecoratorOptions extends CacheResponseOptions<any> {
  /** The TypeOrmModule connection whose QueryCache holds the responses. Default: the default one. */
  dataSource?: string;
}

const OPTIONS = Symbol("CacheResponseOptions");

/**
 * Caches the handler's responses to GET and HEAD requests, keyed by path, query and the `vary`
 * headers, until a write to a table the handler read (or the ttl) ends them. A cached response
 * carries an ETag, and a request whose If-None-Match names it gets 304 without the handler.
 *
 *     @Get() @CacheResponse({ ttl: 60, maxAge: 10 }) list() { return this.posts.findPublished(); }
 */
export function CacheResponse(
  options: CacheResponseDecoratorOptions = {},
): MethodDecorator & ClassDecorator {
  return applyDecorators(SetMetadata(OPTIONS, options), UseInterceptors(ResponseCacheInterceptor));
}

/** A handler's response as it is stored: its value before serialization, its status and its headers. */
interface StoredValue {
  status: number;
  headers: Record<string, string | string[]>;
  value: unknown;
  etag: string;
}

/** Reads and writes status and headers on Express's and Fastify's responses alike. */
interface PlatformResponse {
  statusCode: number;
  getHeaders(): ResponseHeaders;
  /** Express's. */
  headersSent?: boolean;
  /** Fastify's. */
  sent?: boolean;
}

@Injectable()
export class ResponseCacheInterceptor implements NestInterceptor {
  private readonly caches = new WeakMap<object, ResponseCache>();

  constructor(
    private readonly reflector: Reflector,
    private readonly moduleRef: ModuleRef,
    private readonly adapterHost: HttpAdapterHost,
  ) {}

  async intercept(context: ExecutionContext, next: CallHandler): Promise<Observable<unknown>> {
    if (context.getType() !== "http") return next.handle();
    const responses = this.responseCache(context);
    const request = context.switchToHttp().getRequest<RequestLike>();
    const response = context.switchToHttp().getResponse<PlatformResponse>();
    const route = `${context.getClass().name}.${context.getHandler().name}`;
    const planned = responses.planFor(request, route);
    if (!planned) return next.handle();
    let produced: unknown;
    const { value: stored, ran } = await responses.fetch<StoredValue>(planned, async () => {
      produced = await lastValueFrom(next.handle(), { defaultValue: undefined });
      // With @Res() (no passthrough) Nest sends nothing itself: there is no value to replay.
      if (response.headersSent || response.sent)
        return { refused: "the handler sent the response itself (@Res() without passthrough)" };
      const refused = responses.refusal(response.statusCode, response.getHeaders());
      if (refused) return { refused };
      return {
        status: response.statusCode,
        headers: keptHeaders(response.getHeaders()),
        value: produced,
        etag: etagOf(response.statusCode, produced),
      };
    });
    // The handler ran for this request and its response may not be shared: it goes out as it is.
    if (!stored) return of(produced);
    const adapter = this.adapterHost.httpAdapter;
    if (!ran) {
      adapter.status(response, stored.status);
      for (const [name, value] of Object.entries(stored.headers))
        adapter.setHeader(response, name, value as string);
    }
    for (const [name, value] of Object.entries(planned.headers))
      adapter.setHeader(response, name, value);
    adapter.setHeader(response, "etag", stored.etag);
    if (ResponseCache.notModified(request, stored.etag)) {
      adapter.status(response, 304);
      return of(undefined);
    }
    return of(ran ? produced : stored.value);
  }

  private responseCache(context: ExecutionContext): ResponseCache {
    const handler = context.getHandler();
    let responses = this.caches.get(handler);
    if (!responses) {
      const options =
        this.reflector.getAllAndOverride<CacheResponseDecoratorOptions>(OPTIONS, [
          handler,
          context.getClass(),
        ]) ?? {};
      const { dataSource, ...rest } = options;
      let cache: QueryCache;
      try {
        cache = this.moduleRef.get<QueryCache>(getQueryCacheToken(dataSource) as string, {
          strict: false,
        });
      } catch {
        const forRoot =
          dataSource === undefined
            ? "QueryCacheModule.forRoot({ ... })"
            : `QueryCacheModule.forRoot({ dataSource: "${dataSource}", ... })`;
        throw new InvalidOptionError(
          `@CacheResponse on ${context.getClass().name}.${handler.name}: no QueryCache is provided. Import ${forRoot} in the application module.`,
        );
      }
      this.caches.set(handler, (responses = new ResponseCache(cache, rest)));
    }
    return responses;
  }
}

// Set by the platform for each response, or by the interceptor from the entry.
const PER_RESPONSE = new Set([
  "etag",
  "content-length",
  "date",
  "connection",
  "keep-alive",
  "transfer-encoding",
  "x-powered-by",
  "cache-control",
  "vary",
]);

function keptHeaders(headers: ResponseHeaders): Record<string, string | string[]> {
  const kept: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !PER_RESPONSE.has(name))
      kept[name] = Array.isArray(value) ? value.map(String) : String(value);
  }
  return kept;
}

/** An ETag of what the platform will serialize: the value as JSON (bigints as text), with its status. */
function etagOf(status: number, value: unknown): string {
  let text: string;
  try {
    text = `${status}:${JSON.stringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}`;
  } catch {
    // What JSON cannot show is not stored either (the cache refuses it); the tag only has to be unique.
    text = randomUUID();
  }
  return ResponseCache.etagOf(text);
}
