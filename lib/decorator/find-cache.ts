import type { DataSource, QueryRunner } from "typeorm";
import { QueryCache } from "../query-cache";
import { registry } from "../typeorm/registry";

/** The cache of the DataSource an object works with: its manager's (repositories), or its own. */
export function findCache(self: unknown): QueryCache | undefined {
  // A static method runs with its class as `this`, which may hold the DataSource as a static field.
  if ((typeof self !== "object" && typeof self !== "function") || self === null) return undefined;
  const o = self as { manager?: { connection?: DataSource }; dataSource?: DataSource; connection?: DataSource };
  return cacheOf(o.manager?.connection) ?? cacheOf(o.dataSource) ?? cacheOf(o.connection) ?? cacheOf(self as DataSource);
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
    runners.push(a?.queryRunner, typeof a?.isTransactionActive === "boolean" ? (a as QueryRunner) : undefined);
  }
  return runners.some((runner) => runner !== undefined && cache.bypasses(runner));
}
