import type { Lookup } from "./store";

const HEADER = "ac1 ";

/**
 * How a key-value store (Redis, Memcached) holds an entry in one value: "ac1 <stamp> <version
 * key>...\n<payload>", so the entry and the versions it relies on are read in one round trip.
 */
export function formatEntry(stamp: number, deps: readonly string[], value: string): string {
  return `${HEADER}${stamp} ${deps.join(" ")}\n${value}`;
}

export interface ParsedEntry {
  readonly stamp: string;
  readonly deps: string[];
  readonly value: string;
}

/** Splits a stored entry; undefined when the text is not one. */
export function parseEntry(stored: string): ParsedEntry | undefined {
  const nl = stored.indexOf("\n");
  if (nl < 0 || !stored.startsWith(HEADER)) return undefined;
  const [stamp, ...deps] = stored
    .slice(HEADER.length, nl)
    .split(" ")
    .filter((word) => word !== "");
  if (stamp === undefined || !/^\d+$/.test(stamp)) return undefined;
  return { stamp, deps, value: stored.slice(nl + 1) };
}

/**
 * Whether an entry stamped `stamp` may be served, given the versions it names as read after the
 * entry was (versions only move forward, so that holds at the time they were read). A missing
 * version may have been bumped and lost, so it counts as newer than any stamp (invariant 2).
 */
export function isCurrent(
  stamp: number | string,
  versions: readonly (string | number | null | undefined)[],
): boolean {
  const limit = Number(stamp);
  for (const v of versions) if (v === null || v === undefined || Number(v) > limit) return false;
  return true;
}

/** The answer to a lookup, from an entry and the versions (and clock) read with or after it. */
export function judge(
  entry: ParsedEntry,
  clock: string | number | null | undefined,
  versions: readonly (string | number | null | undefined)[],
): Lookup {
  if (!isCurrent(entry.stamp, versions)) return { hit: false, stamp: Number(clock ?? 0) };
  return { hit: true, value: entry.value, deps: entry.deps };
}
