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
 * Whether the call runs in an open transaction: through a transactional manager (as
 * em.withRepository(repo) gives), or with one passed as an argument. Such calls skip the cache,
 * so a transaction sees its own writes and nothing uncommitted is stored.
 */
export function isInTransaction(self: unknown, args: readonly unknown[]): boolean {
  const o = self as { manager?: { queryRunner?: QueryRunner }; queryRunner?: QueryRunner } | null;
  if (o?.manager?.queryRunner?.isTransactionActive || o?.queryRunner?.isTransactionActive) return true;
  return args.some((arg) => {
    const a = arg as { queryRunner?: QueryRunner; isTransactionActive?: boolean } | null;
    return a?.queryRunner?.isTransactionActive === true || a?.isTransactionActive === true;
  });
}
