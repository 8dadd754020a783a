import { EventEmitter } from "node:events";
import type { DataSource, EntityTarget, QueryRunner } from "typeorm";
import { Catalog } from "./catalog/catalog";
import { bounded, CATALOG_TIMEOUT_MS, CatalogConnection } from "./catalog/catalog-connection";
import { readIdentity } from "./catalog/database-identity";
import { LiveCatalog } from "./catalog/live-catalog";
import {
  CatalogUnavailableError, DataSourceNotInitializedError, InvalidOptionError, SubscriberMissingError, UnknownTableError,
} from "./errors";
import type { QueryCacheEvents } from "./events";
import { Invalidator } from "./invalidation/invalidator";
import { type RowChange, rowPrecisionOf } from "./invalidation/row-precision";
import { TransactionBuffer } from "./invalidation/transaction-buffer";
import { refreshesEarly, splitFreshness, withFreshness } from "./serialization/freshness";
import { KeyLayout } from "./keys/key-layout";
import { LocalTier } from "./local/local-tier";
import { type Dependency, type EntryOptions, type QueryCacheOptions, type ResolvedOptions, type SetOptions, checkTtl, earlyRefreshBeta, resolveOptions } from "./options";
import { CacheMetrics, type DetailedStats } from "./metrics/cache-metrics";
import { ClassRegistry } from "./serialization/class-registry";
import { decode, encode } from "./serialization/codec";
import { SqlAnalyzer } from "./sql/analyzer";
import type { RelationName } from "./sql/statement-effects";
import { MemoryStore } from "./stores/memory-store";
import type { CacheStore, Lookup } from "./stores/store";
import { CircuitBreaker } from "./stores/circuit-breaker";
import { StoreGuard } from "./stores/store-guard";
import { TrackingContext, tracking } from "./tracking/tracking-context";
import { QueryObserver } from "./typeorm/query-observer";
import { SearchPaths } from "./typeorm/search-paths";
import { type QueryDetail, type QueryListener, registry } from "./typeorm/registry";
import { hasSubscriber } from "./typeorm/subscriber";

export interface CacheStats {
  hits: number;
  misses: number;
  /** Entries written to the store. */
  sets: number;
  /** Dependency versions bumped in the store by writes and invalidate(). */
  invalidations: number;
  /** Store calls that failed or timed out; the callers got fresh data instead. */
  errors: number;
  /** Results returned but not stored: unserializable, oversize, read in a transaction, or outdated on arrival. */
  skipped: number;
}

/** Whether the cache can rely on its store right now (for health checks and tests). */
export interface CacheHealth {
  /** False from a store outage until the cache has made its entries safe to serve again. */
  storeReachable: boolean;
  /** Version keys this process invalidated but could not deliver yet; they are retried, and block what they cover meanwhile. */
  undeliveredInvalidations: number;
}

/** How often the catalog's fingerprint is compared, to see DDL that other processes committed. */
const CATALOG_POLL_MS = 1000;
/** How long after a failed setup the next query may try again (meanwhile queries do not wait for it). */
const SETUP_RETRY_MS = 1000;

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

interface Ready {
  readonly keys: KeyLayout;
  readonly classes: ClassRegistry;
  readonly observer: QueryObserver;
  readonly catalog: LiveCatalog;
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
 * The cache of one DataSource: reads and writes entries in its store, tracks what each cached
 * computation reads, and turns every write the DataSource runs into invalidations.
 *
 * Events: see QueryCacheEvents.
 */
export class QueryCache extends EventEmitter<QueryCacheEvents> {
  readonly dataSource: DataSource;
  readonly store: CacheStore;
  private readonly options: ResolvedOptions;
  private readonly guard: StoreGuard;
  private readonly invalidator: Invalidator;
  private readonly analyzer = new SqlAnalyzer();
  private readonly buffer = new TransactionBuffer();
  private readonly paths = new SearchPaths();
  private readonly listener: QueryListener;
  private readonly counters: CacheStats = { hits: 0, misses: 0, sets: 0, invalidations: 0, errors: 0, skipped: 0 };
  /** Computations under way, by key; each settles once its result is stored (or not). */
  private readonly flights = new Map<string, Promise<void>>();
  /** Entries being stored after their callers got their values. */
  private readonly writes = new Set<Promise<void>>();
  private readonly warned = new Set<string>();
  private ready?: Promise<Ready>;
  private recovery?: Promise<boolean>;
  /** The same as `ready` once it has resolved, for the synchronous part of a hit. */
  private loaded?: Ready;
  private readonly local?: LocalTier;
  private follower?: { close(): Promise<void> };
  private closed = false;
  /** The library's own connection, for the catalog: never one of the application's pool. */
  private readonly connection: CatalogConnection;
  /** The last failed setup, so that queries do not each wait for a connection that just failed. */
  private setupFailure?: { error: Error; retryAt: number };
  /**
   * Set when a query ran while the setup could not complete: what it wrote is unknown, so every
   * entry of the database is invalidated as soon as the setup succeeds, before anything is served.
   */
  private blind = false;
  /** @internal */
  readonly metrics: CacheMetrics;

  constructor(options: QueryCacheOptions) {
    super();
    this.options = resolveOptions(options);
    this.dataSource = this.options.dataSource;
    // Subscribers given as file globs are only known after initialize(): those are checked at setup.
    if (hasSubscriber(this.dataSource) === false) throw new SubscriberMissingError();
    this.store = options.store ?? new MemoryStore();
    this.guard = new StoreGuard(this.store, this.options.storeTimeout, (error) => this.storeError(error), new CircuitBreaker(options.circuitBreaker));
    this.metrics = new CacheMetrics(this.options.namespace, { breakerOpen: () => this.guard.breaker.isOpen, local: () => this.local?.size });
    if (this.options.localMaxBytes !== undefined) {
      if (typeof this.store.follow !== "function") {
        throw new InvalidOptionError("QueryCache: the local tier needs a store that can follow invalidations across processes, such as RedisStore.");
      }
      this.local = new LocalTier(this.options.localMaxBytes);
    }
    // Bumps are announced whether or not this process keeps a local tier: others may.
    this.invalidator = new Invalidator(this.guard, KeyLayout.clockKey(this.options.namespace), KeyLayout.channel(this.options.namespace), {
      settle: (keys) => this.local?.drop(keys),
      delivered: (keys) => {
        this.counters.invalidations += keys.length;
        this.metrics.invalidated(keys);
      },
      failed: (error) => this.storeError(error),
    });
    this.connection = new CatalogConnection(this.dataSource);
    this.listener = { afterQuery: (sql, runner, succeeded, detail) => this.observe(sql, runner, succeeded, detail) };
    registry.bind(this.dataSource, this, this.listener);
    void SqlAnalyzer.load();
    if (this.local) {
      const local = this.local;
      this.follower = this.store.follow?.(KeyLayout.channel(this.options.namespace), {
        invalidated: (keys) => local.drop(keys),
        state: (live) => local.reset(live),
      });
    }
  }

  /** The cached value, or undefined on a miss. A cached null is returned as null. */
  async get<T = unknown>(key: string): Promise<T | undefined> {
    const ready = await this.usable();
    if (!ready) return this.count("misses", key, undefined);
    const context = this.parentContext();
    // A cached computation that reads a key depends on its replacement (set, delete) too, hit or miss.
    context?.addDeps([keyVersion(ready.keys, key)]);
    if (this.guard.down && !(await this.trusted(ready))) return this.count("misses", key, undefined);
    const found = await this.guard.call((store) => store.lookup(ready.keys.user(key), ready.keys.clockKey));
    const value = found?.hit && !this.invalidator.blocks(found.deps) ? this.decodeOrUndefined(ready, splitFreshness(found.value).json, key) : undefined;
    if (!value) return this.count("misses", key, undefined);
    // ...and on what the value depends on.
    if (found?.hit) context?.addDeps(found.deps);
    return this.count("hits", key, value.value as T);
  }

  /**
   * Stores a value computed by the caller. It lives until its ttl ends or one of `dependsOn`
   * is written; without dependsOn, only the ttl, delete() or clear() end it.
   */
  async set(key: string, value: unknown, options: SetOptions = {}): Promise<boolean> {
    if ((options as EntryOptions).earlyRefresh !== undefined) {
      throw new InvalidOptionError(
        `set(${key}): earlyRefresh needs a computation to run again; set() only stores a value. Use wrap(key, compute, { earlyRefresh }) instead.`,
      );
    }
    const ready = await this.usable();
    if (!ready) return false;
    const ttl = checkTtl("set: ttl", options.ttl ?? this.options.defaultTtl);
    const deps = [ready.keys.everything, ...(await this.dependencyKeys(ready, options.dependsOn, "read"))];
    const encoded = withFreshness(encode(value, ready.classes), { expiresAt: Date.now() + ttl * 1000, computeMs: 0 });
    const stamp = await this.freshStamp(ready);
    if (stamp === undefined) return false;
    const stored = (await this.putEntry(ready, `set(${key})`, ready.keys.user(key), encoded, deps, stamp, ttl)) === true;
    if (stored) await this.invalidator.invalidate([keyVersion(ready.keys, key)]);
    return stored;
  }

  async delete(key: string): Promise<void> {
    const ready = await this.use();
    this.local?.forget(ready.keys.user(key));
    await this.guard.call((store) => store.delete(ready.keys.user(key)));
    await this.invalidator.invalidate([keyVersion(ready.keys, key)]);
  }

  /**
   * Returns the cached value of `key`, or runs compute and caches what it returns. The tables it
   * reads are tracked as with @Cached, so writes to them invalidate the entry.
   */
  wrap<T>(key: string, compute: () => Promise<T> | T, options: EntryOptions = {}): Promise<T> {
    const label = `wrap(${key})`;
    const plan: FetchPlan = {
      key: (keys) => keys.user(key),
      label,
      ttl: options.ttl,
      dependsOn: options.dependsOn,
      cacheFallback: options.cacheFallback === true,
      replacedBy: (keys) => keyVersion(keys, key),
    };
    try {
      plan.earlyRefreshBeta = earlyRefreshBeta(label, options.earlyRefresh);
    } catch (error) {
      // A bad option rejects, as in set(): callers handle one failure path.
      return Promise.reject(error);
    }
    return this.fetch(plan, compute) as Promise<T>;
  }

  /** Invalidates every entry that depends on these entities' tables or these table names. */
  async invalidate(...targets: Dependency[]): Promise<void> {
    const ready = await this.use();
    await this.invalidator.invalidate(await this.dependencyKeys(ready, targets, "write"));
  }

  /**
   * Invalidates what writes to these tables change, as the subscriber does for a write it sees,
   * and resolves whether that reached the store (if not, it is retried like any other and blocks
   * what it covers meanwhile). The catalog is read again first when `catalogChanged`, or when a
   * table is new to it. A table with changes in `rows` (all of its changes) is invalidated by
   * those rows, and its inheritance and partition relatives whole; the others whole. The change
   * feed's way in.
   * @internal
   */
  async invalidateTables(tables: readonly RelationName[], catalogChanged: boolean, rows: readonly RowChange[] = []): Promise<boolean> {
    const ready = await this.use();
    let catalog = await ready.catalog.get();
    if (catalogChanged || tables.some((table) => !catalog.knows(table))) catalog = await ready.catalog.reload();
    const precise = new Set(rows.map((change) => change.table));
    const keys = new Set(await ready.observer.rowChangeKeys(rows));
    for (const table of tables) {
      const name = catalog.qualify(table);
      // "merge" covers every kind of row change; what the stream shows (cascaded rows, rows written
      // by triggers) arrives as changes of their own, so unseen writes do not widen this to everything.
      const whole = precise.has(name) ? catalog.relatives(name) : catalog.writeDependencies(name, "merge");
      for (const t of whole) for (const key of ready.keys.tableWide(t)) keys.add(key);
    }
    return this.invalidator.invalidate(keys);
  }

  /**
   * Invalidates what changed rows could affect, for changes the DataSource does not run (a change
   * feed): each names its schema-qualified table and the row's values before and after, leaving
   * out columns whose values are unknown. Resolves whether the invalidation was delivered.
   */
  async invalidateRows(changes: readonly RowChange[]): Promise<boolean> {
    const ready = await this.use();
    return this.invalidator.invalidate(await ready.observer.rowChangeKeys(changes));
  }

  /**
   * Deletes this namespace's entries (and only them: never FLUSHDB) and invalidates what is in
   * flight, and reads the database catalog again, so DDL run elsewhere (a migration) is known.
   */
  async clear(): Promise<void> {
    const ready = await this.use();
    await ready.catalog.reload();
    const failed = ready.catalog.failed;
    this.local?.drop([ready.keys.everything]);
    // An administrative scan of the whole keyspace: it gets no store timeout, and its errors are the caller's.
    await this.store.clear(ready.keys);
    if (failed) throw failed;
  }

  /** The counters; with `{ byMethod: true }`, also per method, per table, and the breaker and local tier. */
  stats(options: { byMethod: true }): CacheStats & DetailedStats;
  stats(): CacheStats;
  stats(options?: { byMethod?: boolean }): CacheStats | (CacheStats & DetailedStats) {
    return options?.byMethod ? { ...this.counters, ...this.metrics.detailed() } : { ...this.counters };
  }

  health(): CacheHealth {
    return { storeReachable: !this.guard.down, undeliveredInvalidations: this.invalidator.undelivered };
  }

  /**
   * Resolves once every entry computed so far has been written to the store (or refused): a
   * cached call returns its value before the store has answered. For tests and scripts that read
   * stats() or expect the next call to be a hit.
   */
  async settled(): Promise<void> {
    while (this.writes.size > 0) await Promise.allSettled(this.writes);
  }

  /** Detaches from the DataSource; the store (and its Redis client) stays open for its owner to close. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.writes);
    await this.invalidator.flush();
    this.invalidator.stop();
    await this.follower?.close();
    registry.unbind(this.dataSource, this);
    this.loaded?.catalog.stop();
    await this.connection.close();
    this.metrics.close();
  }

  /**
   * Whether calls made through this query runner must bypass the cache: its session is inside a
   * transaction (however it was opened, raw BEGIN included), or resolves names by a search_path of
   * its own, so entries keyed for the DataSource's default would be another schema's.
   * @internal
   */
  bypasses(runner: QueryRunner): boolean {
    return runner.isTransactionActive || this.buffer.isOpen(runner) || this.paths.current(runner) !== null;
  }

  /**
   * What names this cache's database and schema, once read: a key of another cache's entry that
   * takes this DataSource as an argument includes it.
   * @internal
   */
  databaseScope(): string | undefined {
    // The user-key prefix holds the identity's scope and nothing else that varies.
    return this.loaded?.keys.user("");
  }

  /** Settles once the database identity and catalog are read. @internal */
  async whenReady(): Promise<void> {
    await this.use();
  }

  /**
   * The get-or-compute path behind @Cached, cached() and wrap(): a hit is one store round trip;
   * a miss runs compute once per key in this process, tracked, and stores its result if nothing
   * it read was written meanwhile.
   * @internal
   */
  async fetch(plan: FetchPlan, compute: () => unknown): Promise<unknown> {
    const started = performance.now();
    const ready = this.loaded ?? (await this.usable());
    if (!this.dataSource.isInitialized) throw new DataSourceNotInitializedError();
    if (!ready) return this.computeAlone(plan, compute, started);
    const key = plan.key(ready.keys);
    const parent = this.parentContext();
    if (parent && plan.replacedBy) parent.addDeps([plan.replacedBy(ready.keys)]);
    const held = this.local?.get(key);
    if (held) {
      parent?.addDeps(held.deps);
      this.metrics.hit(plan.label, started);
      return this.count("hits", key, held.value);
    }
    // Checked before awaiting, so a hit pays no extra turn of the microtask queue.
    if (this.guard.down && !(await this.trusted(ready))) return this.computeAlone(plan, compute, started);
    let mark = this.local?.mark() ?? 0;
    let found = await this.guard.call((store) => store.lookup(key, ready.keys.clockKey));
    let hit = this.served(ready, plan, key, found, mark);
    if (hit) {
      this.metrics.hit(plan.label, started);
      return hit.value;
    }
    // Concurrent misses on one key wait for one computation, then read the store again: a value
    // computed before a write that returned after they arrived must not reach them, and only the
    // store's version check knows. A cold key thus costs one computation, not one per caller.
    for (let round = 0; round < 2; round++) {
      const flight = this.flights.get(key);
      if (!flight) break;
      await flight;
      mark = this.local?.mark() ?? 0;
      found = await this.guard.call((store) => store.lookup(key, ready.keys.clockKey));
      // What a flight stored is fresh from the store's point of view: it is not refreshed early again.
      hit = this.served(ready, { ...plan, earlyRefreshBeta: undefined }, key, found, mark);
      if (hit) {
        this.metrics.hit(plan.label, started);
        return hit.value;
      }
    }
    // An unreadable entry, or one refreshed early, was a hit to the store: a fresh stamp lets the
    // recomputed value replace it.
    const stamp = found?.hit ? this.freshStamp(ready) : Promise.resolve(found?.stamp);
    this.count("misses", key, undefined);
    const run = this.compute(ready, plan, key, compute, stamp, mark);
    if (!this.flights.has(key)) {
      const flight = run.then((computed) => computed.stored);
      this.flights.set(key, flight);
      const land = () => {
        if (this.flights.get(key) === flight) this.flights.delete(key);
      };
      flight.then(land, land);
    }
    const computed = await run.catch((error: unknown) => {
      this.metrics.failed(plan.label);
      throw error;
    });
    this.metrics.miss(plan.label, started);
    parent?.absorb(computed.deps, computed.refusal);
    return computed.value;
  }

  /** The value of a store hit this call may serve (counted, and kept locally), or undefined. */
  private served(ready: Ready, plan: FetchPlan, key: string, found: Lookup | undefined, mark: number): { value: unknown } | undefined {
    if (!found?.hit || this.invalidator.blocks(found.deps)) return undefined;
    const { json, freshness } = splitFreshness(found.value);
    if (freshness && plan.earlyRefreshBeta !== undefined && refreshesEarly(freshness, plan.earlyRefreshBeta)) return undefined;
    const value = this.decodeOrUndefined(ready, json, key);
    if (!value) return undefined;
    this.parentContext()?.addDeps(found.deps);
    if (freshness) this.keepLocally(ready, key, json, found.deps, freshness.expiresAt, mark);
    this.count("hits", key, undefined);
    return value;
  }

  /**
   * Whether the store's entries may be served. After an outage, writes made meanwhile by this or
   * any other process may never have reached it, so everything of this database is invalidated
   * before the store is used again; until that lands, calls read the database. (This process's
   * own undelivered invalidations keep blocking what they cover until they land too.)
   */
  private trusted(ready: Ready): Promise<boolean> {
    this.recovery ??= this.invalidator.invalidate([ready.keys.everything]).then((recovered) => {
      this.recovery = undefined;
      if (recovered) this.guard.down = false;
      return recovered;
    });
    return this.recovery;
  }

  /** Runs a computation without the store, still tracked so that nested calls behave. */
  private async computeAlone(plan: FetchPlan, compute: () => unknown, started: number): Promise<unknown> {
    this.counters.misses++;
    const context = this.trackingContext(plan);
    const value = await tracking.run(context, compute);
    this.metrics.miss(plan.label, started);
    this.parentContext()?.absorb(context.deps, this.refusal(plan, context));
    return value;
  }

  /**
   * The computation this call runs inside, which takes on its dependencies. One of another cache
   * that does not share this store and namespace could not check them: it is refused instead.
   */
  private parentContext(): TrackingContext | undefined {
    const parent = tracking.current();
    if (!parent || parent.owner === this || parent.policy.sharesVersions(this)) return parent;
    parent.refuse("it used a value of another QueryCache whose store or namespace differs, so writes there could not invalidate it");
    return undefined;
  }

  private trackingContext(plan: FetchPlan): TrackingContext {
    return new TrackingContext(this, {
      vouched: (plan.dependsOn?.length ?? 0) > 0,
      cacheFallback: plan.cacheFallback === true,
      sharesVersions: (cache) => cache === this || (cache instanceof QueryCache && cache.store === this.store && cache.options.namespace === this.options.namespace),
    });
  }

  /** Why a tracked computation must not be stored (its callers inherit it), or undefined. */
  private refusal(plan: FetchPlan, context: TrackingContext): string | undefined {
    if (context.uncacheable) return context.uncacheable;
    if (plan.requiresReads && !context.sawQuery && context.deps.size === 0 && plan.dependsOn === undefined) {
      return (
        "it ran no query and used no cached value, so nothing could invalidate it (when another call's query " +
        "served it, as with DataLoader, that query was charged to that call); name what it reads with dependsOn, " +
        "or dependsOn: [] when it reads nothing"
      );
    }
    return undefined;
  }

  private freshStamp(ready: Ready): Promise<number | undefined> {
    return this.guard.call((store) => store.stamp(ready.keys.clockKey));
  }

  /**
   * Keeps a decoded copy of its own in the local tier, so no caller's mutations reach it, until
   * the entry expires in the store.
   */
  private keepLocally(ready: Ready, key: string, encoded: string, deps: readonly string[], expiresAt: number, mark: number): void {
    const ttlMs = expiresAt - Date.now();
    if (!this.local || ttlMs <= 0) return;
    const decoded = this.decodeOrUndefined(ready, encoded, key);
    if (decoded) this.local.set(key, decoded.value, deps, encoded.length, ttlMs, mark);
  }

  /**
   * Runs the computation and returns its value as soon as it is encoded; storing it goes on behind
   * (its commands are already sent, so this caller's next read queues after them), and `stored`
   * settles once the store has answered, for those waiting on this flight.
   */
  private async compute(ready: Ready, plan: FetchPlan, key: string, compute: () => unknown, stamping: Promise<number | undefined>, mark: number): Promise<Computed> {
    // Taken before the query runs, whatever it reads: that is what makes a stale set impossible.
    const stamp = await stamping;
    const context = this.trackingContext(plan);
    const started = performance.now();
    const value = await this.metrics.compute(plan.label, key, async () => tracking.run(context, compute), () => context.deps);
    const computeMs = performance.now() - started;
    const deps = [ready.keys.everything, ...context.deps, ...(await this.dependencyKeys(ready, plan.dependsOn, "read"))];
    const refusal = this.refusal(plan, context);
    const skip = (why?: string): Computed => {
      if (why) this.warnOnce(`${plan.label}: result not cached because ${why}`);
      this.counters.skipped++;
      this.metrics.stored(plan.label, false);
      return { value, deps, refusal, stored: Promise.resolve() };
    };
    if (refusal) return skip(`${refusal}.`);
    let encoded: string;
    try {
      encoded = encode(value, ready.classes);
    } catch (error) {
      // encode() reports every value it cannot keep as UnserializableValueError; the value is returned all the same.
      return skip((error as Error).message);
    }
    if (stamp === undefined || this.invalidator.blocks(deps)) return skip();
    const ttl = checkTtl(`${plan.label}: ttl`, plan.ttl ?? this.options.defaultTtl);
    const expiresAt = Date.now() + ttl * 1000;
    const entry = withFreshness(encoded, { expiresAt, computeMs: Math.ceil(computeMs) });
    const stored = this.putEntry(ready, plan.label, key, entry, deps, stamp, ttl).then((accepted) => {
      if (accepted) this.keepLocally(ready, key, encoded, deps, expiresAt, mark);
    });
    this.writes.add(stored);
    void stored.finally(() => this.writes.delete(stored));
    return { value, deps, stored };
  }

  /**
   * Resolves whether the store took the entry, or undefined when it could not be asked. Entries
   * whose result is over maxValueBytes are not offered: the limit is on the serialized result, not
   * on the bookkeeping around it, whose length varies with the computation's duration.
   */
  private async putEntry(ready: Ready, label: string, key: string, value: string, deps: readonly string[], stamp: number, ttlSeconds: number): Promise<boolean | undefined> {
    const tooLarge = Buffer.byteLength(splitFreshness(value).json) > this.options.maxValueBytes;
    if (tooLarge) this.warnOnce(`${label}: result not cached because it is larger than maxValueBytes (${this.options.maxValueBytes}).`);
    const stored = tooLarge ? false : await this.guard.call((store) => store.set({ key, value, deps, stamp, ttlSeconds }, ready.keys.clockKey));
    if (stored) this.counters.sets++;
    else this.counters.skipped++;
    this.metrics.stored(label, stored === true);
    return stored;
  }

  private decodeOrUndefined(ready: Ready, text: string, key: string): { value: unknown } | undefined {
    try {
      return { value: decode(text, ready.classes) };
    } catch (error) {
      this.warnOnce(`entry ${key} could not be read (${(error as Error).message}); it is treated as a miss.`);
      return undefined;
    }
  }

  /** Version keys of the named tables; for "write", with what a write to them changes besides. */
  private async dependencyKeys(ready: Ready, targets: readonly Dependency[] | undefined, use: "read" | "write"): Promise<string[]> {
    if (!targets?.length) return [];
    let catalog = await ready.catalog.get();
    const schema = (this.dataSource.options as { schema?: string }).schema;
    const keys: string[] = [];
    for (const target of targets) {
      const path = typeof target === "string" ? target : this.dataSource.getMetadata(target as EntityTarget<unknown>).tablePath;
      const dot = path.indexOf(".");
      const ref = dot < 0 ? { name: path } : { schema: path.slice(0, dot), name: path.slice(dot + 1) };
      // A bare name means what TypeORM would write for it: a table of the DataSource's schema first.
      const schemas = schema ? [schema, ...catalog.searchPath] : undefined;
      // A misspelled name would never be invalidated: it is an error, unless the catalog could not be read to tell.
      if (!catalog.knows(ref, schemas)) catalog = await ready.catalog.reload();
      if (!catalog.knows(ref, schemas) && !ready.catalog.failed) throw new UnknownTableError(use === "read" ? "dependsOn" : "invalidate()", path);
      const table = catalog.qualify(ref, schemas);
      const tables = use === "read" ? catalog.readDependencies(table) : catalog.writeDependencies(table, "merge");
      for (const t of tables) keys.push(...(use === "read" ? [ready.keys.version(t)] : ready.keys.tableWide(t)));
    }
    return keys;
  }

  private async use(): Promise<Ready> {
    if (!this.dataSource.isInitialized) throw new DataSourceNotInitializedError();
    return this.setup();
  }

  /** The setup, or undefined (with a warning) when the library cannot read the catalog: callers then bypass the cache. */
  private async usable(): Promise<Ready | undefined> {
    try {
      return await this.use();
    } catch (error) {
      if (!(error instanceof CatalogUnavailableError)) throw error;
      this.warnOnce(`${error.message} Until it can, calls bypass the cache.`);
      return undefined;
    }
  }

  /**
   * TypeORM's afterQuery, awaited before the query returns to its caller: it never rejects, since
   * an error here would turn the caller's successful query into a failed one.
   */
  private async observe(sql: string, runner: QueryRunner, succeeded: boolean, detail?: QueryDetail): Promise<void> {
    let ready: Ready;
    try {
      ready = this.loaded ?? (await this.setup());
    } catch (error) {
      this.untracked(error as Error);
      this.blind = true;
      return;
    }
    try {
      await ready.observer.afterQuery(sql, runner, succeeded, detail);
    } catch (error) {
      this.untracked(error as Error);
      await this.invalidator.invalidate([ready.keys.everything]);
    }
  }

  /** A query the cache could not follow: a computation that ran it is not stored, and what it wrote is unknown. */
  private untracked(error: Error): void {
    this.warnOnce(`${error.message} Queries run meanwhile are not cached, and invalidate every entry of the database once it can.`);
    const context = tracking.current();
    if (context?.owner === this) context.refuse(`the cache could not follow its queries (${error.message})`);
  }

  private setup(): Promise<Ready> {
    if (this.ready) return this.ready;
    const failure = this.setupFailure;
    if (failure && Date.now() < failure.retryAt) return Promise.reject(failure.error);
    const ready = bounded(tracking.outside(() => this.load()), CATALOG_TIMEOUT_MS, "the cache's setup").then(
      (loaded) => {
        this.setupFailure = undefined;
        this.loaded = loaded;
        if (!this.closed) {
          // Writes this process made since that DDL committed were resolved without it: what they reached is unknown.
          loaded.catalog.watch(CATALOG_POLL_MS, () => Catalog.fingerprint(this.connection), async (earlier, now) => {
            if (now.writesDifferFrom(earlier)) await this.invalidator.invalidate([loaded.keys.everything]);
          });
        }
        return loaded;
      },
      (error: Error) => {
        if (this.ready === ready) this.ready = undefined;
        this.setupFailure = { error, retryAt: Date.now() + SETUP_RETRY_MS };
        throw error;
      },
    );
    this.ready = ready;
    return ready;
  }

  private async load(): Promise<Ready> {
    if (hasSubscriber(this.dataSource) === false) throw new SubscriberMissingError();
    await SqlAnalyzer.load();
    const schema = (this.dataSource.options as { schema?: string }).schema;
    const identity = await readIdentity(this.connection, schema, this.options.databaseId);
    const keys = new KeyLayout(this.options.namespace, identity);
    // Queued before any stamp is read, so a fresh namespace has its clock for the first
    // computation. Only an optimization: a failure costs that one entry, not freshness.
    void this.store.open?.(keys.clockKey).catch(() => undefined);
    const warn = (message: string) => this.warnOnce(message);
    const catalog = new LiveCatalog(await Catalog.load(this.connection), () => Catalog.load(this.connection), (error) =>
      warn(`${error.message} Until it can, writes to tables it does not know invalidate every entry of the database.`),
    );
    if (this.blind) {
      this.blind = false;
      // Undelivered, it stays pending and blocks every entry of the database until it lands.
      await this.invalidator.invalidate([keys.everything]);
    }
    return {
      keys,
      catalog,
      classes: ClassRegistry.of(this.dataSource),
      observer: new QueryObserver(this, this.analyzer, catalog, keys, this.buffer, this.paths, this.invalidator, warn, rowPrecisionOf(this.dataSource, keys, this.options.precision)),
    };
  }

  private count<T>(counter: "hits" | "misses", key: string, value: T): T {
    this.counters[counter]++;
    this.emit(counter === "hits" ? "hit" : "miss", key);
    return value;
  }

  private storeError(error: Error): void {
    this.counters.errors++;
    this.metrics.storeError(error);
    this.emit("storeError", error);
  }

  private warnOnce(message: string): void {
    if (this.warned.has(message)) return;
    this.warned.add(message);
    this.emit("warning", message);
  }
}

/** The version of a key of the low-level API, moved when set() or delete() replaces its entry. */
function keyVersion(keys: KeyLayout, key: string): string {
  return keys.version(`k:${key}`);
}
