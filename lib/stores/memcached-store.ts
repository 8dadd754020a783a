import { InvalidOptionError } from "../errors";
import { sameKeys } from "../util/same-keys";
import { formatEntry, isCurrent, judge, parseEntry } from "./entry-text";
import { KnownDeps } from "./known-deps";
import { BinaryProtocol, type Item, type MemjsClient } from "./memcached/binary-protocol";
import type { CacheStore, KeySpace, Lookup, StoreEntry } from "./store";

export type { MemjsClient } from "./memcached/binary-protocol";

export interface MemcachedStoreOptions {
  /** "host:port" of every server, the same list in the same order in every instance. */
  servers: string | readonly string[];
  /** SASL credentials, for servers that require them. */
  username?: string;
  password?: string;
  /** Seconds a server may take to answer before its connection is dropped. Default 0.5. */
  timeout?: number;
}

/** A version update that keeps losing CAS races gives up and is retried by the Invalidator. */
const MAX_CAS_ATTEMPTS = 50;
/** Versions and the clock never expire; Memcached may still evict them, and missing means invalid. */
const NO_EXPIRY = 0;

/**
 * Stores entries in Memcached, through a memjs client (the binary protocol, with SASL). Memcached
 * has no scripts, no server clock a client can read and no pub/sub, so the version protocol is
 * built from what it has:
 *
 * - The clock is a counter moved by INCREMENT (atomic, so every value it returns is above every
 *   stamp read before). When it is missing (never created, evicted, or the server restarted
 *   empty) INCREMENT creates it at this instance's wall-clock time in µs: Memcached has no clock
 *   a client can read, so the client's stands in for Redis's server time. The counter then moves
 *   by one per bump, so with fewer than one bump per µs it stays below its creation time plus its
 *   age: a clock created again after a loss starts above every stamp the lost one handed out,
 *   provided the instances' wall clocks disagree by less than half the time the lost clock lived
 *   (NTP keeps them within milliseconds; a clock lives from one loss to the next).
 * - A version moves to a new clock value by a CAS loop (read it with its CAS token, then store the
 *   new value only if nobody changed it; ADD when it is absent), and only ever upwards: of two
 *   concurrent bumps the higher value stays. INCREMENT would need the current value to know by
 *   how much, and two racing increments add up past the clock.
 * - A lookup sends GETs for the entry, the clock, the namespace's "cleared" version and the
 *   versions the entry named last time back to back: one round trip. Every version must be present
 *   and not above the entry's stamp; a missing one (evicted) counts as newer, so eviction of any
 *   key can only cost a miss.
 * - Memcached cannot list keys, so clear() bumps the "cleared" version every entry of the
 *   namespace depends on, rather than deleting entries; they are never served again and expire.
 *
 * With several servers, the entry, the clock and each version may sit on different servers; the
 * reasoning above holds key by key. A server that restarts empty loses its entries (misses), its
 * versions (entries naming them are refused until they are recreated above every stamp) or the
 * clock (recreated above every stamp it handed out). A server that is down makes every call that
 * touches it fail, and the QueryCache fails open. The client must not fail over to another server
 * (memjs's `failover` option): the versions it would write there are lost to readers once the
 * first server returns with its own, older ones.
 *
 * There is no follow(): Memcached has no pub/sub, so a QueryCache over this store refuses the
 * in-process tier (`local`).
 */
export class MemcachedStore implements CacheStore {
  readonly available = true;
  private readonly memcached: BinaryProtocol;
  private readonly owned: boolean;
  private readonly knownDeps = new KnownDeps();

  constructor(client: MemjsClient | MemcachedStoreOptions) {
    if (isOptions(client)) {
      this.memcached = new BinaryProtocol(createClient(client));
      this.owned = true;
    } else {
      if (client.options.failover) {
        throw new InvalidOptionError(
          "MemcachedStore: the memjs client has failover enabled, so a key whose server is down would be written to another one, and the older value read again once its server returns. Create the client with failover: false.",
        );
      }
      this.memcached = new BinaryProtocol(client);
      this.owned = false;
    }
  }

  async lookup(key: string, clockKey: string): Promise<Lookup> {
    const expected = [clearedKey(clockKey), ...this.knownDeps.get(key)];
    const [stored, clock, ...versions] = await this.memcached.getAll([key, clockKey, ...expected]);
    const entry = stored ? parseEntry(stored.value) : undefined;
    if (!entry) return { hit: false, stamp: Number(clock?.value ?? 0) };
    this.knownDeps.remember(key, entry.deps);
    const deps = [clearedKey(clockKey), ...entry.deps];
    const read = sameKeys(deps, expected) ? versions : await this.memcached.getAll(deps);
    return judge(
      entry,
      clock?.value,
      read.map((v) => v?.value),
    );
  }

  async stamp(clockKey: string): Promise<number> {
    return Number((await this.memcached.get(clockKey))?.value ?? 0);
  }

  /**
   * Writes the entry beside reading the clock and its versions (one round trip), then decides.
   * An entry written although refused is never served: every lookup checks the versions again.
   */
  async set(entry: StoreEntry, clockKey: string): Promise<boolean> {
    const deps = [clearedKey(clockKey), ...entry.deps];
    this.knownDeps.remember(entry.key, entry.deps);
    const [written, clock, versions] = await Promise.all([
      this.memcached.store(
        "set",
        entry.key,
        formatEntry(entry.stamp, entry.deps, entry.value),
        entry.ttlSeconds,
      ),
      this.memcached.get(clockKey),
      this.memcached.getAll(deps),
    ]);
    if (written === "tooLarge") return false;
    const verdict = admission(entry.stamp, clock, deps, versions);
    if (verdict.create.length > 0 || clock === null) await this.raise(verdict.create, clockKey);
    return verdict.admitted;
  }

  async bump(versionKeys: readonly string[], clockKey: string): Promise<void> {
    if (versionKeys.length === 0) return;
    // Every entry also depends on the namespace's cleared mark: a bump creates it where it is
    // missing (never cleared, or evicted), above every stamp handed out, so that an entry stamped
    // after this bump can be admitted.
    await this.raise(versionKeys, clockKey, [clearedKey(clockKey)]);
  }

  async delete(key: string): Promise<void> {
    await this.memcached.delete(key);
  }

  async clear(space: KeySpace): Promise<void> {
    await this.raise([clearedKey(space.clockKey)], space.clockKey);
  }

  /** Closes the connections of a client this store created; a client passed in is its owner's to close. */
  async close(): Promise<void> {
    if (this.owned) this.memcached.client.quit();
  }

  /**
   * Moves the clock past every stamp handed out so far, then each version up to it; the `ensure`
   * keys are only created at it, where they are missing.
   */
  private async raise(
    versionKeys: readonly string[],
    clockKey: string,
    ensure: readonly string[] = [],
  ): Promise<void> {
    const [version, current] = await Promise.all([
      this.nextVersion(clockKey),
      this.memcached.getAll([...versionKeys, ...ensure]),
    ]);
    await Promise.all([
      ...versionKeys.map((key, i) => this.raiseTo(key, version, current[i])),
      ...ensure
        .filter((_, i) => current[versionKeys.length + i] === null)
        .map((key) => this.raiseTo(key, version, null)),
    ]);
  }

  private async nextVersion(clockKey: string): Promise<bigint> {
    const now = BigInt(Date.now()) * 1000n;
    return this.memcached.increment(clockKey, 1n, now);
  }

  /** Sets a version to `version` unless it is there already or above; never moves it down. */
  private async raiseTo(key: string, version: bigint, current: Item | null): Promise<void> {
    const value = version.toString();
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      if (current && BigInt(current.value) >= version) return;
      const outcome = current
        ? await this.memcached.store("set", key, value, NO_EXPIRY, current.cas)
        : await this.memcached.store("add", key, value, NO_EXPIRY);
      if (outcome === "stored") return;
      current = await this.memcached.get(key);
    }
    throw new Error(
      `MemcachedStore: version ${key} kept changing under ${MAX_CAS_ATTEMPTS} attempts to move it to ${value}`,
    );
  }
}

/**
 * Whether an entry may be stored, and which versions must be created first. Today's rule: the
 * entry is refused when a version moved past its stamp, or when the clock or a version is
 * missing. Memcached evicts any key at any moment, so a missing version may have been bumped after
 * the stamp and then evicted, and nothing in Memcached can prove otherwise (the clock being
 * present says nothing about another key): it is created above every stamp handed out, and the
 * next computation, stamped after it, is admitted.
 */
function admission(
  stamp: number,
  clock: Item | null,
  deps: readonly string[],
  versions: readonly (Item | null)[],
): { admitted: boolean; create: string[] } {
  const create = deps.filter((_, i) => versions[i] === null);
  const admitted =
    clock !== null &&
    create.length === 0 &&
    isCurrent(
      stamp,
      versions.map((v) => v?.value),
    );
  return { admitted, create };
}

/**
 * The version every entry of a namespace depends on besides its own, bumped by clear(). It sits
 * under the namespace's version prefix, beside the clock.
 */
function clearedKey(clockKey: string): string {
  return `${clockKey}:cleared`;
}

function isOptions(client: MemjsClient | MemcachedStoreOptions): client is MemcachedStoreOptions {
  // A memjs Client has a `servers` property too: what tells them apart is that it can send requests.
  return typeof (client as Partial<MemjsClient>).perform !== "function";
}

function createClient(options: MemcachedStoreOptions): MemjsClient {
  const servers = typeof options.servers === "string" ? options.servers : options.servers.join(",");
  if (servers.trim() === "")
    throw new InvalidOptionError("MemcachedStore: servers must name at least one host:port.");
  const memjs = loadMemjs();
  return memjs.Client.create(servers, {
    username: options.username,
    password: options.password,
    timeout: options.timeout ?? 0.5,
    // One attempt: the QueryCache bounds every call and retries invalidations itself.
    retries: 1,
    failover: false,
    logger: { log: () => undefined },
  });
}

function loadMemjs(): { Client: { create(servers: string, options: object): MemjsClient } } {
  try {
    return require("memjs");
  } catch {
    throw new InvalidOptionError("MemcachedStore needs the memjs package: npm install memjs");
  }
}
