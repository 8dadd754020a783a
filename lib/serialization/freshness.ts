/**
 * Every entry records when it expires and how long its computation took. The expiry bounds how
 * long the in-process tier may keep a copy; both drive probabilistic early refresh ("XFetch",
 * Vattani, Chierichetti and Lowenstein, "Optimal Probabilistic Cache Stampede Prevention", VLDB
 * 2015): as expiry nears, each hit recomputes early with a probability that grows with that
 * duration, so one caller refreshes a hot key before every caller misses at once.
 */
export interface Freshness {
  /** Epoch milliseconds at which the entry's ttl ends. */
  readonly expiresAt: number;
  /** How long the computation took, in milliseconds. */
  readonly computeMs: number;
}

// Entries start with this; serialized JSON never does (entries of older versions lack it).
const MARK = "x";

export function withFreshness(json: string, freshness: Freshness): string {
  return `${MARK}${freshness.expiresAt},${freshness.computeMs}\n${json}`;
}

export function splitFreshness(text: string): { json: string; freshness?: Freshness } {
  if (!text.startsWith(MARK)) return { json: text };
  const nl = text.indexOf("\n");
  const [expiresAt, computeMs] = text.slice(MARK.length, nl).split(",").map(Number);
  return { json: text.slice(nl + 1), freshness: { expiresAt, computeMs } };
}

/** Whether this hit should recompute now; beta above 1 favours earlier refreshes. */
export function refreshesEarly(
  freshness: Freshness,
  beta: number,
  now = Date.now(),
  random = Math.random(),
): boolean {
  return now - freshness.computeMs * beta * Math.log(random) >= freshness.expiresAt;
}
