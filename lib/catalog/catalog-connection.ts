import type { DataSource } from "typeorm";
import { CatalogUnavailableError } from "../errors";

/** Where catalog facts are read from: plain SQL text in, rows out. */
export interface SqlReader {
  query<Row = Record<string, unknown>>(sql: string): Promise<Row[]>;
}

/**
 * How long the library waits for its own connection to open or for one of its catalog queries,
 * before giving up and degrading (see QueryCache): a user's query may be held this long, never longer.
 */
export const CATALOG_TIMEOUT_MS = 5000;

interface PgClient {
  connect(): Promise<void>;
  query(sql: string): Promise<{ rows: unknown[] }>;
  end(): Promise<void>;
  on(event: "error" | "end", listener: (error?: Error) => void): void;
  ref?(): void;
  unref?(): void;
}

type PgClientClass = new (config: Record<string, unknown>) => PgClient;

/**
 * The library's own PostgreSQL connection, outside the application's pool: the catalog is read
 * inside TypeORM's afterQuery while the caller still holds its pool connection, so waiting for a
 * second pool connection there could wait forever (invariant 10). Built from the DataSource's own
 * connection options with the pg module TypeORM loaded, opened on first use, dropped on any error
 * or timeout and opened again by the next query; idle, it does not keep the process alive.
 */
export class CatalogConnection implements SqlReader {
  private client?: Promise<PgClient>;
  private inFlight = 0;
  private closed = false;

  constructor(
    private readonly dataSource: DataSource,
    private readonly timeoutMs = CATALOG_TIMEOUT_MS,
  ) {}

  async query<Row = Record<string, unknown>>(sql: string): Promise<Row[]> {
    if (this.closed) throw new CatalogUnavailableError("the cache is closed");
    const opening = this.open();
    this.inFlight++;
    let client: PgClient | undefined;
    try {
      client = await opening;
      client.ref?.();
      const result = await bounded(client.query(sql), this.timeoutMs, "a catalog query");
      return result.rows as Row[];
    } catch (error) {
      this.drop(opening);
      throw error instanceof CatalogUnavailableError
        ? error
        : new CatalogUnavailableError((error as Error).message);
    } finally {
      if (--this.inFlight === 0 && this.client === opening) client?.unref?.();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = undefined;
    if (client)
      await client
        .then(
          (c) => c.end(),
          () => undefined,
        )
        .catch(() => undefined);
  }

  private open(): Promise<PgClient> {
    if (this.client) return this.client;
    const opening = (async () => {
      const Client = (
        this.dataSource.driver as unknown as { postgres?: { Client?: PgClientClass } }
      ).postgres?.Client;
      if (!Client)
        throw new CatalogUnavailableError(
          "the DataSource's driver has not loaded the pg module yet",
        );
      const client = new Client({
        ...connectionConfig(this.dataSource),
        connectionTimeoutMillis: this.timeoutMs,
      });
      // A connection the server or the network closed is opened again by the next query.
      client.on("error", () => this.drop(opening));
      client.on("end", () => this.drop(opening));
      try {
        await bounded(client.connect(), this.timeoutMs, "opening the catalog connection");
      } catch (error) {
        // One that connects after all must not stay open, holding a server slot and the process.
        client.end().catch(() => undefined);
        throw error;
      }
      return client;
    })();
    this.client = opening;
    opening.catch(() => this.drop(opening));
    return opening;
  }

  private drop(client: Promise<PgClient>): void {
    if (this.client !== client) return;
    this.client = undefined;
    client.then(
      (c) => c.end().catch(() => undefined),
      () => undefined,
    );
  }
}

/** Where a PostgresConnectionOptions (or its replication master) says the server is. */
interface ServerOptions {
  url?: string;
  host?: string;
  port?: number;
  username?: string;
  password?: unknown;
  database?: string;
  ssl?: unknown;
}

/** The options TypeORM's PostgresDriver gives its pool (of the master, under replication). */
function connectionConfig(dataSource: DataSource): Record<string, unknown> {
  const options = dataSource.options as ServerOptions & {
    applicationName?: string;
    extra?: Record<string, unknown>;
    replication?: { master: ServerOptions };
  };
  const credentials = options.replication?.master ?? options;
  return {
    connectionString: credentials.url,
    host: credentials.host,
    user: credentials.username,
    password: credentials.password,
    database: credentials.database,
    port: credentials.port,
    ssl: credentials.ssl,
    application_name: options.applicationName,
    ...(options.extra ?? {}),
  };
}

/** Rejects with CatalogUnavailableError once `ms` have passed; the work itself is left to finish or fail. */
export function bounded<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new CatalogUnavailableError(`${what} took longer than ${ms} ms`)),
      ms,
    );
    timer.unref();
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
