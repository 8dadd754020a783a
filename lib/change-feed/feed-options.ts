import type { ClientConfig } from "pg";
import { InvalidOptionError } from "../errors";
import type { QueryCache } from "../query-cache";

/**
 * How to reach the database: what pg's ClientConfig takes (connectionString, host, port, user,
 * password, database, ssl...). Declared here so that the published types do not require @types/pg.
 */
export interface FeedConnection {
  connectionString?: string;
  host?: string;
  port?: number;
  user?: string;
  password?: string | (() => string | Promise<string>);
  database?: string;
  ssl?: boolean | object;
  application_name?: string;
  connectionTimeoutMillis?: number;
  keepAlive?: boolean;
  options?: string;
}

export interface ChangeFeedOptions {
  /** The cache whose entries the database's committed changes invalidate. */
  cache: QueryCache;
  /**
   * How to reach the cache's database for replication (pg ClientConfig). The role needs the
   * REPLICATION attribute (or rds_replication, or superuser), and to create what is missing, the
   * right to create a publication FOR ALL TABLES and a slot.
   */
  connection: FeedConnection;
  /**
   * The logical replication slot: lowercase letters, digits and "_". One per cache namespace;
   * every instance of one application names the same slot, and one of them consumes it at a time.
   */
  slot: string;
  /** The publication the slot decodes. Default "autocache" (FOR ALL TABLES when the feed creates it). */
  publication?: string;
  /** Create the publication and the slot when they are missing. Default true. */
  create?: boolean;
  /**
   * Milliseconds between attempts to take the slot while another instance holds it, and to
   * reconnect after the connection broke. It bounds how long a dead holder's slot stays idle.
   * Default 1000.
   */
  retryInterval?: number;
  /** Emit "lag" when the server keeps more than this many WAL bytes for the slot. Default 1 GiB. */
  lagWarningBytes?: number;
  /** Milliseconds between two lag checks. Default 30000. */
  lagCheckInterval?: number;
  /**
   * Row images kept per delivery; past that (a bulk load, or a long store outage) the feed
   * invalidates the whole tables, so memory stays bounded. Default 10000.
   */
  maxRowsPerDelivery?: number;
}

/** @internal */
export interface ResolvedFeedOptions {
  readonly cache: QueryCache;
  readonly connection: ClientConfig;
  readonly slot: string;
  readonly publication: string;
  readonly create: boolean;
  readonly retryInterval: number;
  readonly lagWarningBytes: number;
  readonly lagCheckInterval: number;
  readonly maxRowsPerDelivery: number;
}

/** @internal */
export function resolveFeedOptions(options: ChangeFeedOptions): ResolvedFeedOptions {
  if (
    typeof options !== "object" ||
    options === null ||
    typeof options.cache?.invalidateTables !== "function"
  ) {
    throw new InvalidOptionError(
      "ChangeFeed: pass { cache, connection, slot }, where cache is the QueryCache to invalidate.",
    );
  }
  if (typeof options.connection !== "object" || options.connection === null) {
    throw new InvalidOptionError(
      "ChangeFeed: connection must be a pg ClientConfig for the cache's database, e.g. { connectionString }.",
    );
  }
  if (typeof options.slot !== "string" || !/^[a-z0-9_]{1,63}$/.test(options.slot)) {
    throw new InvalidOptionError(
      `ChangeFeed: slot must be 1 to 63 lowercase letters, digits or "_" (PostgreSQL's rule), got ${JSON.stringify(options.slot)}.`,
    );
  }
  const publication = options.publication ?? "autocache";
  if (typeof publication !== "string" || publication === "" || publication.length > 63) {
    throw new InvalidOptionError(
      `ChangeFeed: publication must be a name of 1 to 63 characters, got ${JSON.stringify(options.publication)}.`,
    );
  }
  return {
    cache: options.cache,
    connection: options.connection,
    slot: options.slot,
    publication,
    create: options.create ?? true,
    retryInterval: positive("retryInterval", options.retryInterval ?? 1000),
    lagWarningBytes: positive("lagWarningBytes", options.lagWarningBytes ?? 1024 ** 3),
    lagCheckInterval: positive("lagCheckInterval", options.lagCheckInterval ?? 30_000),
    maxRowsPerDelivery: positive("maxRowsPerDelivery", options.maxRowsPerDelivery ?? 10_000),
  };
}

function positive(name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new InvalidOptionError(
      `ChangeFeed: ${name} must be a positive number, got ${String(value)}.`,
    );
  }
  return value;
}
