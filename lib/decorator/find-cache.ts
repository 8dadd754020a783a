import { DataSource, EntityManager, type QueryRunner, Repository } from "typeorm";
import { QueryCache } from "../query-cache";
import { registry } from "../typeorm/registry";

/**
 * The cache of the DataSource an object works with: its manager's (repositories), its own, the
 * one its injected repositories or managers use (services), or else the application's default.
 */
export function findCache(self: unknown): QueryCache | undefined {
  // A static method runs with its class as `this`, which may hold the DataSource as a static field.
  if ((typeof self !== "object" && typeof self !== "function") || self === null)
    return fallbackCache();
  const o = self as {
    manager?: { connection?: DataSource };
    dataSource?: DataSource;
    connection?: DataSource;
  };
  return (
    cacheOf(o.manager?.connection) ??
    cacheOf(o.dataSource) ??
    cacheOf(o.connection) ??
    cacheOf(self as DataSource) ??
    cacheOf(fieldsDataSource(self)) ??
    fallbackCache()
  );
}

/** Registered fallbacks, the latest last: closing one application gives the fallback back to the one before. */
const fallbacks: QueryCache[] = [];

/**
 * Registers (or, with `registered: false`, removes) a cache @Cached uses when the object leads to
 * none, as QueryCacheModule does for the application's DataSource.
 * @internal
 */
export function setFallbackCache(cache: QueryCache, registered: boolean): void {
  const at = fallbacks.indexOf(cache);
  if (at >= 0) fallbacks.splice(at, 1);
  if (registered) fallbacks.push(cache);
}

/** @internal */
export function fallbackCache(): QueryCache | undefined {
  return fallbacks[fallbacks.length - 1];
}

const fieldSources = new WeakMap<object, DataSource | null>();

/**
 * The one DataSource behind the repositories, managers and DataSources an object holds in its
 * own fields (a service with @InjectRepository), looked up once per object. With none, or with
 * several, there is none: the caller must name the cache.
 */
function fieldsDataSource(self: object): DataSource | undefined {
  let found = fieldSources.get(self);
  if (found === undefined) {
    const sources = new Set<DataSource>();
    for (const value of Object.values(self)) {
      if (value instanceof Repository) sources.add(value.manager.connection);
      else if (value instanceof EntityManager) sources.add(value.connection);
      else if (value instanceof DataSource) sources.add(value);
    }
    found = sources.size === 1 ? [...sources][0] : null;
    fieldSources.set(self, found);
  }
  return found ?? undefined;
}

function cacheOf(dataSource: DataSource | undefined): QueryCache | undefined {
  const cache = dataSource && registry.cacheOf(dataSource);
  return cache instanceof QueryCache ? cache : undefined;
}

/**
 * Whether the call runs on a session the cache must stay out of: inside a transaction (through a
 * transactional manager, as em.withRepository(repo) gives, one passed as an argument, or a query
 * runner on which raw BEGIN ran), or one whose search_path was changed. Such calls skip the cache,
 * so a transaction sees its own writes, nothing uncommitted is stored, and no schema is served
 * another's entries.
 */
export function bypassesCache(cache: QueryCache, self: unknown, args: readonly unknown[]): boolean {
  const o = self as { manager?: { queryRunner?: QueryRunner }; queryRunner?: QueryRunner } | null;
  const runners = [o?.manager?.queryRunner, o?.queryRunner];
  for (const arg of args) {
    const a = arg as { queryRunner?: QueryRunner; isTransactionActive?: boolean } | null;
    runners.push(
      a?.queryRunner,
      typeof a?.isTransactionActive === "boolean" ? (a as QueryRunner) : undefined,
    );
  }
  return runners.some((runner) => runner !== undefined && cache.bypasses(runner));
}
