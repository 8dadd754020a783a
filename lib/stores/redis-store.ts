import type { Redis } from "ioredis";
import type { CacheStore, KeySpace, Lookup, StoreEntry } from "./store";
import { LuaScript } from "./redis/scripts";

const scripts = {
  lookup: new LuaScript("lookup"),
  stamp: new LuaScript("stamp"),
  set: new LuaScript("set"),
  bump: new LuaScript("bump"),
};

const HEADER = "ac1 ";
const SCAN_COUNT = 500;

/**
 * Stores entries in Redis through an ioredis client that the caller owns (and closes). A hit is
 * one round trip: a script reads the entry and checks its dependency versions in Redis.
 */
export class RedisStore implements CacheStore {
  constructor(readonly redis: Redis) {}

  get available(): boolean {
    return this.redis.status === "ready";
  }

  async lookup(key: string, clockKey: string): Promise<Lookup> {
    const reply = await scripts.lookup.run(this.redis, [key, clockKey], [this.prefix]);
    if (typeof reply === "number") return { hit: false, stamp: reply };
    const entry = String(reply);
    const nl = entry.indexOf("\n");
    const words = entry.slice(HEADER.length, nl).split(" ");
    return { hit: true, value: entry.slice(nl + 1), deps: words.slice(1) };
  }

  async stamp(clockKey: string): Promise<number> {
    return Number(await scripts.stamp.run(this.redis, [clockKey], []));
  }

  async set(entry: StoreEntry, clockKey: string): Promise<boolean> {
    const header = `${HEADER}${entry.stamp} ${entry.deps.join(" ")}\n`;
    const reply = await scripts.set.run(
      this.redis,
      [entry.key, clockKey, ...entry.deps],
      [entry.stamp, entry.ttlSeconds, header + entry.value],
    );
    return reply === 1;
  }

  async bump(versionKeys: readonly string[], clockKey: string): Promise<void> {
    if (versionKeys.length > 0) await scripts.bump.run(this.redis, [clockKey, ...versionKeys], [""]);
  }

  async delete(key: string): Promise<void> {
    await this.redis.unlink(key);
  }

  // SCAN and UNLINK rather than KEYS or FLUSHDB: other data in the same database stays, and
  // Redis is never blocked. Versions are bumped, not deleted, so they only move forward.
  async clear(space: KeySpace): Promise<void> {
    await this.scan(space.entryPrefix, async (keys) => {
      await this.redis.unlink(...keys);
    });
    await this.scan(space.versionPrefix, (keys) => this.bump(keys.filter((k) => k !== space.clockKey), space.clockKey));
  }

  private async scan(prefix: string, each: (keys: string[]) => Promise<void>): Promise<void> {
    let cursor = "0";
    do {
      const [next, keys] = await this.redis.scan(cursor, "MATCH", `${this.prefix}${globEscape(prefix)}*`, "COUNT", SCAN_COUNT);
      cursor = next;
      if (keys.length > 0) await each(keys.map((k) => k.slice(this.prefix.length)));
    } while (cursor !== "0");
  }

  private get prefix(): string {
    return this.redis.options.keyPrefix ?? "";
  }
}

function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, "\\$&");
}
