import type { DataSource } from "typeorm";
import { QueryCacheSubscriber } from "../typeorm/subscriber";

/**
 * Registers QueryCacheSubscriber on a DataSource the application built without it, as
 * TypeOrmModule does: TypeORM reads `dataSource.subscribers` on every query, so an instance
 * added after initialize() sees every query from then on. One not yet initialized gets it in its
 * options too, since initialize() rebuilds that list from them.
 */
export function attachSubscriber(dataSource: DataSource): void {
  if (!dataSource.subscribers.some((s) => s instanceof QueryCacheSubscriber))
    dataSource.subscribers.push(new QueryCacheSubscriber());
  if (dataSource.isInitialized) return;
  const listed = dataSource.options.subscribers;
  const classes = Array.isArray(listed) ? listed : Object.values(listed ?? {});
  if (!classes.includes(QueryCacheSubscriber))
    Object.assign(dataSource.options, { subscribers: [...classes, QueryCacheSubscriber] });
}
