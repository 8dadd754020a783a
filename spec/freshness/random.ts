/**
 * A small seeded generator (mulberry32). Each operation of a run draws from its own generator,
 * seeded from the run's seed and the operation's index, so the operations a seed produces do not
 * depend on which worker happened to pick them up.
 */
export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  static forOperation(seed: number, index: number): Random {
    return new Random(mix(mix(seed) ^ mix(index + 0x9e3779b9)));
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  /** Picks an entry with probability proportional to its weight. */
  weighted<T>(entries: readonly (readonly [T, number])[]): T {
    const total = entries.reduce((sum, [, w]) => sum + w, 0);
    let x = this.next() * total;
    for (const [value, weight] of entries) {
      x -= weight;
      if (x < 0) return value;
    }
    return entries[entries.length - 1][0];
  }

  /** A subset of ids in [1, max], each kept with probability p, in ascending order. */
  subset(max: number, p: number): number[] {
    const out: number[] = [];
    for (let i = 1; i <= max; i++) if (this.chance(p)) out.push(i);
    return out;
  }
}

function mix(x: number): number {
  x = Math.imul((x >>> 0) ^ ((x >>> 0) >>> 16), 0x45d9f3b);
  x = Math.imul(x ^ (x >>> 16), 0x45d9f3b);
  return (x ^ (x >>> 16)) >>> 0;
}
