import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Cluster, Redis } from "ioredis";

const prelude = readLua("clock");

/** A Lua script read once from its file, called by SHA and sent in full only when Redis lacks it. */
export class LuaScript {
  private readonly source: string;
  private readonly sha: string;

  constructor(name: string) {
    this.source = `${prelude}\n${readLua(name)}`;
    this.sha = createHash("sha1").update(this.source).digest("hex");
  }

  async run(redis: Redis | Cluster, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
      return redis.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}

function readLua(name: string): string {
  return readFileSync(join(__dirname, "lua", `${name}.lua`), "utf8");
}
