import type { Runnable, Runner, Suite } from "mocha";
import {
  addRedisLauncher,
  type Launched,
  requireRedisServer,
  resolvedServices,
  ServiceUnavailableError,
  stopServices,
} from "../../example/services";
import { dropCreatedNamespaces, dropCreatedSchemas } from "./fixture";
import { RedisProcess } from "./redis-process";

/**
 * Mocha's root hooks and global fixtures (wired in .mocharc.json).
 *
 * On a machine without the services (example/services.ts says where they are looked for), what
 * can run runs: a test or hook that needs a service nobody could reach or start is marked pending,
 * and the run ends with one block that says what did not run and why. With
 * AUTOCACHE_SERVICES=required (CI), such a test fails instead, so a CI machine that lost its
 * Redis cannot pass by skipping.
 */

const required = process.env.AUTOCACHE_SERVICES === "required";

/** Reason (the error's message) -> the spec files whose tests did not run for it, and how many. */
const notRun = new Map<string, { files: Set<string>; tests: number }>();
/** Suites and tests that did not run for a missing service: their after hooks have nothing to undo. */
const skipped = new WeakSet<object>();

export function mochaGlobalSetup(this: Runner): void {
  addRedisLauncher(redisServerFromPath);
  if (!required) skipWhereUnavailable(this.suite);
}

export const mochaHooks = {
  /** Leave the test database, Redis and the servers started for the run as they were before it. */
  async afterAll(): Promise<void> {
    try {
      await dropCreatedSchemas();
      await dropCreatedNamespaces();
    } catch (error) {
      // Without Redis no spec wrote a key, so there is nothing to drop.
      if (!(error instanceof ServiceUnavailableError)) throw error;
    } finally {
      await stopServices();
    }
  },
};

/** Runs after the reporter's summary, so the block is the last thing a run prints. */
export function mochaGlobalTeardown(): void {
  const lines: string[] = [];
  if (notRun.size > 0) {
    const tests = [...notRun.values()].reduce((sum, entry) => sum + entry.tests, 0);
    lines.push(
      `NOT RUN: ${tests} tests are pending above because a service they need is missing on this machine.`,
    );
    for (const [reason, { files }] of notRun) {
      lines.push(`  ${reason}`);
      lines.push(`  Files affected: ${[...files].sort().join(", ")}`);
    }
    lines.push(
      "  This run does not vouch for them; AUTOCACHE_SERVICES=required makes them fail instead.",
    );
  }
  const services = resolvedServices();
  if (services && services.started.length > 0) {
    lines.push(
      `Started for this run, because ${services.fallbacks.join(" and ")}: ${services.started.join(" and ")} (stopped now).`,
    );
  }
  if (lines.length > 0) console.log(`\n${lines.join("\n")}\n`);
}

type Kind = "test" | "beforeAll" | "beforeEach" | "afterEach" | "afterAll";

/**
 * Wraps every test and hook so that ServiceUnavailableError turns it into a pending test (in a
 * "before all" hook, every test it guards) and records why. Runs once all spec files are loaded.
 */
function skipWhereUnavailable(suite: Suite): void {
  for (const test of suite.tests) wrap(test, "test");
  const hooks = suite as unknown as { getHooks(name: Kind): Runnable[] };
  for (const kind of ["beforeAll", "beforeEach", "afterEach", "afterAll"] as const) {
    for (const hook of hooks.getHooks(kind)) wrap(hook, kind);
  }
  for (const child of suite.suites) skipWhereUnavailable(child);
}

function wrap(runnable: Runnable, kind: Kind): void {
  const original = runnable.fn as ((this: Mocha.Context) => unknown) | undefined;
  // A test written with a `done` callback cannot be wrapped without changing how mocha calls it.
  if (!original || original.length > 0) return;
  runnable.fn = async function (this: Mocha.Context) {
    try {
      return await original.call(this);
    } catch (error) {
      if (kind === "afterEach" || kind === "afterAll") {
        // An after hook undoes what its setup made; where the setup could not run it finds nothing
        // to undo (often not even the objects it would close).
        const guarded = kind === "afterAll" ? runnable.parent : this.currentTest;
        if (error instanceof ServiceUnavailableError || wasSkipped(guarded)) return;
        throw error;
      }
      if (!(error instanceof ServiceUnavailableError)) throw error;
      record(error.message, runnable, kind === "beforeAll" ? countTests(runnable.parent) : 1);
      skipped.add(
        kind === "beforeAll" ? (runnable.parent ?? runnable) : (this.currentTest ?? runnable),
      );
      this.skip();
    }
  };
}

function record(reason: string, runnable: Runnable, tests: number): void {
  const entry = notRun.get(reason) ?? { files: new Set<string>(), tests: 0 };
  notRun.set(reason, entry);
  if (runnable.file)
    entry.files.add(runnable.file.replace(/^.*\/dist\//, "").replace(/\.js$/, ".ts"));
  entry.tests += tests;
}

function wasSkipped(node: Runnable | Suite | undefined): boolean {
  for (let at = node; at; at = at.parent) if (skipped.has(at)) return true;
  return false;
}

function countTests(suite: Suite | undefined): number {
  if (!suite) return 0;
  return suite.tests.length + suite.suites.reduce((sum, child) => sum + countTests(child), 0);
}

/** The specs' first choice when REDIS_URL does not answer: a throwaway redis-server from PATH. */
async function redisServerFromPath(): Promise<Launched> {
  let version: string;
  try {
    version = requireRedisServer();
  } catch {
    throw new Error("no redis-server on PATH");
  }
  const server = await RedisProcess.start();
  return {
    url: server.url,
    what: `redis-server ${version} from PATH on 127.0.0.1:${server.port}`,
    stop: () => server.stop(),
  };
}
