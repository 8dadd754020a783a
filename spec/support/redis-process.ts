import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { answers, freePort } from "../../example/loopback";
import { requireRedisServer } from "../../example/services";
import { sleep } from "./wait";

const run = promisify(execFile);

/** Every server started by this process, so none outlives it even when a test fails midway. */
const running = new Set<RedisProcess>();
process.once("exit", () => {
  for (const server of running) server.killNow();
});

/**
 * A throwaway redis-server on a loopback port of its own, without persistence (it restarts
 * empty, save for what `extraArgs` keep in its directory, such as a cluster's nodes.conf).
 * start() may be called again after kill() to bring it back on the same port.
 */
export class RedisProcess {
  private child?: ChildProcess;
  private stopped = false;
  readonly dir: string;

  constructor(
    readonly port: number,
    private readonly extraArgs: readonly string[] = [],
    dirPrefix = "autocache-redis-",
  ) {
    this.dir = mkdtempSync(join(tmpdir(), dirPrefix));
  }

  static async start(port?: number): Promise<RedisProcess> {
    const server = new RedisProcess(port ?? (await freePort()));
    await server.start();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get isRunning(): boolean {
    return this.child !== undefined;
  }

  async start(): Promise<void> {
    if (this.child) return;
    requireRedisServer();
    const child = spawn(
      "redis-server",
      [
        "--port",
        String(this.port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        this.dir,
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
        ...this.extraArgs,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    child.stderr?.on("data", (chunk) => {
      stderr += String(chunk);
    });
    this.child = child;
    running.add(this);
    const exited = new Promise<never>((_, reject) =>
      child.once("exit", (code) =>
        reject(new Error(`redis-server on port ${this.port} exited (${code}): ${stderr}`)),
      ),
    );
    exited.catch(() => undefined);
    const deadline = Date.now() + 10_000;
    while (!(await answers(this.port, "PING", "+PONG"))) {
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(`redis-server on port ${this.port} did not start: ${stderr}`);
      }
      await Promise.race([exited, sleep(25)]);
    }
  }

  /** SIGKILL (after SIGCONT, should it be frozen): the server dies at once, as in a crash. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    running.delete(this);
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGCONT");
      child.kill("SIGKILL");
      await gone;
    }
  }

  /** SIGSTOP: the server freezes, its connections stay open and nothing answers. */
  freeze(): void {
    this.child?.kill("SIGSTOP");
  }

  thaw(): void {
    this.child?.kill("SIGCONT");
  }

  /** Stops the server for good and removes its directory. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Runs a command through redis-cli and returns its raw output. */
  async cli(...args: string[]): Promise<string> {
    const { stdout } = await run(
      "redis-cli",
      ["-h", "127.0.0.1", "-p", String(this.port), ...args],
      { timeout: 5000 },
    );
    return stdout;
  }

  /** @internal for the exit hook */
  killNow(): void {
    try {
      this.child?.kill("SIGCONT");
      this.child?.kill("SIGKILL");
    } catch {
      // already gone
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
