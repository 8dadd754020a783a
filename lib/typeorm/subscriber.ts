import { type DataSource, type EntitySubscriberInterface, EventSubscriber } from "typeorm";
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
    if (!listener || registry.isInternal(event.queryRunner)) return;
    return listener.afterQuery(event.query, event.queryRunner, event.success, {
      parameters: Array.isArray(event.parameters) ? event.parameters : undefined,
      result: (event as { rawResults?: unknown }).rawResults,
    });
  }
}
