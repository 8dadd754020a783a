import { performance } from "node:perf_hooks";

/**
 * One thing measured: a batch per round, after an untimed prepare that puts it in the state it
 * measures. A batch gives figures for its own id, or for several ids when it alternates
 * operations that are compared with each other (see timeAlternating).
 */
export interface Contender {
  readonly id: string;
  /** Untimed: warms the entry a hit contender reads, for instance, after other contenders' writes. */
  prepare?(): Promise<void>;
  /** One batch: a figure per timed operation (µs per op), or one per batch (ops per second). */
  run(): Promise<number[] | Record<string, number[]>>;
}

export interface RoundsOptions {
  rounds: number;
  /** Rounds run first and thrown away: JIT, connection pools, Redis scripts loaded. */
  warmup: number;
  onRound(done: number, total: number): void;
}

/**
 * Runs every contender once per round, in an order that rotates each round, so whatever drifts
 * on the machine (CPU frequency, other processes, Redis or PostgreSQL housekeeping) hits all of
 * them alike. Returns every figure of the counted rounds, by contender id.
 */
export async function runRounds(
  contenders: readonly Contender[],
  options: RoundsOptions,
): Promise<Map<string, number[]>> {
  const figures = new Map<string, number[]>();
  const keep = (id: string, values: number[]) =>
    figures.set(id, [...(figures.get(id) ?? []), ...values]);
  const total = options.warmup + options.rounds;
  for (let round = 0; round < total; round++) {
    for (let i = 0; i < contenders.length; i++) {
      const contender = contenders[(i + round) % contenders.length];
      await contender.prepare?.();
      const got = await contender.run();
      if (round < options.warmup) continue;
      if (Array.isArray(got)) keep(contender.id, got);
      else for (const [id, values] of Object.entries(got)) keep(id, values);
    }
    options.onRound(round + 1, total);
  }
  return figures;
}

/** Times n sequential calls of op, each on its own (µs); `untimed` runs before each call, off the clock. */
export async function timeEach(
  n: number,
  op: () => Promise<unknown>,
  untimed?: () => Promise<unknown>,
): Promise<number[]> {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    if (untimed) await untimed();
    const start = performance.now();
    await op();
    out[i] = (performance.now() - start) * 1000;
  }
  return out;
}

export interface Timed {
  op: () => Promise<unknown>;
  /** Runs before each call, off the clock. */
  untimed?: () => Promise<unknown>;
}

/**
 * Times n calls of each op, alternating them in blocks (`block` calls of a, then of b, and again),
 * so operations whose ratio is a target are measured side by side in time: on a busy machine, load
 * that comes and goes within a batch falls on all of them alike. Blocks rather than single calls
 * for cheap operations, so that one does not pay for the garbage and CPU debt of a heavier one
 * run just before it.
 */
export async function timeAlternating(
  n: number,
  ops: Record<string, Timed>,
  block = 1,
): Promise<Record<string, number[]>> {
  const out: Record<string, number[]> = {};
  for (const id of Object.keys(ops)) out[id] = [];
  for (let done = 0; done < n; done += block) {
    for (const [id, { op, untimed }] of Object.entries(ops)) {
      for (let i = done; i < Math.min(n, done + block); i++) {
        if (untimed) await untimed();
        const start = performance.now();
        await op();
        out[id].push((performance.now() - start) * 1000);
      }
    }
  }
  return out;
}

/** Times n sequential calls of a synchronous op, each on its own (µs). */
export function timeEachSync(n: number, op: () => unknown): number[] {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    op();
    out[i] = (performance.now() - start) * 1000;
  }
  return out;
}

export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const at = (sorted.length - 1) * q;
  const low = Math.floor(at);
  const high = Math.ceil(at);
  return sorted[low] + (sorted[high] - sorted[low]) * (at - low);
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}
