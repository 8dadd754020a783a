import { type EventEmitter, once } from "node:events";
import type Redis from "ioredis";
import { Client } from "pg";
import type { ChangeFeed, Delivery } from "../../lib";
import { type App, type AppOptions, openApp } from "./fixture";
import type { LogicalPostgres } from "./logical-postgres";

/** One application instance on a LogicalPostgres, as openApp builds one on the shared server. */
export function openFeedApp(
  pg: LogicalPostgres,
  namespace: string,
  options: Omit<AppOptions<Redis>, "pgUrl"> = {},
): Promise<App> {
  return openApp(namespace, { ...options, pgUrl: pg.url });
}

/** A transaction run by a plain pg client, past the library: its id as the stream names it. */
export async function outsideWrite(
  pg: LogicalPostgres,
  ...statements: string[]
): Promise<{ xid: number; committedAt: number }> {
  const client = new Client(pg.config);
  await client.connect();
  try {
    await client.query("BEGIN");
    for (const sql of statements) await client.query(sql);
    const { rows } = await client.query(
      `SELECT (pg_current_xact_id()::text::bigint % 4294967296)::int8 AS xid`,
    );
    await client.query("COMMIT");
    return { xid: Number(rows[0].xid), committedAt: performance.now() };
  } finally {
    await client.end();
  }
}

/** Every delivery of a feed, so a test can wait for the one that covers its transaction. */
export class DeliveryLog {
  private readonly seen = new Map<number, { at: number; delivery: Delivery }>();
  private readonly waiters: { xid: number; resolve(): void }[] = [];

  constructor(feed: ChangeFeed) {
    feed.on("delivered", (delivery: Delivery) => {
      const at = performance.now();
      for (const xid of delivery.xids) this.seen.set(xid, { at, delivery });
      for (const waiter of this.waiters.splice(0)) {
        if (this.seen.has(waiter.xid)) waiter.resolve();
        else this.waiters.push(waiter);
      }
    });
  }

  /** Resolves when (performance.now()) the transaction's invalidations reached the store, and with what. */
  async covering(xid: number, timeoutMs = 20_000): Promise<{ at: number; delivery: Delivery }> {
    if (!this.seen.has(xid)) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no delivery covered transaction ${xid} within ${timeoutMs} ms`)),
          timeoutMs,
        );
        this.waiters.push({
          xid,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    }
    return this.seen.get(xid) as { at: number; delivery: Delivery };
  }
}

/** Resolves with the next emission of `event`, or rejects after the timeout. */
export async function nextEvent<T = unknown>(
  emitter: EventEmitter,
  event: string,
  timeoutMs = 20_000,
): Promise<T> {
  const [value] = await once(emitter, event, { signal: AbortSignal.timeout(timeoutMs) });
  return value as T;
}
