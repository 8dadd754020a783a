import { EventEmitter } from "node:events";
import type { DataSource, EntityTarget } from "typeorm";
import { Catalog } from "./catalog/catalog";
import { readIdentity } from "./catalog/database-identity";
import { LiveCatalog } from "./catalog/live-catalog";
import { DataSourceNotInitializedError, InvalidOptionError, SubscriberMissingError, UnserializableValueError } from "./errors";
import { Invalidator } from "./invalidation/invalidator";
import { type RowChange, rowPrecisionOf } from "./invalidation/row-precision";
import { TransactionBuffer } from "./invalidation/transaction-buffer";
import { refreshesEarly, splitFreshness, withFreshness } from "./cache/freshness";
import { KeyLayout } from "./keys/key-space";
import { LocalTier } from "./local/local-tier";
import { type Dependency, type EntryOptions, type QueryCacheOptions, type ResolvedOptions, checkTtl, earlyRefreshBeta, resolveOptions } from "./options";
import { ClassRegistry } from "./serialization/class-registry";
import { decode, encode } from "./serialization/codec";
import { SqlAnalyzer } from "./sql/analyzer";
import { MemoryStore } from "./stores/memory-store";
import type { CacheStore, Lookup } from "./stores/store";
import { StoreGuard } from "./stores/store-guard";
import { TrackingContext, tracking } from "./tracking/tracking-context";
import { QueryObserver } from "./typeorm/query-observer";
import { type QueryListener, registry } from "./typeorm/registry";
import { QueryCacheSubscriber } from "./typeorm/subscriber";

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
  /** Settles once the store has answered (or at once when nothing was stored). */
  readonly stored: Promise<void>;
}

/**
 * The cache of one DataSource: reads and writes entries in its store, tracks what each cached
 * computation reads, and turns every write the DataSource runs into invalidations.
 *
 * Events: "hit" and "miss" (key), "storeError" (Error), "warning" (message).
 */
export class QueryCache extends EventEmitter {
  readonly dataSource: DataSource;
  readonly store: CacheStore;
  private readonly options: ResolvedOptions;
  private readonly guard: StoreGuard;
  private readonly invalidator: Invalidator;
  private readonly analyzer = new SqlAnalyzer();
  private readonly buffer = new TransactionBuffer();
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

  constructor(options: QueryCacheOptions) {
    super();
    this.options = resolveOptions(options);
    this.dataSource = this.options.dataSource;
    this.store = options.store ?? new MemoryStore();
    this.guard = new StoreGuard(this.store, this.options.storeTimeout, (error) => this.storeError(error));
    if (this.options.localMaxBytes !== undefined) {
      if (typeof this.store.follow !== "function") {
        throw new InvalidOptionError("QueryCache: the local tier needs a store that can follow invalidations across processes, such as RedisStore.");
      }
      this.local = new LocalTier(this.options.localMaxBytes);
    }
    // Bumps are announced whether or not this process keeps a local tier: others may.
    this.invalidator = new Invalidator(this.guard, KeyLayout.clockKey(this.options.namespace), KeyLayout.channel(this.options.namespace), {
      settle: (keys) => this.local?.drop(keys),
      delivered: (count) => {
        this.counters.invalidations += count;
      },
      failed: (error) => this.storeError(error),
    });
    this.listener = {
      afterQuery: async (sql, runner, succeeded, detail) => (await this.setup()).observer.afterQuery(sql, runner, succeeded, detail),
    };
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
    const ready = await this.use();
    if (this.guard.down && !(await this.trusted(ready))) return this.count("misses", key, undefined);
    const found = await this.guard.call((store) => store.lookup(ready.keys.user(key), ready.keys.clockKey));
    const value = found?.hit && !this.invalidator.blocks(found.deps) ? this.decodeOrUndefined(ready, splitFreshness(found.value).json, key) : undefined;
    if (!value) return this.count("misses", key, undefined);
    return this.count("hits", key, value.value as T);
  }

  /**
   * Stores a value computed by the caller. It lives until its ttl ends or one of `dependsOn`
   * is written; without dependsOn, only the ttl, delete() or clear() end it.
   */
  async set(key: string, value: unknown, options: EntryOptions = {}): Promise<boolean> {
    const ready = await this.use();
    const ttl = checkTtl("set: ttl", options.ttl ?? this.options.defaultTtl);
    const deps = [ready.keys.everything, ...(await this.dependencyKeys(ready, options.dependsOn, "read"))];
    const encoded = withFreshness(encode(value, ready.classes), { expiresAt: Date.now() + ttl * 1000, computeMs: 0 });
    const stamp = await this.freshStamp(ready);
    if (stamp === undefined) return false;
    return (await this.putEntry(ready, `set(${key})`, ready.keys.user(key), encoded, deps, stamp, ttl)) === true;
  }

  async delete(key: string): Promise<void> {
    const ready = await this.use();
    this.local?.forget(ready.keys.user(key));
    await this.guard.call((store) => store.delete(ready.keys.user(key)));
  }

  /**
   * Returns the cached value of `key`, or runs compute and caches what it returns. The tables it
   * reads are tracked as with @Cached, so writes to them invalidate the entry.
   */
  wrap<T>(key: string, compute: () => Promise<T> | T, options: EntryOptions = {}): Promise<T> {
    const label = `wrap(${key})`;
    const plan: FetchPlan = { key: (keys) => keys.user(key), label, ttl: options.ttl, dependsOn: options.dependsOn };
    plan.earlyRefreshBeta = earlyRefreshBeta(label, options.earlyRefresh);
    return this.fetch(plan, compute) as Promise<T>;
  }

  /** Invalidates every entry that depends on these entities' tables or these table names. */
  async invalidate(...targets: Dependency[]): Promise<void> {
    const ready = await this.use();
    await this.invalidator.invalidate(await this.dependencyKeys(ready, targets, "write"));
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

  /** Deletes this namespace's entries (and only them: never FLUSHDB) and invalidates what is in flight. */
  async clear(): Promise<void> {
    const ready = await this.use();
    this.local?.drop([ready.keys.everything]);
    // An administrative scan of the whole keyspace: it gets no store timeout, and its errors are the caller's.
    await this.store.clear(ready.keys);
  }

  stats(): CacheStats {
    return { ...this.counters };
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
  }

  /**
   * The get-or-compute path behind @Cached, cached() and wrap(): a hit is one store round trip;
   * a miss runs compute once per key in this process, tracked, and stores its result if nothing
   * it read was written meanwhile.
   * @internal
   */
  async fetch(plan: FetchPlan, compute: () => unknown): Promise<unknown> {
    const ready = this.loaded ?? (await this.use());
    if (!this.dataSource.isInitialized) throw new DataSourceNotInitializedError();
    const key = plan.key(ready.keys);
    const parent = tracking.current();
    const held = this.local?.get(key);
    if (held) {
      parent?.addDeps(held.deps);
      return this.count("hits", key, held.value);
    }
    // Checked before awaiting, so a hit pays no extra turn of the microtask queue.
    if (this.guard.down && !(await this.trusted(ready))) return this.computeAlone(plan, compute);
    let mark = this.local?.mark() ?? 0;
    let found = await this.guard.call((store) => store.lookup(key, ready.keys.clockKey));
    let hit = this.served(ready, plan, key, found, mark);
    if (hit) return hit.value;
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
      if (hit) return hit.value;
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
    const computed = await run;
    parent?.addDeps(computed.deps);
    return computed.value;
  }

  /** The value of a store hit this call may serve (counted, and kept locally), or undefined. */
  private served(ready: Ready, plan: FetchPlan, key: string, found: Lookup | undefined, mark: number): { value: unknown } | undefined {
    if (!found?.hit || this.invalidator.blocks(found.deps)) return undefined;
    const { json, freshness } = splitFreshness(found.value);
    if (freshness && plan.earlyRefreshBeta !== undefined && refreshesEarly(freshness, plan.earlyRefreshBeta)) return undefined;
    const value = this.decodeOrUndefined(ready, json, key);
    if (!value) return undefined;
    tracking.current()?.addDeps(found.deps);
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
  private async computeAlone(plan: FetchPlan, compute: () => unknown): Promise<unknown> {
    this.counters.misses++;
    const context = new TrackingContext(this, (plan.dependsOn?.length ?? 0) > 0);
    const value = await tracking.run(context, compute);
    tracking.current()?.addDeps(context.deps);
    return value;
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
    this.local.set(key, decode(encoded, ready.classes), deps, encoded.length, ttlMs, mark);
  }

  /**
   * Runs the computation and returns its value as soon as it is encoded; storing it goes on behind
   * (its commands are already sent, so this caller's next read queues after them), and `stored`
   * settles once the store has answered, for those waiting on this flight.
   */
  private async compute(ready: Ready, plan: FetchPlan, key: string, compute: () => unknown, stamping: Promise<number | undefined>, mark: number): Promise<Computed> {
    // Taken before the query runs, whatever it reads: that is what makes a stale set impossible.
    const stamp = await stamping;
    const context = new TrackingContext(this, (plan.dependsOn?.length ?? 0) > 0);
    const started = performance.now();
    const value = await tracking.run(context, compute);
    const computeMs = performance.now() - started;
    const deps = [ready.keys.everything, ...context.deps, ...(await this.dependencyKeys(ready, plan.dependsOn, "read"))];
    const skip = (why?: string): Computed => {
      if (why) this.warnOnce(`${plan.label}: result not cached because ${why}`);
      this.counters.skipped++;
      return { value, deps, stored: Promise.resolve() };
    };
    if (context.uncacheable) return skip(`${context.uncacheable}.`);
    let encoded: string;
    try {
      encoded = encode(value, ready.classes);
    } catch (error) {
      if (!(error instanceof UnserializableValueError)) throw error;
      return skip(error.message);
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
   * over maxValueBytes are not offered.
   */
  private async putEntry(ready: Ready, label: string, key: string, value: string, deps: readonly string[], stamp: number, ttlSeconds: number): Promise<boolean | undefined> {
    const tooLarge = Buffer.byteLength(value) > this.options.maxValueBytes;
    if (tooLarge) this.warnOnce(`${label}: result not cached because it is larger than maxValueBytes (${this.options.maxValueBytes}).`);
    const stored = tooLarge ? false : await this.guard.call((store) => store.set({ key, value, deps, stamp, ttlSeconds }, ready.keys.clockKey));
    if (stored) this.counters.sets++;
    else this.counters.skipped++;
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
    const catalog = await ready.catalog.get();
    const keys: string[] = [];
    for (const target of targets) {
      const path = typeof target === "string" ? target : this.dataSource.getMetadata(target as EntityTarget<unknown>).tablePath;
      const dot = path.indexOf(".");
      const table = catalog.qualify(dot < 0 ? { name: path } : { schema: path.slice(0, dot), name: path.slice(dot + 1) });
      if (use === "read") for (const t of catalog.readDependencies(table)) keys.push(ready.keys.version(t));
      else for (const t of catalog.writeDependencies(table, "merge")) keys.push(...ready.keys.tableWide(t));
    }
    return keys;
  }

  private async use(): Promise<Ready> {
    if (!this.dataSource.isInitialized) throw new DataSourceNotInitializedError();
    return this.setup();
  }

  private setup(): Promise<Ready> {
    this.ready ??= tracking.outside(() => this.load()).then(
      (ready) => (this.loaded = ready),
      (error) => {
        this.ready = undefined;
        throw error;
      },
    );
    return this.ready;
  }

  private async load(): Promise<Ready> {
    if (!this.dataSource.subscribers.some((s) => s instanceof QueryCacheSubscriber)) throw new SubscriberMissingError();
    await SqlAnalyzer.load();
    const runner = this.dataSource.createQueryRunner();
    registry.markInternal(runner);
    try {
      const schema = (this.dataSource.options as { schema?: string }).schema;
      const identity = await readIdentity(runner, schema, this.options.databaseId);
      const keys = new KeyLayout(this.options.namespace, identity);
      // Queued before any stamp is read on the same connection, so a fresh namespace has its clock
      // for the first computation. Only an optimization: a failure costs that one entry, not freshness.
      void this.store.open?.(keys.clockKey).catch(() => undefined);
      const warn = (message: string) => this.warnOnce(message);
      const catalog = new LiveCatalog(await Catalog.load(runner), () => this.loadCatalog(), (error) =>
        warn(`the database catalog could not be re-read (${error.message}); names it lacks resolve to the current schema until it can.`),
      );
      return {
        keys,
        catalog,
        classes: ClassRegistry.of(this.dataSource),
        observer: new QueryObserver(this, this.analyzer, catalog, keys, this.buffer, this.invalidator, warn, rowPrecisionOf(this.dataSource, keys, this.options.precision)),
      };
    } finally {
      await runner.release();
    }
  }

  private async loadCatalog(): Promise<Catalog> {
    const runner = this.dataSource.createQueryRunner();
    registry.markInternal(runner);
    try {
      return await tracking.outside(() => Catalog.load(runner));
    } finally {
      await runner.release();
    }
  }

  private count<T>(counter: "hits" | "misses", key: string, value: T): T {
    this.counters[counter]++;
    this.emit(counter === "hits" ? "hit" : "miss", key);
    return value;
  }

  private storeError(error: Error): void {
    this.counters.errors++;
    this.emit("storeError", error);
  }

  private warnOnce(message: string): void {
    if (this.warned.has(message)) return;
    this.warned.add(message);
    this.emit("warning", message);
  }
}

