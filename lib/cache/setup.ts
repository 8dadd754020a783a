import type { DataSource } from "typeorm";
import { Catalog } from "../catalog/catalog";
import { bounded, CATALOG_TIMEOUT_MS, type CatalogConnection } from "../catalog/catalog-connection";
import { readIdentity } from "../catalog/database-identity";
import { LiveCatalog } from "../catalog/live-catalog";
import {
  CatalogUnavailableError,
  DataSourceNotInitializedError,
  SubscriberMissingError,
} from "../errors";
import type { Invalidator } from "../invalidation/invalidator";
import { rowPrecisionOf } from "../invalidation/row-precision";
import type { TransactionBuffer } from "../invalidation/transaction-buffer";
import { KeyLayout } from "../keys/key-layout";
import type { ResolvedOptions } from "../options";
import { ClassRegistry } from "../serialization/class-registry";
import { SqlAnalyzer } from "../sql/analyzer";
import type { CacheStore } from "../stores/store";
import { tracking } from "../tracking/tracking-context";
import { QueryObserver } from "../typeorm/query-observer";
import type { SearchPaths } from "../typeorm/search-paths";
import { hasSubscriber } from "../typeorm/subscriber";

/** How often the catalog's fingerprint is compared, to see DDL that other processes committed. */
const CATALOG_POLL_MS = 1000;
/** How long after a failed setup the next query may try again (meanwhile queries do not wait for it). */
const SETUP_RETRY_MS = 1000;

/** What the cache knows once its database is identified and its catalog read. @internal */
export interface Setup {
  readonly keys: KeyLayout;
  readonly classes: ClassRegistry;
  readonly observer: QueryObserver;
  readonly catalog: LiveCatalog;
}

/** What the setup reads from and hands to the query observer it builds. @internal */
export interface SetupSources {
  readonly dataSource: DataSource;
  readonly options: ResolvedOptions;
  readonly store: CacheStore;
  /** The library's own connection, for the catalog: never one of the application's pool. */
  readonly connection: CatalogConnection;
  readonly invalidator: Invalidator;
  /** The cache the observer answers for, to tell its own tracking contexts apart. */
  readonly owner: object;
  readonly analyzer: SqlAnalyzer;
  readonly buffer: TransactionBuffer;
  readonly paths: SearchPaths;
  readonly warn: (message: string) => void;
  readonly closed: () => boolean;
}

/**
 * The cache's lazy setup: the database identity (which names every key), the catalog and the
 * query observer. It runs on first use rather than in the constructor because the DataSource
 * may not be initialized yet; it is bounded in time, and a failure is remembered for a moment so
 * that queries do not each wait for a connection that just failed.
 * @internal
 */
export class CacheSetup {
  /** The setup once it has completed, for the synchronous part of a hit. */
  current?: Setup;
  private pending?: Promise<Setup>;
  private failure?: { error: Error; retryAt: number };
  /**
   * Set when a query ran while the setup could not complete: what it wrote is unknown, so every
   * entry of the database is invalidated as soon as the setup succeeds, before anything is served.
   */
  private blind = false;

  constructor(private readonly sources: SetupSources) {}

  /** The setup, for a call the application made: the DataSource must be initialized. */
  require(): Promise<Setup> {
    if (!this.sources.dataSource.isInitialized)
      return Promise.reject(new DataSourceNotInitializedError());
    return this.get();
  }

  /** The setup, or undefined (with a warning) when the library cannot read the catalog: callers then bypass the cache. */
  async orBypass(): Promise<Setup | undefined> {
    try {
      return await this.require();
    } catch (error) {
      if (!(error instanceof CatalogUnavailableError)) throw error;
      this.sources.warn(`${error.message} Until it can, calls bypass the cache.`);
      return undefined;
    }
  }

  /** A query ran that the cache could not follow: the next successful setup invalidates everything first. */
  missedWrites(): void {
    this.blind = true;
  }

  /** The setup itself, also for queries TypeORM runs while it initializes (migrations, synchronize). */
  get(): Promise<Setup> {
    if (this.pending) return this.pending;
    const failure = this.failure;
    if (failure && Date.now() < failure.retryAt) return Promise.reject(failure.error);
    const pending = bounded(
      tracking.outside(() => this.build()),
      CATALOG_TIMEOUT_MS,
      "the cache's setup",
    ).then(
      (setup) => {
        this.failure = undefined;
        this.current = setup;
        if (!this.sources.closed()) {
          const { connection, invalidator } = this.sources;
          // Writes this process made since that DDL committed were resolved without it: what they reached is unknown.
          setup.catalog.watch(
            CATALOG_POLL_MS,
            () => Catalog.fingerprint(connection),
            async (earlier, now) => {
              if (now.writesDifferFrom(earlier))
                await invalidator.invalidate([setup.keys.everything]);
            },
          );
        }
        return setup;
      },
      (error: Error) => {
        if (this.pending === pending) this.pending = undefined;
        this.failure = { error, retryAt: Date.now() + SETUP_RETRY_MS };
        throw error;
      },
    );
    this.pending = pending;
    return pending;
  }

  private async build(): Promise<Setup> {
    const { dataSource, options, store, connection, invalidator, warn } = this.sources;
    if (hasSubscriber(dataSource) === false) throw new SubscriberMissingError();
    await SqlAnalyzer.load();
    const schema = (dataSource.options as { schema?: string }).schema;
    const identity = await readIdentity(connection, schema, options.databaseId);
    const keys = new KeyLayout(options.namespace, identity);
    // Queued before any stamp is read, so a fresh namespace has its clock for the first
    // computation. Only an optimization: a failure costs that one entry, not freshness.
    void store.open?.(keys.clockKey).catch(() => undefined);
    const catalog = new LiveCatalog(
      await Catalog.load(connection),
      () => Catalog.load(connection),
      (error) =>
        warn(
          `${error.message} Until it can, writes to tables it does not know invalidate every entry of the database.`,
        ),
    );
    if (this.blind) {
      this.blind = false;
      // Undelivered, it stays pending and blocks every entry of the database until it lands.
      await invalidator.invalidate([keys.everything]);
    }
    const { owner, analyzer, buffer, paths } = this.sources;
    return {
      keys,
      catalog,
      classes: ClassRegistry.of(dataSource),
      observer: new QueryObserver(
        owner,
        analyzer,
        catalog,
        keys,
        buffer,
        paths,
        invalidator,
        warn,
        rowPrecisionOf(dataSource, keys, options.precision),
      ),
    };
  }
}
