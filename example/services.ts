import { execFileSync } from "node:child_process";
import net from "node:net";
import { startEmbeddedPostgres } from "./embedded-postgres";

/**
 * Where the example, the specs and the bench find PostgreSQL and Redis, tried in order:
 * - PostgreSQL: PG_URL (default postgres://postgres@127.0.0.1:5432/test) when it answers; else a
 *   throwaway server from the embedded-postgres package (real binaries installed with the dev
 *   dependencies, nothing downloaded at run time); else a container, when a Docker engine answers.
 * - Redis: REDIS_URL (default redis://127.0.0.1:6379) when it answers; else the launchers added with
 *   addRedisLauncher (the specs add a redis-server found on PATH); else a container; else none.
 *
 * Without Redis, `redisUrl` throws ServiceUnavailableError: the example then uses the in-memory
 * store, and the specs report what needed Redis as pending (spec/support/root-hooks.ts).
 */
export interface Services {
  pgUrl: string;
  /** Throws ServiceUnavailableError, with every reason, when no Redis was reachable or started. */
  readonly redisUrl: string;
  readonly hasRedis: boolean;
  /** What this process started itself, one phrase each ("PostgreSQL 18 from embedded-postgres on 127.0.0.1:40123"). */
  readonly started: readonly string[];
  /** Why a configured service was not used, one phrase each. */
  readonly fallbacks: readonly string[];
}

/** A server started because the configured one did not answer; stopped by stopServices(). */
export interface Launched {
  url: string;
  /** What was started, for the notice: "redis-server 7.0.15 from PATH on 127.0.0.1:40123". */
  what: string;
  stop(): Promise<unknown>;
}

/** Starts a server, or throws an Error whose message says why it could not. */
export type Launcher = () => Promise<Launched>;

/** A service the run needs could be neither reached nor started; the message lists every reason. */
export class ServiceUnavailableError extends Error {
  constructor(
    readonly service: keyof typeof HOW_TO,
    readonly reasons: readonly string[],
  ) {
    super(`No ${service} for this run: ${reasons.join("; ")}. ${HOW_TO[service]}`);
    this.name = "ServiceUnavailableError";
  }
}

const HOW_TO = {
  PostgreSQL:
    "Set PG_URL to a running PostgreSQL (for example postgres://postgres@127.0.0.1:5432/test).",
  Redis:
    "Set REDIS_URL to a running Redis (for example redis://127.0.0.1:6379), put redis-server on PATH, or start a Docker engine.",
  "redis-server":
    "Install Redis so that redis-server is on PATH: these specs start servers of their own (cluster, ACL, faults).",
  memcached:
    "Install memcached (bash scripts/ensure-memcached.sh does, from Debian's packages): the MemcachedStore specs start servers of their own.",
} as const;

const LOCAL_PG = "postgres://postgres@127.0.0.1:5432/test";
const LOCAL_REDIS = "redis://127.0.0.1:6379";

const redisLaunchers: Launcher[] = [];
let services: Promise<Services> | undefined;
let resolved: Services | undefined;
const stops: (() => Promise<unknown>)[] = [];

/** Adds a way to start Redis, tried (in the order added) before Docker when REDIS_URL does not answer. */
export function addRedisLauncher(launcher: Launcher): void {
  redisLaunchers.push(launcher);
}

export function getServices(): Promise<Services> {
  services ??= resolve().then((found) => {
    resolved = found;
    return found;
  });
  return services;
}

/** The services once getServices() has found them; undefined before, so asking starts nothing. */
export function resolvedServices(): Services | undefined {
  return resolved;
}

const programVersions = new Map<string, string>();

/**
 * The version a server program the specs start themselves prints, or ServiceUnavailableError
 * when it is not on PATH, so that the specs needing it are reported as not run.
 */
function requireProgram(
  service: "redis-server" | "memcached",
  versionFlag: string,
  version: RegExp,
): string {
  let found = programVersions.get(service);
  if (found === undefined) {
    try {
      const banner = execFileSync(service, [versionFlag], { encoding: "utf8", timeout: 5000 });
      found = version.exec(banner)?.[1] ?? "?";
    } catch {
      throw new ServiceUnavailableError(service, [`no ${service} on PATH`]);
    }
    programVersions.set(service, found);
  }
  return found;
}

/** The version of the redis-server on PATH; throws ServiceUnavailableError when there is none. */
export function requireRedisServer(): string {
  return requireProgram("redis-server", "--version", /v=(\S+)/);
}

/** The version of the memcached on PATH; throws ServiceUnavailableError when there is none. */
export function requireMemcached(): string {
  return requireProgram("memcached", "--version", /memcached (\S+)/);
}

/** Stops every server this process started, if any. */
export async function stopServices(): Promise<void> {
  await Promise.all(stops.splice(0).map((stop) => stop()));
}

/**
 * The one line that says what a run started in place of unreachable services and how to use real
 * ones, or undefined when it used the configured services. `withoutRedis` names what stands in for
 * Redis when there is none ("the in-memory store").
 */
export function fallbackNotice(found: Services, withoutRedis: string): string | undefined {
  const used = [...found.started, ...(found.hasRedis ? [] : [withoutRedis])];
  if (used.length === 0) return undefined;
  return `${found.fallbacks.join(" and ")}: using ${used.join(" and ")}. Set PG_URL and REDIS_URL to use real services.`;
}

async function resolve(): Promise<Services> {
  const pgUrl = process.env.PG_URL ?? LOCAL_PG;
  const redisUrl = process.env.REDIS_URL ?? LOCAL_REDIS;
  const [pgProblem, redisProblem] = await Promise.all([unreachable(pgUrl), unreachable(redisUrl)]);
  const started: string[] = [];
  const fallbacks: string[] = [];

  let pg = pgUrl;
  if (pgProblem) {
    fallbacks.push(`no PostgreSQL at ${where(pgUrl)} (${pgProblem})`);
    const launched = await firstThatStarts([startEmbeddedPostgres, dockerPostgres]);
    if (!launched.ok)
      throw new ServiceUnavailableError("PostgreSQL", [
        `${where(pgUrl)} ${pgProblem}`,
        ...launched.reasons,
      ]);
    pg = launched.server.url;
    started.push(launched.server.what);
  }

  let redis: { url: string } | { reasons: string[] } = { url: redisUrl };
  if (redisProblem) {
    fallbacks.push(`no Redis at ${where(redisUrl)} (${redisProblem})`);
    const launched = await firstThatStarts([...redisLaunchers, dockerRedis]);
    if (launched.ok) {
      redis = { url: launched.server.url };
      started.push(launched.server.what);
    } else {
      redis = { reasons: [`${where(redisUrl)} ${redisProblem}`, ...launched.reasons] };
    }
  }

  return {
    pgUrl: pg,
    get redisUrl(): string {
      if ("reasons" in redis) throw new ServiceUnavailableError("Redis", redis.reasons);
      return redis.url;
    },
    hasRedis: "url" in redis,
    started,
    fallbacks,
  };
}

type Outcome = { ok: true; server: Launched } | { ok: false; reasons: string[] };

async function firstThatStarts(launchers: Launcher[]): Promise<Outcome> {
  const reasons: string[] = [];
  for (const launch of launchers) {
    try {
      const server = await launch();
      stops.push(() => server.stop());
      return { ok: true, server };
    } catch (error) {
      reasons.push(error instanceof Error ? error.message : String(error));
    }
  }
  return { ok: false, reasons };
}

/** Why nothing answers at the URL's host and port, or undefined when something does. */
function unreachable(url: string): Promise<string | undefined> {
  const { hostname, port } = new URL(url);
  return new Promise((done) => {
    const socket = net.connect({ host: hostname, port: Number(port) }, () => {
      socket.destroy();
      done(undefined);
    });
    // Generous: on a loaded machine a starved event loop can run this timer before the callback
    // of a connection that succeeded, and a false "unreachable" starts a server nobody needs.
    socket.setTimeout(5000, () => {
      socket.destroy();
      done("did not answer within 5 s");
    });
    socket.on("error", (error: NodeJS.ErrnoException) =>
      done(error.code === "ECONNREFUSED" ? "refused the connection" : error.message),
    );
  });
}

let dockerChecked: boolean | undefined;

/** Throws unless a Docker engine answers, asking it once per process. */
function requireDocker(): void {
  if (dockerChecked === undefined) {
    try {
      execFileSync("docker", ["info"], { stdio: "ignore", timeout: 5000 });
      dockerChecked = true;
    } catch {
      dockerChecked = false;
    }
  }
  if (!dockerChecked) {
    const host = process.env.DOCKER_HOST ? ` (DOCKER_HOST=${process.env.DOCKER_HOST})` : "";
    throw new Error(`no Docker engine answered \`docker info\`${host}`);
  }
}

const dockerPostgres: Launcher = async () => {
  requireDocker();
  const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
  const container = await new PostgreSqlContainer("postgres:16-alpine").start();
  return {
    url: container.getConnectionUri(),
    what: "a postgres:16-alpine container",
    stop: () => container.stop(),
  };
};

const dockerRedis: Launcher = async () => {
  requireDocker();
  const { RedisContainer } = await import("@testcontainers/redis");
  const container = await new RedisContainer("redis:7-alpine").start();
  return {
    url: container.getConnectionUrl(),
    what: "a redis:7-alpine container",
    stop: () => container.stop(),
  };
};

/** host:port/database, without any password the URL may carry. */
export function where(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port}${u.pathname === "/" ? "" : u.pathname}`;
}
