import { type ChildProcess, spawn } from "node:child_process";
import { answers, freePort } from "../../example/loopback";
import { requireMemcached } from "../../example/services";

/** Every server started by this process, so none outlives it even when a test fails midway. */
const running = new Set<MemcachedProcess>();
process.once("exit", () => {
  for (const server of running) server.killNow();
});

/**
 * A throwaway memcached on a loopback port of its own (scripts/ensure-memcached.sh installs it).
 * Memcached keeps nothing on disk, so start() after kill() brings it back empty on the same port.
 */
export class MemcachedProcess {
  private child?: ChildProcess;

  constructor(readonly port: number) {}

  static async start(): Promise<MemcachedProcess> {
    const server = new MemcachedProcess(await freePort());
    await server.start();
    return server;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (this.child) return;
    requireMemcached();
    // memcached refuses to run as root unless told which user to be.
    const user = process.getuid?.() === 0 ? ["-u", "root"] : [];
    const child = spawn(
      "memcached",
      ["-l", "127.0.0.1", "-p", String(this.port), "-U", "0", "-t", "2", "-m", "64", ...user],
      {
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    let stderr = "";
    child.stderr?.on("data", (chunk) => {
      stderr += String(chunk);
    });
    const spawned = new Promise<void>((resolve, reject) => {
      child.once("error", (error) =>
        reject(
          new Error(
            `memcached could not be started (${error.message}); run scripts/ensure-memcached.sh`,
          ),
        ),
      );
      child.once("spawn", () => resolve());
    });
    await spawned;
    this.child = child;
    running.add(this);
    const deadline = Date.now() + 10_000;
    while (!(await answers(this.port, "version", "VERSION"))) {
      if (Date.now() > deadline || child.exitCode !== null) {
        await this.kill();
        throw new Error(`memcached on port ${this.port} did not start: ${stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  /** SIGKILL: the server dies at once, as in a crash, and everything it held is gone. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = undefined;
    running.delete(this);
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await gone;
    }
  }

  /** @internal for the exit hook */
  killNow(): void {
    try {
      this.child?.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}
