import net from "node:net";
import { execFileSync } from "node:child_process";

/**
 * Where the tests find PostgreSQL and Redis: PG_URL and REDIS_URL, else the local services, else
 * containers started with testcontainers when a Docker engine answers. Without any, they fail
 * with a message that says what to start.
 */
export interface Services {
  pgUrl: string;
  redisUrl: string;
}

const LOCAL_PG = "postgres://postgres@127.0.0.1:5432/test";
const LOCAL_REDIS = "redis://127.0.0.1:6379";

let services: Promise<Services> | undefined;
const stops: (() => Promise<unknown>)[] = [];

export function getServices(): Promise<Services> {
  services ??= resolve();
  return services;
}

/** Stops the containers this process started, if any. */
export async function stopServices(): Promise<void> {
  await Promise.all(stops.splice(0).map((stop) => stop()));
}

async function resolve(): Promise<Services> {
  const pgUrl = process.env.PG_URL ?? LOCAL_PG;
  const redisUrl = process.env.REDIS_URL ?? LOCAL_REDIS;
  const [pgUp, redisUp] = await Promise.all([reachable(pgUrl), reachable(redisUrl)]);
  if (pgUp && redisUp) return { pgUrl, redisUrl };
  if (!dockerAnswers()) {
    throw new Error(
      `PostgreSQL (${pgUrl}: ${pgUp ? "up" : "unreachable"}) and Redis (${redisUrl}: ${redisUp ? "up" : "unreachable"}) ` +
        "are both needed. Start them (for example: pg_ctlcluster <version> main start; redis-server --daemonize yes), " +
        "point PG_URL and REDIS_URL at running ones, or start a Docker engine so the tests can run containers.",
    );
  }
  const out = { pgUrl, redisUrl };
  if (!pgUp) {
    const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
    const pg = await new PostgreSqlContainer("postgres:16-alpine").start();
    stops.push(() => pg.stop());
    out.pgUrl = pg.getConnectionUri();
  }
  if (!redisUp) {
    const { RedisContainer } = await import("@testcontainers/redis");
    const redis = await new RedisContainer("redis:7-alpine").start();
    stops.push(() => redis.stop());
    out.redisUrl = redis.getConnectionUrl();
  }
  return out;
}

function reachable(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((done) => {
    const socket = net.connect({ host: hostname, port: Number(port) }, () => {
      socket.destroy();
      done(true);
    });
    socket.setTimeout(1000, () => {
      socket.destroy();
      done(false);
    });
    socket.on("error", () => done(false));
  });
}

function dockerAnswers(): boolean {
  try {
    execFileSync("docker", ["info"], { stdio: "ignore", timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}
