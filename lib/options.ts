import type { DataSource, EntityTarget } from "typeorm";
import { InvalidOptionError } from "./errors";
import type { CircuitBreakerOptions } from "./stores/circuit-breaker";
import type { CacheStore } from "./stores/store";

/** Something a cached value depends on: an entity class (its table) or a table name ("schema.table" or bare). */
export type Dependency = EntityTarget<unknown> | string;

export interface QueryCacheOptions {
  /** The DataSource whose queries are cached and whose writes invalidate. */
  dataSource: DataSource;
  /** Where entries live. Default: a MemoryStore (in-process, 64 MiB). Use RedisStore to share across processes. */
  store?: CacheStore;
  /** Starts every key, so one Redis can hold several applications. Default "autocache". */
  namespace?: string;
  /** Seconds an entry lives when the call names no ttl. Default 300. */
  defaultTtl?: number;
  /** Milliseconds a store call may take before the cache gives up on it and reads the database. Default 250. */
  storeTimeout?: number;
  /** Values larger than this many bytes (serialized) are returned but not stored. Default 4 MiB. */
  maxValueBytes?: number;
  /**
   * Names the database in keys instead of the identity read from the server (its system
   * identifier, database and schema). Set it when two DataSources must share entries although
   * the server sees them apart, or the reverse.
   */
  databaseId?: string;
  /**
   * Keeps hot entries decoded in process memory, up to maxBytes (of their serialized size), in
   * front of the store: a hit costs a Map lookup. Other processes' writes reach it over Redis
   * pub/sub, so it may lag them by the propagation delay (see the README); it is emptied whenever
   * that channel disconnects. Results from it are shared between callers: treat them as read-only.
   * Off by default. Needs a store that can follow invalidations (RedisStore).
   */
  local?: { maxBytes: number };
  /**
   * When to stop calling a store that keeps failing (so callers stop paying storeTimeout) and
   * how long to skip it. Default { failureThreshold: 5, coolDownMs: 1000 }.
   */
  circuitBreaker?: CircuitBreakerOptions;
  /**
   * How finely writes invalidate. "row" (the default): a read bounded by equality conditions
   * (`id = $1`, `authorId IN (...)`) on an entity's key, foreign-key, unique or indexed columns
   * depends on those rows only, and a write invalidates what the rows it changed could affect
   * (see README, Precision). "table": any write to a table invalidates every result that read it.
   */
  precision?: "row" | "table";
}

export interface EntryOptions {
  /** Seconds the entry lives. Default: the cache's defaultTtl. */
  ttl?: number;
  /** Dependencies beyond the tables the computation is seen to read. */
  dependsOn?: readonly Dependency[];
  /** wrap(): stores the result even when a query of the computation failed (a fallback). Off by default. */
  cacheFallback?: boolean;
  /**
   * Refreshes a hot entry shortly before its ttl ends, one caller at a time, instead of letting
   * every caller miss together when it expires (XFetch). `true` means beta 1; a larger beta
   * refreshes earlier. Off by default.
   */
  earlyRefresh?: boolean | { beta: number };
}

/** What set() takes: a stored value has no computation to refresh early. */
export type SetOptions = Omit<EntryOptions, "earlyRefresh">;

/** The beta of an earlyRefresh option, or undefined when it is off. */
export function earlyRefreshBeta(
  what: string,
  option: EntryOptions["earlyRefresh"],
): number | undefined {
  if (option === undefined || option === false) return undefined;
  if (option === true) return 1;
  if (typeof option !== "object" || typeof option.beta !== "number" || !(option.beta > 0)) {
    throw new InvalidOptionError(
      `${what}: earlyRefresh must be true, false or { beta: <positive number> }, got ${JSON.stringify(option)}.`,
    );
  }
  return option.beta;
}

export interface ResolvedOptions {
  readonly dataSource: DataSource;
  readonly namespace: string;
  readonly defaultTtl: number;
  readonly storeTimeout: number;
  readonly maxValueBytes: number;
  readonly databaseId?: string;
  readonly localMaxBytes?: number;
  readonly precision: "row" | "table";
}

export function resolveOptions(options: QueryCacheOptions): ResolvedOptions {
  if (typeof options !== "object" || options === null) {
    throw new InvalidOptionError(
      "QueryCache: pass an options object, new QueryCache({ dataSource, store }).",
    );
  }
  if (typeof options.dataSource?.createQueryRunner !== "function" || !options.dataSource.options) {
    throw new InvalidOptionError(
      "QueryCache: dataSource must be a TypeORM DataSource, the one whose queries are cached.",
    );
  }
  if (options.dataSource.options.type !== "postgres") {
    throw new InvalidOptionError(
      `QueryCache: only PostgreSQL DataSources are supported, this one is "${options.dataSource.options.type}".`,
    );
  }
  const namespace = options.namespace ?? "autocache";
  if (typeof namespace !== "string" || !/^[A-Za-z0-9_.-]+$/.test(namespace)) {
    throw new InvalidOptionError(
      `QueryCache: namespace must be a non-empty string of letters, digits, "_", "." or "-", got ${JSON.stringify(namespace)}.`,
    );
  }
  if (
    options.databaseId !== undefined &&
    (typeof options.databaseId !== "string" || options.databaseId === "")
  ) {
    throw new InvalidOptionError("QueryCache: databaseId must be a non-empty string when given.");
  }
  return {
    dataSource: options.dataSource,
    namespace,
    defaultTtl: checkTtl("QueryCache: defaultTtl", options.defaultTtl ?? 300),
    storeTimeout: checkPositive("QueryCache: storeTimeout", options.storeTimeout ?? 250),
    maxValueBytes: checkPositive(
      "QueryCache: maxValueBytes",
      options.maxValueBytes ?? 4 * 1024 * 1024,
    ),
    databaseId: options.databaseId,
    localMaxBytes:
      options.local === undefined
        ? undefined
        : checkPositive("QueryCache: local.maxBytes", options.local?.maxBytes),
    precision: checkPrecision(options.precision ?? "row"),
  };
}

/** A ttl is a positive whole number of seconds. */
export function checkTtl(what: string, ttl: unknown): number {
  if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl <= 0) {
    throw new InvalidOptionError(
      `${what} must be a positive whole number of seconds, got ${String(ttl)}.`,
    );
  }
  return ttl;
}

function checkPrecision(value: unknown): "row" | "table" {
  if (value !== "row" && value !== "table") {
    throw new InvalidOptionError(
      `QueryCache: precision must be "row" or "table", got ${JSON.stringify(value)}.`,
    );
  }
  return value;
}

function checkPositive(what: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new InvalidOptionError(`${what} must be a positive number, got ${String(value)}.`);
  }
  return value;
}
