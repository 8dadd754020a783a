import type { DataSource } from "typeorm";
import { DataSourceNotInitializedError } from "../errors";
import type { Invalidator } from "../invalidation/invalidator";
import type { KeyLayout } from "../keys/key-layout";
import type { LocalTier } from "../local/local-tier";
import type { CacheMetrics } from "../metrics/cache-metrics";
import { checkTtl, type Dependency } from "../options";
import { decode, encode } from "../serialization/codec";
import { refreshesEarly, splitFreshness, withFreshness } from "../serialization/freshness";
import type { Lookup } from "../stores/store";
import type { StoreGuard } from "../stores/store-guard";
import { TrackingContext, tracking } from "../tracking/tracking-context";
import type { Counters } from "./counters";
import { dependencyKeys, keyVersion } from "./dependency-keys";
import type { EntryWriter } from "./entry-writer";
import type { CacheSetup, Setup } from "./setup";

/** How one computation is cached: its key, lifetime and extra dependencies. */
export interface FetchPlan {
  /** Builds the entry key once the database identity is known. */
  key(layout: KeyLayout): string;
  ttl?: number;
  dependsOn?: readonly Dependency[];
  /** XFetch's beta when early refresh is on. */
  earlyRefreshBeta?: number;
  /** Names the computation in warnings: "PostRepository.findPublished". */
  label: string;
  /** The version that set() and delete() move when they replace the entry: callers depend on it too. */
  replacedBy?(keys: KeyLayout): string;
  /** Stores a result computed after a failed query (a fallback). */
  cacheFallback?: boolean;
  /**
   * Refuses a result computed from no query and no dependency at all: for a database read that
   * means another computation's query served it (DataLoader-style batching), unseen here.
   */
  requiresReads?: boolean;
}

/** What the read path works with; the QueryCache owns each of them. @internal */
export interface ReadSources {
  readonly dataSource: DataSource;
  readonly setup: CacheSetup;
  readonly guard: StoreGuard;
  readonly invalidator: Invalidator;
  readonly local?: LocalTier;
  readonly writer: EntryWriter;
  readonly counters: Counters;
  readonly metrics: CacheMetrics;
  readonly defaultTtl: number;
  /** The cache this read path serves: tracking contexts it opens are owned by it. */
  readonly owner: object;
  /** Whether another cache's versions are this cache's (same store and namespace). */
  readonly sharesVersions: (cache: object) => boolean;
  readonly warn: (message: string) => void;
}

/** One miss on its way to the store: what its computation and its entry need. */
interface Miss {
  readonly setup: Setup;
  readonly plan: FetchPlan;
  readonly key: string;
  /** The stamp taken before the computation ran, or undefined when the store could not give one. */
  readonly stamp: Promise<number | undefined>;
  /** The local tier's generation when the store was read: an entry older than a reset is not kept. */
  readonly mark: number;
}

interface Computed {
  readonly value: unknown;
  readonly deps: readonly string[];
  /** Why the computation could not be tracked, which its callers inherit. */
  readonly refusal?: string;
  /** Settles once the store has answered (or at once when nothing was stored). */
  readonly stored: Promise<void>;
}

/**
 * The get-or-compute path (the QueryCache facade delegates to it, as bentocache's get/set
 * handlers sit apart from its cache): the in-process tier, the store lookup, single flight, the
 * tracked computation and the write of its entry.
 * @internal
 */
export class ReadPath {
  /** Computations under way, by key; each settles once its result is stored (or not). */
  private readonly flights = new Map<string, Promise<void>>();
  private recovery?: Promise<boolean>;

  constructor(private readonly sources: ReadSources) {}

  /**
   * A hit is one store round trip (none from the in-process tier); a miss runs compute once per
   * key in this process, tracked, and stores its result if nothing it read was written meanwhile.
   */
  async fetch(plan: FetchPlan, compute: () => unknown): Promise<unknown> {
    const started = performance.now();
    const { setup: lazy, guard, local, counters } = this.sources;
    const setup = lazy.current ?? (await lazy.orBypass());
    if (!this.sources.dataSource.isInitialized) throw new DataSourceNotInitializedError();
    if (!setup) return this.computeAlone(plan.label, plan, compute, started);
    const key = plan.key(setup.keys);
    const parent = this.parentContext();
    if (parent && plan.replacedBy) parent.addDeps([plan.replacedBy(setup.keys)]);
    const held = local?.get(key);
    if (held) {
      parent?.addDeps(held.deps);
      counters.hit(key, plan.label, started);
      return held.value;
    }
    // Checked before awaiting, so a hit pays no extra turn of the microtask queue.
    if (guard.down && !(await this.trusted(setup)))
      return this.computeAlone(key, plan, compute, started);
    let mark = local?.mark() ?? 0;
    let found = await guard.call((store) => store.lookup(key, setup.keys.clockKey));
    let hit = this.served(setup, plan, key, found, mark);
    if (hit) {
      counters.hit(key, plan.label, started);
      return hit.value;
    }
    // Concurrent misses on one key wait for one computation, then read the store again: a value
    // computed before a write that returned after they arrived must not reach them, and only the
    // store's version check knows. A cold key thus costs one computation, not one per caller.
    for (let round = 0; round < 2; round++) {
      const flight = this.flights.get(key);
      if (!flight) break;
      await flight;
      mark = local?.mark() ?? 0;
      found = await guard.call((store) => store.lookup(key, setup.keys.clockKey));
      // What a flight stored is fresh from the store's point of view: it is not refreshed early again.
      hit = this.served(setup, { ...plan, earlyRefreshBeta: undefined }, key, found, mark);
      if (hit) {
        counters.hit(key, plan.label, started);
        return hit.value;
      }
    }
    // An unreadable entry, or one refreshed early, was a hit to the store: a fresh stamp lets the
    // recomputed value replace it.
    const stamp = found?.hit ? this.freshStamp(setup) : Promise.resolve(found?.stamp);
    const computed = await counters.computing(key, plan.label, started, () => {
      const run = this.compute({ setup, plan, key, stamp, mark }, compute);
      if (!this.flights.has(key)) {
        const flight = run.then((done) => done.stored);
        this.flights.set(key, flight);
        const land = () => {
          if (this.flights.get(key) === flight) this.flights.delete(key);
        };
        flight.then(land, land);
      }
      return run;
    });
    parent?.absorb(computed.deps, computed.refusal);
    return computed.value;
  }

  /** The cached value of a key of the low-level API, or undefined on a miss. */
  async get(key: string): Promise<unknown> {
    const { setup: lazy, guard, invalidator, counters } = this.sources;
    const setup = await lazy.orBypass();
    if (!setup) return this.missed(key);
    const context = this.parentContext();
    // A cached computation that reads a key depends on its replacement (set, delete) too, hit or miss.
    context?.addDeps([keyVersion(setup.keys, key)]);
    if (guard.down && !(await this.trusted(setup))) return this.missed(key);
    const found = await guard.call((store) =>
      store.lookup(setup.keys.user(key), setup.keys.clockKey),
    );
    const value =
      found?.hit && !invalidator.blocks(found.deps)
        ? this.decoded(setup, splitFreshness(found.value).json, key)
        : undefined;
    if (!value) return this.missed(key);
    // ...and on what the value depends on.
    if (found?.hit) context?.addDeps(found.deps);
    counters.hit(key, undefined, 0);
    return value.value;
  }

  /** A stamp read now: what is stored with it is refused if anything it read is written from here on. */
  freshStamp(setup: Setup): Promise<number | undefined> {
    return this.sources.guard.call((store) => store.stamp(setup.keys.clockKey));
  }

  private missed(key: string): undefined {
    this.sources.counters.miss(key);
    return undefined;
  }

  /** The value of a store hit this call may serve (kept locally), or undefined. */
  private served(
    setup: Setup,
    plan: FetchPlan,
    key: string,
    found: Lookup | undefined,
    mark: number,
  ): { value: unknown } | undefined {
    if (!found?.hit || this.sources.invalidator.blocks(found.deps)) return undefined;
    const { json, freshness } = splitFreshness(found.value);
    if (
      freshness &&
      plan.earlyRefreshBeta !== undefined &&
      refreshesEarly(freshness, plan.earlyRefreshBeta)
    )
      return undefined;
    const value = this.decoded(setup, json, key);
    if (!value) return undefined;
    this.parentContext()?.addDeps(found.deps);
    if (freshness) this.keepLocally(setup, key, json, found.deps, freshness.expiresAt, mark);
    return value;
  }

  /**
   * Whether the store's entries may be served. After an outage, writes made meanwhile by this or
   * any other process may never have reached it, so everything of this database is invalidated
   * before the store is used again; until that lands, calls read the database. (This process's
   * own undelivered invalidations keep blocking what they cover until they land too.)
   */
  private trusted(setup: Setup): Promise<boolean> {
    const { invalidator, guard } = this.sources;
    this.recovery ??= invalidator.invalidate([setup.keys.everything]).then((recovered) => {
      this.recovery = undefined;
      if (recovered) guard.down = false;
      return recovered;
    });
    return this.recovery;
  }

  /**
   * Runs a computation without the store, still tracked so that nested calls behave; counted as
   * any other miss, under its key (or its label when the cache could not be set up to key it).
   */
  private async computeAlone(
    key: string,
    plan: FetchPlan,
    compute: () => unknown,
    started: number,
  ): Promise<unknown> {
    const context = this.trackingContext(plan);
    const value = await this.sources.counters.computing(key, plan.label, started, async () =>
      tracking.run(context, compute),
    );
    this.parentContext()?.absorb(context.deps, this.refusal(plan, context));
    return value;
  }

  /**
   * The computation this call runs inside, which takes on its dependencies. One of another cache
   * that does not share this store and namespace could not check them: it is refused instead.
   */
  private parentContext(): TrackingContext | undefined {
    const parent = tracking.current();
    if (
      !parent ||
      parent.owner === this.sources.owner ||
      parent.policy.sharesVersions(this.sources.owner)
    )
      return parent;
    parent.refuse(
      "it used a value of another QueryCache whose store or namespace differs, so writes there could not invalidate it",
    );
    return undefined;
  }

  private trackingContext(plan: FetchPlan): TrackingContext {
    return new TrackingContext(this.sources.owner, {
      vouched: (plan.dependsOn?.length ?? 0) > 0,
      cacheFallback: plan.cacheFallback === true,
      sharesVersions: this.sources.sharesVersions,
    });
  }

  /** Why a tracked computation must not be stored (its callers inherit it), or undefined. */
  private refusal(plan: FetchPlan, context: TrackingContext): string | undefined {
    if (context.uncacheable) return context.uncacheable;
    if (
      plan.requiresReads &&
      !context.sawQuery &&
      context.deps.size === 0 &&
      plan.dependsOn === undefined
    ) {
      return (
        "it ran no query and used no cached value, so nothing could invalidate it (when another call's query " +
        "served it, as with DataLoader, that query was charged to that call); name what it reads with dependsOn, " +
        "or dependsOn: [] when it reads nothing"
      );
    }
    return undefined;
  }

  /**
   * Keeps a decoded copy of its own in the local tier, so no caller's mutations reach it, until
   * the entry expires in the store.
   */
  private keepLocally(
    setup: Setup,
    key: string,
    json: string,
    deps: readonly string[],
    expiresAt: number,
    mark: number,
  ): void {
    const ttlMs = expiresAt - Date.now();
    const local = this.sources.local;
    if (!local || ttlMs <= 0) return;
    const decoded = this.decoded(setup, json, key);
    if (decoded) local.set(key, decoded.value, deps, json.length, ttlMs, mark);
  }

  /**
   * Runs the computation and returns its value as soon as it is encoded; storing it goes on behind
   * (its commands are already sent, so this caller's next read queues after them), and `stored`
   * settles once the store has answered, for those waiting on this flight.
   */
  private async compute(miss: Miss, compute: () => unknown): Promise<Computed> {
    const { setup, plan, key } = miss;
    const { counters, writer, invalidator } = this.sources;
    // Taken before the query runs, whatever it reads: that is what makes a stale set impossible.
    const stamp = await miss.stamp;
    const context = this.trackingContext(plan);
    const started = performance.now();
    const value = await this.sources.metrics.compute(
      plan.label,
      key,
      async () => tracking.run(context, compute),
      () => context.deps,
    );
    const computeMs = performance.now() - started;
    const deps = [
      setup.keys.everything,
      ...context.deps,
      ...(await dependencyKeys(this.sources.dataSource, setup, plan.dependsOn, "read")),
    ];
    const refusal = this.refusal(plan, context);
    const skip = (why?: string): Computed => {
      if (why) this.sources.warn(`${plan.label}: result not cached because ${why}`);
      counters.stored(plan.label, false);
      return { value, deps, refusal, stored: Promise.resolve() };
    };
    if (refusal) return skip(`${refusal}.`);
    let encoded: string;
    try {
      encoded = encode(value, setup.classes);
    } catch (error) {
      // encode() reports every value it cannot keep as UnserializableValueError; the value is returned all the same.
      return skip((error as Error).message);
    }
    if (stamp === undefined || invalidator.blocks(deps)) return skip();
    const ttlSeconds = checkTtl(`${plan.label}: ttl`, plan.ttl ?? this.sources.defaultTtl);
    const expiresAt = Date.now() + ttlSeconds * 1000;
    const entry = withFreshness(encoded, { expiresAt, computeMs: Math.ceil(computeMs) });
    const stored = writer
      .put(plan.label, { key, value: entry, deps, stamp, ttlSeconds }, setup.keys.clockKey)
      .then((accepted) => {
        if (accepted) this.keepLocally(setup, key, encoded, deps, expiresAt, miss.mark);
      });
    writer.behind(stored);
    return { value, deps, stored };
  }

  private decoded(setup: Setup, text: string, key: string): { value: unknown } | undefined {
    try {
      return { value: decode(text, setup.classes) };
    } catch (error) {
      this.sources.warn(
        `entry ${key} could not be read (${(error as Error).message}); it is treated as a miss.`,
      );
      return undefined;
    }
  }
}
