import { type DataSource, type EntitySubscriberInterface, EventSubscriber } from "typeorm";
import { tracking } from "../tracking/tracking-context";
import { registry } from "./registry";

// TypeORM 0.3 declares AfterQueryEvent<Entity> generic without a default, 1.x not generic: this fits both.
export type QueryEvent = Parameters<NonNullable<EntitySubscriberInterface["afterQuery"]>>[0];

/**
 * Register in the DataSource options, `subscribers: [QueryCacheSubscriber]`. It sees every query
 * the DataSource runs, whichever API sent it (repositories, QueryBuilder with or without
 * listeners, raw SQL, migrations), and hands it to the QueryCache of that DataSource, created
 * before or after initialize(). TypeORM awaits it, so a write's invalidation is delivered before
 * the call that committed the write returns.
 */
@EventSubscriber()
export class QueryCacheSubscriber implements EntitySubscriberInterface {
  afterQuery(event: QueryEvent): Promise<void> | void {
    const dataSource = (event as { dataSource?: DataSource }).dataSource ?? event.connection;
    const listener = registry.listenerOf(dataSource);
    if (!listener) {
      // Nothing tracks this DataSource's reads, so a cached computation that made one cannot be kept fresh.
      tracking
        .current()
        ?.refuse(
          "it ran a query through a DataSource that has no QueryCache; create one for it with the same store and namespace",
        );
      return;
    }
    return listener.afterQuery(event.query, event.queryRunner, event.success, {
      parameters: Array.isArray(event.parameters) ? event.parameters : undefined,
      result: (event as { rawResults?: unknown }).rawResults,
    });
  }
}

/**
 * Whether the DataSource has QueryCacheSubscriber registered; undefined while that cannot be told
 * yet (subscribers listed as file globs, before initialize() loads them).
 */
export function hasSubscriber(dataSource: DataSource): boolean | undefined {
  const isOurs = (s: unknown) =>
    s instanceof QueryCacheSubscriber ||
    s === QueryCacheSubscriber ||
    (typeof s === "function" && s.prototype instanceof QueryCacheSubscriber);
  if (dataSource.isInitialized) return dataSource.subscribers.some(isOurs);
  const listed = dataSource.options.subscribers ?? [];
  const entries: unknown[] = Array.isArray(listed) ? listed : Object.values(listed);
  if (entries.some(isOurs)) return true;
  return entries.some((s) => typeof s === "string") ? undefined : false;
}
