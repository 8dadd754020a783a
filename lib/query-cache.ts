import { EventEmitter } from "node:events";
import type { DataSource, QueryRunner } from "typeorm";
import { type CacheStats, Counters } from "./cache/counters";
import { dependencyKeys, keyVersion } from "./cache/dependency-keys";
import { EntryWriter } from "./cache/entry-writer";
import { type FetchPlan, ReadPath } from "./cache/read-path";
import { CacheSetup, type Setup } from "./cache/setup";
import { CatalogConnection } from "./catalog/catalog-connection";
import { InvalidOptionError, SubscriberMissingError } from "./errors";
import type { QueryCacheEvents } from "./events";
import { Invalidator } from "./invalidation/invalidator";
import type { RowChange } from "./invalidation/row-precision";
import { TransactionBuffer } from "./invalidation/transaction-buffer";
import { KeyLayout } from "./keys/key-layout";
import { LocalTier } from "./local/local-tier";
import { CacheMetrics, type DetailedStats } from "./metrics/cache-metrics";
import {
  checkTtl,
  type Dependency,
  type EntryOptions,
  earlyRefreshBeta,
  type QueryCacheOptions,
  type ResolvedOptions,
  resolveOptions,
  type SetOptions,
} from "./options";
import { encode } from "./serialization/codec";
import { withFreshness } from "./serialization/freshness";
import { SqlAnalyzer } from "./sql/analyzer";
import type { RelationName } from "./sql/statement-effects";
import { CircuitBreaker } from "./stores/circuit-breaker";
import { MemoryStore } from "./stores/memory-store";
import type { CacheStore } from "./stores/store";
import { StoreGuard } from "./stores/store-guard";
import { tracking } from "./tracking/tracking-context";
import { type QueryDetail, registry } from "./typeorm/registry";
import { SearchPaths } from "./typeorm/search-paths";
import { hasSubscriber } from "./typeorm/subscriber";

export type { CacheStats } from "./cache/counters";
export type { FetchPlan } from "./cache/read-path";

/** Whether the cache can rely on its store right now (for health checks and tests). */
export interface CacheHealth {
  /** False from a store outage until the cache has made its entries safe to serve again. */
  storeReachable: boolean;
  /** Version keys this process invalidated but could not deliver yet; they are retried, and block what they cover meanwhile. */
  undeliveredInvalidations: number;
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
  private readonly buffer = new TransactionBuffer();
  private readonly paths = new SearchPaths();
  private readonly counters: Counters;
  private readonly setup: CacheSetup;
  private readonly reads: ReadPath;
  private readonly writer: EntryWriter;
  private readonly warned = new Set<string>();
  private readonly local?: LocalTier;
  private follower?: { close(): Promise<void> };
  private closed = false;
  /** The library's own connection, for the catalog: never one of the application's pool. */
  private readonly connection: CatalogConnection;
  /** @internal */
  readonly metrics: CacheMetrics;

  constructor(options: QueryCacheOptions) {
    super();
    this.options = resolveOptions(options);
    this.dataSource = this.options.dataSource;
    // Subscribers given as file globs are only known after initialize(): those are checked at setup.
    if (hasSubscriber(this.dataSource) === false) throw new SubscriberMissingError();
    this.store = options.store ?? new MemoryStore();
    this.guard = new StoreGuard(
      this.store,
      this.options.storeTimeout,
      (error) => this.counters.storeError(error),
      new CircuitBreaker(options.circuitBreaker),
    );
    this.metrics = new CacheMetrics(this.options.namespace, {
      breakerOpen: () => this.guard.breaker.isOpen,
      local: () => this.local?.size,
    });
    this.counters = new Counters(this.metrics, this);
    if (this.options.localMaxBytes !== undefined) {
      if (typeof this.store.follow !== "function") {
        throw new InvalidOptionError(
          "QueryCache: the local tier needs a store that can follow invalidations across processes, such as RedisStore.",
        );
      }
      this.local = new LocalTier(this.options.localMaxBytes);
    }
    // Bumps are announced whether or not this process keeps a local tier: others may.
    this.invalidator = new Invalidator(
      this.guard,
      KeyLayout.clockKey(this.options.namespace),
      KeyLayout.channel(this.options.namespace),
      {
        settle: (keys) => this.local?.drop(keys),
        delivered: (keys) => this.counters.invalidated(keys),
        failed: (error) => this.counters.storeError(error),
      },
    );
    this.connection = new CatalogConnection(this.dataSource);
    const warn = (message: string) => this.warnOnce(message);
    this.setup = new CacheSetup({
      dataSource: this.dataSource,
      options: this.options,
      store: this.store,
      connection: this.connection,
      invalidator: this.invalidator,
      owner: this,
      analyzer: new SqlAnalyzer(),
      buffer: this.buffer,
      paths: this.paths,
      warn,
      closed: () => this.closed,
    });
    this.writer = new EntryWriter(this.guard, this.counters, this.options.maxValueBytes, warn);
    this.reads = new ReadPath({
      dataSource: this.dataSource,
      setup: this.setup,
      guard: this.guard,
      invalidator: this.invalidator,
      local: this.local,
      writer: this.writer,
      counters: this.counters,
      metrics: this.metrics,
      defaultTtl: this.options.defaultTtl,
      owner: this,
      sharesVersions: (cache) =>
        cache === this ||
        (cache instanceof QueryCache &&
          cache.store === this.store &&
          cache.options.namespace === this.options.namespace),
      warn,
    });
    registry.bind(this.dataSource, this, {
      afterQuery: (sql, runner, succeeded, detail) => this.observe(sql, runner, succeeded, detail),
    });
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
  get<T = unknown>(key: string): Promise<T | undefined> {
    return this.reads.get(key) as Promise<T | undefined>;
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
    const setup = await this.setup.orBypass();
    if (!setup) return false;
    const ttlSeconds = checkTtl("set: ttl", options.ttl ?? this.options.defaultTtl);
    const deps = [
      setup.keys.everything,
      ...(await dependencyKeys(this.dataSource, setup, options.dependsOn, "read")),
    ];
    const encoded = withFreshness(encode(value, setup.classes), {
      expiresAt: Date.now() + ttlSeconds * 1000,
      computeMs: 0,
    });
    const stamp = await this.reads.freshStamp(setup);
    if (stamp === undefined) return false;
    const stored =
      (await this.writer.put(
        `set(${key})`,
        { key: setup.keys.user(key), value: encoded, deps, stamp, ttlSeconds },
        setup.keys.clockKey,
      )) === true;
    if (stored) await this.invalidator.invalidate([keyVersion(setup.keys, key)]);
    return stored;
  }

  async delete(key: string): Promise<void> {
    const setup = await this.setup.require();
    this.local?.forget(setup.keys.user(key));
    await this.guard.call((store) => store.delete(setup.keys.user(key)));
    await this.invalidator.invalidate([keyVersion(setup.keys, key)]);
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
    const setup = await this.setup.require();
    await this.invalidator.invalidate(
      await dependencyKeys(this.dataSource, setup, targets, "write"),
    );
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
  async invalidateTables(
    tables: readonly RelationName[],
    catalogChanged: boolean,
    rows: readonly RowChange[] = [],
  ): Promise<boolean> {
    const setup = await this.setup.require();
    let catalog = await setup.catalog.get();
    if (catalogChanged || tables.some((table) => !catalog.knows(table)))
      catalog = await setup.catalog.reload();
    const precise = new Set(rows.map((change) => change.table));
    const keys = new Set(await setup.observer.rowChangeKeys(rows));
    for (const table of tables) {
      const name = catalog.qualify(table);
      // "merge" covers every kind of row change; what the stream shows (cascaded rows, rows written
      // by triggers) arrives as changes of their own, so unseen writes do not widen this to everything.
      const whole = precise.has(name)
        ? catalog.relatives(name)
        : catalog.writeDependencies(name, "merge");
      for (const t of whole) for (const key of setup.keys.tableWide(t)) keys.add(key);
    }
    return this.invalidator.invalidate(keys);
  }

  /**
   * Invalidates what changed rows could affect, for changes the DataSource does not run (a change
   * feed): each names its schema-qualified table and the row's values before and after, leaving
   * out columns whose values are unknown. Resolves whether the invalidation was delivered.
   */
  async invalidateRows(changes: readonly RowChange[]): Promise<boolean> {
    const setup = await this.setup.require();
    return this.invalidator.invalidate(await setup.observer.rowChangeKeys(changes));
  }

  /**
   * Deletes this namespace's entries (and only them: never FLUSHDB) and invalidates what is in
   * flight, and reads the database catalog again, so DDL run elsewhere (a migration) is known.
   */
  async clear(): Promise<void> {
    const setup = await this.setup.require();
    await setup.catalog.reload();
    const failed = setup.catalog.failed;
    this.local?.drop([setup.keys.everything]);
    // An administrative scan of the whole keyspace: it gets no store timeout, and its errors are the caller's.
    await this.store.clear(setup.keys);
    if (failed) throw failed;
  }

  /** The counters; with `{ byMethod: true }`, also per method, per table, and the breaker and local tier. */
  stats(options: { byMethod: true }): CacheStats & DetailedStats;
  stats(): CacheStats;
  stats(options?: { byMethod?: boolean }): CacheStats | (CacheStats & DetailedStats) {
    return options?.byMethod
      ? { ...this.counters.totals, ...this.metrics.detailed() }
      : { ...this.counters.totals };
  }

  health(): CacheHealth {
    return {
      storeReachable: !this.guard.down,
      undeliveredInvalidations: this.invalidator.undelivered,
    };
  }

  /**
   * Resolves once every entry computed so far has been written to the store (or refused): a
   * cached call returns its value before the store has answered. For tests and scripts that read
   * stats() or expect the next call to be a hit.
   */
  async settled(): Promise<void> {
    await this.writer.settled();
  }

  /** Detaches from the DataSource; the store (and its Redis client) stays open for its owner to close. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writer.drain();
    await this.invalidator.flush();
    this.invalidator.stop();
    await this.follower?.close();
    registry.unbind(this.dataSource, this);
    this.setup.current?.catalog.stop();
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
    return (
      runner.isTransactionActive ||
      this.buffer.isOpen(runner) ||
      this.paths.current(runner) !== null
    );
  }

  /**
   * What names this cache's database and schema, once read: a key of another cache's entry that
   * takes this DataSource as an argument includes it.
   * @internal
   */
  databaseScope(): string | undefined {
    // The user-key prefix holds the identity's scope and nothing else that varies.
    return this.setup.current?.keys.user("");
  }

  /** Settles once the database identity and catalog are read. @internal */
  async whenReady(): Promise<void> {
    await this.setup.require();
  }

  /**
   * The get-or-compute path behind @Cached, cached() and wrap(): a hit is one store round trip;
   * a miss runs compute once per key in this process, tracked, and stores its result if nothing
   * it read was written meanwhile.
   * @internal
   */
  fetch(plan: FetchPlan, compute: () => unknown): Promise<unknown> {
    return this.reads.fetch(plan, compute);
  }

  /**
   * TypeORM's afterQuery, awaited before the query returns to its caller: it never rejects, since
   * an error here would turn the caller's successful query into a failed one.
   */
  private async observe(
    sql: string,
    runner: QueryRunner,
    succeeded: boolean,
    detail?: QueryDetail,
  ): Promise<void> {
    let setup: Setup;
    try {
      setup = this.setup.current ?? (await this.setup.get());
    } catch (error) {
      this.untracked(error as Error);
      this.setup.missedWrites();
      return;
    }
    try {
      await setup.observer.afterQuery(sql, runner, succeeded, detail);
    } catch (error) {
      this.untracked(error as Error);
      await this.invalidator.invalidate([setup.keys.everything]);
    }
  }

  /** A query the cache could not follow: a computation that ran it is not stored, and what it wrote is unknown. */
  private untracked(error: Error): void {
    this.warnOnce(
      `${error.message} Queries run meanwhile are not cached, and invalidate every entry of the database once it can.`,
    );
    const context = tracking.current();
    if (context?.owner === this)
      context.refuse(`the cache could not follow its queries (${error.message})`);
  }

  private warnOnce(message: string): void {
    if (this.warned.has(message)) return;
    this.warned.add(message);
    this.emit("warning", message);
  }
}
