import { type EntitySubscriberInterface, EventSubscriber } from "typeorm";
import type { QueryEvent } from "../lib/typeorm/subscriber";

/**
 * Records every SQL statement the DataSource sends, so the example can show how many queries a
 * read really ran: a cache hit runs none. Registered beside QueryCacheSubscriber.
 */
const statements: string[] = [];

@EventSubscriber()
export class SqlCounter implements EntitySubscriberInterface {
  afterQuery(event: QueryEvent): void {
    statements.push(event.query);
  }
}

/** A position in the record; pass it to sqlSince to get what ran after it. */
export function sqlMark(): number {
  return statements.length;
}

export function sqlSince(mark: number): string[] {
  return statements.slice(mark);
}
