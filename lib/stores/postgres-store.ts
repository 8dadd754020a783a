import type { Pool, PoolClient, QueryResult, QueryResultRow } from "pg";
import { InvalidOptionError } from "../errors";
import { judge } from "./entry-text";
import { Statements } from "./postgres/statements";
import type { CacheStore, KeySpace, Lookup, StoreEntry } from "./store";

export interface PostgresStoreOptions {
  /**
   * A pool of the store's own (tip: connect it with options "-c plan_cache_mode=force_generic_plan",
   * as the store does for a pool it opens). Never the application's (TypeORM's) pool: a cached call looks up
   * its entry while the caller may hold a connection of that pool, and must not wait for another.
   */
  pool?: PgPool;
  /** Where the store opens a pool of its own (closed by close()), when no pool is given. */
  connectionString?: string;
  /** Connections of the pool the store opens (a lookup holds one for a single short statement). Default 4. */
  poolSize?: number;
  /** The schema the store's tables live in, created on first use. Give the cache a schema of its own. */
  schema: string;
  /** Milliseconds between sweeps of expired entries (by whichever instance wins an advisory lock). Default 60000. */
  cleanupInterval?: number;
}

/**
 * What the store needs of a pg Pool. Declared here so that the published types do not require
 * @types/pg; a pg Pool is one.
 */
export interface PgPool {
  query(config: { name?: string; text: string; values?: unknown[] }): Promise<unknown>;
  connect(): Promise<unknown>;
  end(): Promise<void>;
  on(event: "error", listener: (error: Error) => void): unknown;
}

type StatementName = Exclude<keyof Statements, "setup" | "prefix" | "schema">;

/** SQLSTATEs that mean the store's tables or functions are gone: they are created again. */
const MISSING_OBJECT = new Set(["42P01", "42883", "3F000"]);

/**
 * Stores entries in UNLOGGED tables of a PostgreSQL schema, so that several application
 * instances share one cache with no server besides the database. The version protocol is the
 * one of RedisStore, in SQL functions created beside the tables: a bump moves the clock
 * (`greatest(clock + 1, server time in µs)`) and the named versions to it, never down; a hit is
 * one statement that reads the entry, the clock and the entry's versions in one snapshot. A
 * TRUNCATE of the tables (or a crash, which empties unlogged tables) loses versions and clock
 * together: missing versions count as newer than every stamp, and come back above the server's
 * clock, so no entry stamped before is served again.
 *
 * Bumps run after the writer's commit, like every store's: a bump inside the writer's
 * transaction would hold the clock row (which every bump updates) until that transaction
 * commits, serializing every writer of the database, and without that lock a computation stamped
 * between the bump and the commit would read the old rows under a stamp above the new version.
 *
 * Expired entries are deleted when a lookup finds them, and swept by a timer (unref'd, so it never
 * keeps the process alive) in whichever instance wins a transaction-scoped advisory lock.
 *
 * There is no follow() (no LISTEN/NOTIFY feed yet), so a QueryCache over this store refuses the
 * in-process tier (`local`).
 */
export class PostgresStore implements CacheStore {
  private readonly pool: Pool;
  private readonly owned: boolean;
  private readonly sql: Statements;
  private ready?: Promise<void>;
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(options: PostgresStoreOptions) {
    if (typeof options.schema !== "string" || options.schema === "") {
      throw new InvalidOptionError(
        "PostgresStore: schema must name the schema its tables live in, such as 'autocache'.",
      );
    }
    if (options.pool) {
      // The structural PgPool keeps @types/pg out of the published types; what is passed is a pg Pool.
      this.pool = options.pool as Pool;
      this.owned = false;
    } else if (options.connectionString) {
      const { Pool } = loadPg();
      this.pool = new Pool({
        connectionString: options.connectionString,
        max: options.poolSize ?? 4,
        allowExitOnIdle: true,
        application_name: "typeorm-autocache",
        // Its statements are prepared once and always look up primary keys: planning them anew on
        // each call (PostgreSQL's default for the first executions and whenever it hesitates)
        // costs more than running them.
        options: "-c plan_cache_mode=force_generic_plan",
      });
      // An idle connection the server drops must not crash the process; the next query reconnects.
      this.pool.on("error", () => undefined);
      this.owned = true;
    } else {
      throw new InvalidOptionError(
        "PostgresStore: pass a pool of the store's own, or a connectionString to open one.",
      );
    }
    this.sql = new Statements(options.schema);
    const interval = options.cleanupInterval ?? 60_000;
    if (!Number.isFinite(interval) || interval <= 0)
      throw new InvalidOptionError(
        `PostgresStore: cleanupInterval must be a positive number of milliseconds, got ${String(interval)}.`,
      );
    this.timer = setInterval(() => void this.sweep().catch(() => undefined), interval);
    this.timer.unref();
    // Started now, so the first cached call does not wait for the tables (it would time out).
    this.setup().catch(() => undefined);
  }

  get available(): boolean {
    return !this.closed;
  }

  async lookup(key: string, clockKey: string): Promise<Lookup> {
    const [row] = await this.query("lookup", [key, clockKey]);
    if (row.value === null) return { hit: false, stamp: Number(row.clock ?? 0) };
    if (row.expired) {
      void this.query("deleteExpired", [key]).catch(() => undefined);
      return { hit: false, stamp: Number(row.clock ?? 0) };
    }
    return judge(
      { stamp: String(row.stamp), deps: row.deps, value: (row.value as Buffer).toString("utf8") },
      row.clock,
      row.versions,
    );
  }

  async stamp(clockKey: string): Promise<number> {
    const [row] = await this.query("stamp", [clockKey]);
    return Number(row?.version ?? 0);
  }

  async set(entry: StoreEntry, clockKey: string): Promise<boolean> {
    // bytea, not text: a store keeps any string, and PostgreSQL's text cannot hold U+0000.
    const result = await this.run("set", [
      entry.key,
      entry.stamp,
      entry.deps,
      Buffer.from(entry.value, "utf8"),
      entry.ttlSeconds,
      clockKey,
    ]);
    return result.rowCount === 1;
  }

  async bump(versionKeys: readonly string[], clockKey: string): Promise<void> {
    if (versionKeys.length === 0) return;
    await this.query("bump", [clockKey, [...versionKeys]]);
  }

  async delete(key: string): Promise<void> {
    await this.query("delete", [key]);
  }

  async clear(space: KeySpace): Promise<void> {
    await this.query("clearEntries", [space.entryPrefix]);
    await this.query("clearVersions", [space.clockKey, space.versionPrefix]);
  }

  /**
   * Deletes expired entries, unless another instance is doing it now (the advisory lock is
   * released with the transaction). Runs on a timer; exposed for tests and for callers that want
   * it at a time of their choosing.
   */
  async sweep(): Promise<number> {
    await this.setup();
    return this.inTransaction(async (client) => {
      const won = await client.query("SELECT pg_try_advisory_xact_lock(hashtext($1)) AS won", [
        `typeorm-autocache:${this.sql.schema}`,
      ]);
      return won.rows[0].won ? ((await client.query(this.sql.sweep)).rowCount ?? 0) : 0;
    });
  }

  /** Stops the sweep timer, and closes the pool when the store opened it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    if (this.owned) await this.pool.end();
  }

  private async query(name: StatementName, values: unknown[]): Promise<QueryResultRow[]> {
    return (await this.run(name, values)).rows;
  }

  /** Runs a prepared statement on the store's pool; one round trip once the tables exist. */
  private async run(name: StatementName, values: unknown[]): Promise<QueryResult> {
    await this.setup();
    const run = () =>
      this.pool.query({ name: this.sql.prefix + name, text: this.sql[name], values });
    try {
      return await run();
    } catch (error) {
      if (!MISSING_OBJECT.has((error as { code?: string }).code ?? "")) throw error;
      // Dropped under us: create the tables again (empty, so nothing stale can be read) and retry.
      this.ready = undefined;
      await this.setup();
      return run();
    }
  }

  /** Creates the schema, tables and functions once, under an advisory lock so instances do not race. */
  private setup(): Promise<void> {
    this.ready ??= this.inTransaction(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [
        `typeorm-autocache:setup:${this.sql.schema}`,
      ]);
      await client.query(this.sql.setup);
    }).catch((error) => {
      this.ready = undefined;
      throw error;
    });
    return this.ready;
  }

  private async inTransaction<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      const result = await fn(client);
      await client.query("COMMIT");
      return result;
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }
}

function loadPg(): typeof import("pg") {
  return require("pg");
}
