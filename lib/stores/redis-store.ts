import type { Cluster, Redis } from "ioredis";
import { InvalidStoreClientError, NotReplicatedError } from "../errors";
import { sameKeys } from "../util/same-keys";
import { formatEntry, judge, type ParsedEntry, parseEntry } from "./entry-text";
import { KnownDeps } from "./known-deps";
import { InvalidationFeed } from "./redis/invalidation-feed";
import { keySlot } from "./redis/key-slot";
import { isNoScript, LuaScript } from "./redis/scripts";
import type { CacheStore, FollowHandlers, KeySpace, Lookup, StoreEntry } from "./store";

const scripts = {
  bump: new LuaScript("bump"),
  admit: new LuaScript("admit"),
  open: new LuaScript("open"),
};

/**
 * Seconds a bumped row version lives: long enough that computations started after the bump find
 * it while other rows of its table are written; entries that depend on it extend it to their ttl.
 */
const ROW_VERSION_TTL = 300;

const SCAN_COUNT = 1000;

export interface RedisStoreOptions {
  /**
   * Redis Cluster only: milliseconds an invalidation waits for the replicas of the node holding
   * the versions to acknowledge it (WAIT). One that is not acknowledged in time counts as failed
   * and is retried, since a failover could lose it. Keep it below the QueryCache's storeTimeout.
   * Default 100.
   */
  replicaTimeout?: number;
}

/**
 * Stores entries in Redis through an ioredis client, or an ioredis Cluster, that the caller owns
 * (and closes).
 *
 * On a single Redis, a hit is one MGET, no script: the entry, the clock and the versions this
 * process saw the entry name last time; should it name others, a second MGET reads those. A set is one pipelined round trip
 * too: admit.lua checks (and, where it can prove their value, creates) the versions, then a plain SET writes the entry, which is
 * never served should admit have refused it, since every read checks the versions again.
 * Outdated entries are left to be overwritten by the next computation or to expire: deleting
 * one on sight could delete the fresh entry that replaced it meanwhile.
 * On Redis Cluster the entry and the versions live in different slots (entries spread
 * over the masters; versions and the clock share the hash tag {<namespace>:v}), and no script may
 * touch two slots, so every operation is split into single-slot steps:
 *
 * - lookup GETs the entry, then MGETs the clock and the versions it names in the version slot:
 *   a hit costs two round trips.
 * - set runs admit.lua in the version slot (refusing an entry whose versions moved past its stamp,
 *   and creating missing versions), then SETs the entry in its own slot. A write may bump a
 *   version between the two steps, so an outdated entry can be stored; it is never served, because
 *   lookup checks the versions again at read time, after the entry was read, and versions only
 *   move forward. So no stale set (invariant 2) rests on the read-time check, as on a single
 *   Redis; admit only saves storing entries that are outdated already.
 * - "Versions only move forward" must survive a failover: a bump acknowledged by a master but not
 *   yet copied to its replica would be lost when that replica is promoted, and entries stamped
 *   before it would be served again. So bump WAITs until the replicas have it, and fails (to be
 *   retried, blocking the entries it covers in this process meanwhile) when they do not.
 */
export class RedisStore implements CacheStore {
  private readonly replicaTimeout: number;
  private readonly knownDeps = new KnownDeps();

  constructor(
    readonly redis: Redis | Cluster,
    options: RedisStoreOptions = {},
  ) {
    if (!isIoredisClient(redis)) throw new InvalidStoreClientError(describe(redis));
    this.replicaTimeout = options.replicaTimeout ?? 100;
  }

  // "wait" is a lazyConnect client nobody used yet: its first command connects it.
  get available(): boolean {
    return this.redis.status === "ready" || this.redis.status === "wait";
  }

  async lookup(key: string, clockKey: string): Promise<Lookup> {
    if (isCluster(this.redis)) return this.lookupInCluster(this.redis, key, clockKey);
    const expected = this.knownDeps.get(key);
    // One MGET reads the entry, the clock and the versions at one instant.
    const [stored, clock, ...versions] = await this.redis.mget(key, clockKey, ...expected);
    const entry = stored === null ? undefined : parseEntry(stored);
    if (!entry) return { hit: false, stamp: Number(clock ?? 0) };
    this.knownDeps.remember(key, entry.deps);
    if (!sameKeys(entry.deps, expected)) return this.checkVersions(this.redis, clockKey, entry);
    return judge(entry, clock, versions);
  }

  async stamp(clockKey: string): Promise<number> {
    return Number((await this.redis.get(clockKey)) ?? 0);
  }

  async open(clockKey: string): Promise<void> {
    await scripts.open.run(this.redis, [clockKey, floorKey(clockKey)], []);
  }

  async set(entry: StoreEntry, clockKey: string): Promise<boolean> {
    const stored = formatEntry(entry.stamp, entry.deps, entry.value);
    const keys = [clockKey, floorKey(clockKey), ...entry.deps];
    const admit = () => scripts.admit.run(this.redis, keys, [entry.stamp, entry.ttlSeconds]);
    this.knownDeps.remember(entry.key, entry.deps);
    if (isCluster(this.redis)) {
      if (entry.deps.length > 0 && (await admit()) !== 1) return false;
      await this.redis.set(entry.key, stored, "EX", entry.ttlSeconds);
      return true;
    }
    const [admitted, written] =
      (await this.redis
        .pipeline()
        .evalsha(scripts.admit.sha, keys.length, ...keys, entry.stamp, entry.ttlSeconds)
        .set(entry.key, stored, "EX", entry.ttlSeconds)
        .exec()) ?? [];
    if (written?.[0]) throw written[0];
    if (isNoScript(admitted?.[0])) return (await admit()) === 1;
    if (admitted?.[0]) throw admitted[0];
    return admitted?.[1] === 1;
  }

  async bump(versionKeys: readonly string[], clockKey: string, channel = ""): Promise<void> {
    if (versionKeys.length === 0) return;
    const keys = [clockKey, ...versionKeys];
    const replicas = isCluster(this.redis) ? this.replicasOf(this.redis, clockKey) : 0;
    if (isCluster(this.redis) && replicas > 0) {
      const cluster = this.redis;
      const { acknowledged } = await scripts.bump
        .runAndWait(cluster, keys, [channel, ROW_VERSION_TTL], replicas, this.replicaTimeout)
        .catch((error: Error) => {
          // ioredis does not follow MOVED inside a pipeline: after a failover, learn the new owner
          // so that the retry reaches it.
          if (error.message.startsWith("MOVED")) cluster.refreshSlotsCache();
          throw error;
        });
      if (acknowledged < replicas)
        throw new NotReplicatedError(acknowledged, replicas, this.replicaTimeout);
    } else {
      await scripts.bump.run(this.redis, keys, [channel, ROW_VERSION_TTL]);
    }
  }

  follow(channel: string, handlers: FollowHandlers): { close(): Promise<void> } {
    return new InvalidationFeed(this.redis, channel, handlers);
  }

  async delete(key: string): Promise<void> {
    await this.redis.unlink(key);
  }

  // SCAN and UNLINK rather than KEYS or FLUSHDB: other data in the same database stays, and
  // Redis is never blocked. Versions are bumped, not deleted, so they only move forward. One scan
  // finds both kinds of key, since its cost grows with the whole database, not the namespace.
  async clear(space: KeySpace): Promise<void> {
    await this.scan(commonPrefix(space.entryPrefix, space.versionPrefix), async (keys) => {
      const entries = keys.filter((k) => k.startsWith(space.entryPrefix));
      const versions = keys.filter(
        (k) =>
          k.startsWith(space.versionPrefix) &&
          k !== space.clockKey &&
          k !== floorKey(space.clockKey),
      );
      // One key per UNLINK on Redis Cluster, where a command may not name keys of two slots.
      if (isCluster(this.redis)) await Promise.all(entries.map((key) => this.redis.unlink(key)));
      else if (entries.length > 0) await this.redis.unlink(...entries);
      await this.bump(versions, space.clockKey, space.channel);
    });
  }

  private async lookupInCluster(cluster: Cluster, key: string, clockKey: string): Promise<Lookup> {
    const stored = await cluster.get(key);
    const entry = stored === null ? undefined : parseEntry(stored);
    if (entry) return this.checkVersions(cluster, clockKey, entry);
    return { hit: false, stamp: await this.stamp(clockKey) };
  }

  /** Reads the clock and the versions an entry names (one slot), once the entry itself is read. */
  private async checkVersions(
    redis: Redis | Cluster,
    clockKey: string,
    entry: ParsedEntry,
  ): Promise<Lookup> {
    const [clock, ...versions] = await redis.mget(clockKey, ...entry.deps);
    return judge(entry, clock, versions);
  }

  /**
   * How many replicas ioredis knows (from CLUSTER SLOTS) for the master that holds this key. A
   * replica attached since the client last refreshed its slots is not waited for until it does.
   */
  private replicasOf(cluster: Cluster, key: string): number {
    const nodes = cluster.slots[keySlot(this.prefix + key)];
    return nodes ? Math.max(0, nodes.length - 1) : 0;
  }

  private async scan(prefix: string, each: (keys: string[]) => Promise<void>): Promise<void> {
    const pattern = `${this.prefix}${globEscape(prefix)}*`;
    // A Cluster client cannot SCAN: each master holds its own share of the keys.
    const nodes = isCluster(this.redis) ? this.redis.nodes("master") : [this.redis];
    for (const node of nodes) {
      let cursor = "0";
      do {
        const [next, keys] = await node.scan(cursor, "MATCH", pattern, "COUNT", SCAN_COUNT);
        cursor = next;
        if (keys.length > 0) await each(keys.map((k) => k.slice(this.prefix.length)));
      } while (cursor !== "0");
    }
  }

  private get prefix(): string {
    return this.redis.options.keyPrefix ?? "";
  }
}

/** The clock's value when it was last created (see clock.lua); in the clock's slot. */
function floorKey(clockKey: string): string {
  return `${clockKey}:floor`;
}

function isCluster(redis: Redis | Cluster): redis is Cluster {
  return redis.isCluster;
}

function commonPrefix(a: string, b: string): string {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return a.slice(0, i);
}

function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, "\\$&");
}

/**
 * An ioredis Redis or Cluster (5 and 6 alike), told by what this store uses: a connection status
 * string, pipelines and EVALSHA. node-redis clients (isOpen, sendCommand) and option objects fail it.
 */
function isIoredisClient(client: unknown): client is Redis | Cluster {
  const c = client as Record<string, unknown> | null;
  return (
    typeof c === "object" &&
    c !== null &&
    typeof c.status === "string" &&
    typeof c.pipeline === "function" &&
    typeof c.evalsha === "function" &&
    typeof c.defineCommand === "function"
  );
}

function describe(client: unknown): string {
  if (client === null || typeof client !== "object") return String(client);
  const c = client as { sendCommand?: unknown; constructor?: { name?: string } };
  if (typeof c.sendCommand === "function") return "a node-redis client";
  return c.constructor?.name && c.constructor.name !== "Object"
    ? `a ${c.constructor.name}`
    : "a plain object";
}
