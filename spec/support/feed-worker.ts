import "reflect-metadata";
import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import Redis from "ioredis";
import { DataSource } from "typeorm";
import { ChangeFeed, QueryCache, QueryCacheSubscriber, RedisStore } from "../../lib";
import { entities } from "./entities";

/** What a worker process runs: one application instance whose only job is its change feed. */
export interface WorkerConfig {
  pgUrl: string;
  redisUrl: string;
  namespace: string;
  schema: string;
  slot: string;
  retryInterval: number;
}

/**
 * A change feed in a process of its own, so a test can kill it with SIGKILL, as a crash or an
 * OOM kill would. Each line it prints becomes an event: "active", "standby", "delivered" (the
 * transaction ids), "undelivered" (a delivery failed and is retried).
 */
export class FeedWorker extends EventEmitter {
  private readonly lines: string[] = [];

  private constructor(private readonly child: ChildProcess) {
    super();
    let pending = "";
    child.stdout?.on("data", (chunk) => {
      pending += String(chunk);
      for (let end = pending.indexOf("\n"); end >= 0; end = pending.indexOf("\n")) {
        const line = pending.slice(0, end);
        pending = pending.slice(end + 1);
        this.lines.push(line);
        const [event, ...rest] = line.split(" ");
        this.emit(event, rest);
      }
    });
    child.stderr?.on("data", (chunk) => this.lines.push(`stderr: ${String(chunk)}`));
  }

  static start(config: WorkerConfig): FeedWorker {
    const child = spawn(process.execPath, [__filename, JSON.stringify(config)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    return new FeedWorker(child);
  }

  /** Resolves with the first line starting with `event` (already printed or to come). */
  waitFor(
    event: string,
    matches: (args: string[]) => boolean = () => true,
    timeoutMs = 30_000,
  ): Promise<string[]> {
    for (const line of this.lines) {
      const [name, ...rest] = line.split(" ");
      if (name === event && matches(rest)) return Promise.resolve(rest);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off(event, listener);
        reject(
          new Error(
            `the worker printed no matching "${event}" within ${timeoutMs} ms; it printed:\n${this.lines.join("\n")}`,
          ),
        );
      }, timeoutMs);
      const listener = (args: string[]) => {
        if (!matches(args)) return;
        clearTimeout(timer);
        this.off(event, listener);
        resolve(args);
      };
      this.on(event, listener);
    });
  }

  /** Resolves once a delivery covered this transaction. */
  delivered(xid: number, timeoutMs?: number): Promise<string[]> {
    return this.waitFor("delivered", (xids) => xids.includes(String(xid)), timeoutMs);
  }

  /** SIGKILL: no stop(), no last status to the server, as in a crash. */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGKILL");
    await gone;
  }
}

async function main(config: WorkerConfig): Promise<void> {
  const dataSource = await new DataSource({
    type: "postgres",
    url: config.pgUrl,
    schema: config.schema,
    entities,
    subscribers: [QueryCacheSubscriber],
  }).initialize();
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 1 });
  const cache = new QueryCache({
    dataSource,
    store: new RedisStore(redis),
    namespace: config.namespace,
  });
  const url = new URL(config.pgUrl);
  const feed = new ChangeFeed({
    cache,
    connection: {
      host: url.hostname,
      port: Number(url.port),
      user: url.username,
      password: url.password,
      database: url.pathname.slice(1),
    },
    slot: config.slot,
    retryInterval: config.retryInterval,
  });
  feed.on("active", () => console.log("active"));
  feed.on("standby", () => console.log("standby"));
  feed.on("delivered", (delivery) => console.log(`delivered ${delivery.xids.join(" ")}`));
  feed.on("feedError", (error) => console.log(`undelivered ${error.message.replace(/\s+/g, "_")}`));
  await feed.start();
}

if (require.main === module) {
  main(JSON.parse(process.argv[2])).catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
