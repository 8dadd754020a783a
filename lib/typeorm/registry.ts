import type { DataSource, QueryRunner } from "typeorm";
import { DuplicateCacheError } from "../errors";

/** What TypeORM reports of a query besides its text: row precision reads conditions' values and returned rows from it. */
export interface QueryDetail {
  readonly parameters?: readonly unknown[];
  /** The driver's result (pg: { rows, ... }) when the query succeeded. */
  readonly result?: unknown;
}

/** What the subscriber reaches for a DataSource: the observer of the cache bound to it. */
export interface QueryListener {
  afterQuery(
    sql: string,
    runner: QueryRunner,
    succeeded: boolean,
    detail?: QueryDetail,
  ): Promise<void>;
}

interface Binding {
  readonly cache: object;
  readonly listener: QueryListener;
}

const bindings = new WeakMap<DataSource, Binding>();

/** One cache per DataSource, found from the DataSource by the subscriber and by @Cached. */
export const registry = {
  bind(dataSource: DataSource, cache: object, listener: QueryListener): void {
    if (bindings.has(dataSource)) throw new DuplicateCacheError();
    bindings.set(dataSource, { cache, listener });
  },
  unbind(dataSource: DataSource, cache: object): void {
    if (bindings.get(dataSource)?.cache === cache) bindings.delete(dataSource);
  },
  listenerOf(dataSource: DataSource): QueryListener | undefined {
    return bindings.get(dataSource)?.listener;
  },
  cacheOf(dataSource: DataSource): object | undefined {
    return bindings.get(dataSource)?.cache;
  },
};
