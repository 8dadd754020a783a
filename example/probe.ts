import { performance } from "node:perf_hooks";
import type { CacheStats, QueryCache } from "../lib";
import { sqlMark, sqlSince } from "./sql-counter";

/** What one call did, as measured from outside: nothing here is assumed. */
export interface Observation<T> {
  value: T;
  ms: number;
  /** The SQL statements the DataSource ran during the call. */
  sql: string[];
  /** How the cache's counters moved during the call. */
  cache: CacheStats;
}

/** Runs fn once and records its time, the SQL it ran, and the hits, misses and stores the cache counted. */
export async function observe<T>(cache: QueryCache, fn: () => Promise<T>): Promise<Observation<T>> {
  const before = cache.stats();
  const mark = sqlMark();
  const start = performance.now();
  const value = await fn();
  const ms = performance.now() - start;
  // A miss hands its value back before the store has answered; the stats count its answer once it has.
  await cache.settled();
  const after = cache.stats();
  const delta = Object.fromEntries(
    Object.keys(after).map((k) => [
      k,
      after[k as keyof CacheStats] - before[k as keyof CacheStats],
    ]),
  ) as unknown as CacheStats;
  return { value, ms, sql: sqlSince(mark), cache: delta };
}

/** Whether the call was answered from Redis without touching PostgreSQL. */
export function wasHit(o: Observation<unknown>): boolean {
  return o.cache.hits > 0 && o.cache.misses === 0 && o.sql.length === 0;
}

/** "HIT from Redis, 0 SQL queries, 0.31 ms" or "MISS, ran 1 SQL query, 2.4 ms, stored in Redis". */
export function describeRead(o: Observation<unknown>): string {
  const queries = count(o.sql.length, "SQL query", "SQL queries");
  if (o.cache.hits > 0 && o.cache.misses === 0) return `HIT from Redis, ${queries}, ${ms(o.ms)}`;
  if (o.cache.misses === 0) return `not cached (no lookup), ${queries}, ${ms(o.ms)}`;
  const stored = o.cache.sets > 0 ? "stored in Redis" : "not stored";
  return `MISS, ran ${queries}, ${ms(o.ms)}, ${stored}`;
}

/** The median time of `iterations` sequential calls, after a few untimed ones. */
export async function medianMs(iterations: number, fn: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 5; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const start = performance.now();
    await fn();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  const mid = Math.floor(times.length / 2);
  return times.length % 2 ? times[mid] : (times[mid - 1] + times[mid]) / 2;
}

export function ms(value: number): string {
  return value < 1 ? `${value.toFixed(2)} ms` : `${value.toFixed(1)} ms`;
}

export function count(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}
