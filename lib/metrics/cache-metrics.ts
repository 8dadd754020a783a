import { versionedName } from "../keys/key-layout";
import { type GaugeSources, OpenTelemetry } from "./open-telemetry";

/** The counters of one cached method (or cached page), as `stats({ byMethod: true })` reports them. */
export interface MethodStats {
  hits: number;
  misses: number;
  sets: number;
  skipped: number;
  /** Calls whose computation threw (the error went to the caller). */
  errors: number;
  /** Summed wall-clock time of the hits and of the misses, in milliseconds (mean = total / count). */
  hitMs: number;
  missMs: number;
}

export interface DetailedStats {
  /** By label: "PostRepository<Post>.findPublished", "wrap(front-page)", "GET /posts". */
  byMethod: Record<string, MethodStats>;
  /** Table versions moved, by table ("*" is every table of the database). */
  invalidationsByTable: Record<string, number>;
  /** Store failures by error class name. */
  storeErrors: Record<string, number>;
  /** Whether the circuit breaker is skipping the store right now. */
  breakerOpen: boolean;
  /** The in-process tier, when it is on. */
  local?: { entries: number; bytes: number };
}

/**
 * What a QueryCache reports about itself: per-method counters kept in process (read with
 * `cache.stats({ byMethod: true })`), and the same through OpenTelemetry when the application
 * has an SDK. Every method here is cheap enough for a hit's path: a Map lookup and two adds.
 * @internal
 */
export class CacheMetrics {
  private readonly methods = new Map<string, MethodStats>();
  private readonly tables = new Map<string, number>();
  private readonly errors = new Map<string, number>();
  private readonly otel?: OpenTelemetry;

  constructor(
    namespace: string,
    private readonly sources: GaugeSources,
  ) {
    this.otel = OpenTelemetry.open(namespace, sources);
  }

  hit(label: string, started: number): void {
    const ms = performance.now() - started;
    const method = methodOf(label);
    const stats = this.of(method);
    stats.hits++;
    stats.hitMs += ms;
    this.otel?.hit(method, ms);
  }

  miss(label: string, started: number): void {
    const ms = performance.now() - started;
    const method = methodOf(label);
    const stats = this.of(method);
    stats.misses++;
    stats.missMs += ms;
    this.otel?.miss(method, ms);
  }

  stored(label: string, stored: boolean): void {
    const method = methodOf(label);
    this.of(method)[stored ? "sets" : "skipped"]++;
    this.otel?.stored(method, stored);
  }

  failed(label: string): void {
    const method = methodOf(label);
    this.of(method).errors++;
    this.otel?.failed(method);
  }

  /** One invalidation per table, however many of its finer (row) versions moved with it. */
  invalidated(versionKeys: readonly string[]): void {
    for (const table of new Set(versionKeys.map(versionedName))) {
      this.tables.set(table, (this.tables.get(table) ?? 0) + 1);
      this.otel?.invalidated(table);
    }
  }

  storeError(error: Error): void {
    this.errors.set(error.name, (this.errors.get(error.name) ?? 0) + 1);
    this.otel?.storeError(error);
  }

  /** Runs a miss's computation, in a span when tracing is on. */
  compute<T>(
    label: string,
    key: string,
    run: () => Promise<T>,
    deps: () => Iterable<string>,
  ): Promise<T> {
    if (!this.otel) return run();
    return this.otel.compute(methodOf(label), key, run, () =>
      [...new Set([...deps()].map(versionedName))].filter((t) => t !== "*").sort(),
    );
  }

  detailed(): DetailedStats {
    const byMethod: Record<string, MethodStats> = {};
    for (const [method, stats] of this.methods) byMethod[method] = { ...stats };
    return {
      byMethod,
      invalidationsByTable: Object.fromEntries(this.tables),
      storeErrors: Object.fromEntries(this.errors),
      breakerOpen: this.sources.breakerOpen(),
      local: this.sources.local(),
    };
  }

  close(): void {
    this.otel?.close();
  }

  private of(method: string): MethodStats {
    let stats = this.methods.get(method);
    if (!stats)
      this.methods.set(
        method,
        (stats = { hits: 0, misses: 0, sets: 0, skipped: 0, errors: 0, hitMs: 0, missMs: 0 }),
      );
    return stats;
  }
}

/** wrap() and set() label by key; their metrics are kept per API call, so user keys do not grow the map. */
function methodOf(label: string): string {
  const paren = label.indexOf("(");
  return paren > 0 && label.endsWith(")") && (label.startsWith("wrap(") || label.startsWith("set("))
    ? label.slice(0, paren)
    : label;
}
