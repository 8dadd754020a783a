import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Cluster, Redis } from "ioredis";

const prelude = readLua("clock");

/** A Lua script read once from its file, called by SHA and sent in full only when Redis lacks it. */
export class LuaScript {
  private readonly source: string;
  /** For callers that put the script in a pipeline of their own; they fall back to run() on NOSCRIPT. */
  readonly sha: string;

  constructor(name: string) {
    this.source = `${prelude}\n${readLua(name)}`;
    this.sha = createHash("sha1").update(this.source).digest("hex");
  }

  async run(
    redis: Redis | Cluster,
    keys: readonly string[],
    args: readonly (string | number)[],
  ): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!isNoScript(error)) throw error;
      return redis.eval(this.source, keys.length, ...keys, ...args);
    }
  }

  /**
   * Runs the script on the Redis Cluster node that owns its keys, then WAITs there, in the same
   * round trip, until `replicas` replicas of that node have everything it wrote, or `timeoutMs`
   * passed. Resolves the script's reply and how many replicas acknowledged it.
   */
  async runAndWait(
    cluster: Cluster,
    keys: readonly string[],
    args: readonly (string | number)[],
    replicas: number,
    timeoutMs: number,
  ): Promise<{ reply: unknown; acknowledged: number }> {
    // A pipeline goes to the node of its keyed commands, so WAIT (which has no key) asks the
    // node that ran the script.
    let results = await cluster
      .pipeline()
      .evalsha(this.sha, keys.length, ...keys, ...args)
      .wait(replicas, timeoutMs)
      .exec();
    if (isNoScript(results?.[0]?.[0])) {
      results = await cluster
        .pipeline()
        .eval(this.source, keys.length, ...keys, ...args)
        .wait(replicas, timeoutMs)
        .exec();
    }
    const [script, wait] = results ?? [];
    if (!script || !wait) throw new Error("Redis Cluster answered a pipeline without its replies");
    if (script[0]) throw script[0];
    if (wait[0]) throw wait[0];
    return { reply: script[1], acknowledged: Number(wait[1]) };
  }
}

export function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith("NOSCRIPT");
}

function readLua(name: string): string {
  return readFileSync(join(__dirname, "lua", `${name}.lua`), "utf8");
}
