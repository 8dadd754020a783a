import type {
  Attributes,
  Counter,
  Histogram,
  Meter,
  ObservableGauge,
  ObservableResult,
  Span,
  Tracer,
} from "@opentelemetry/api";

type Api = typeof import("@opentelemetry/api");

let api: Api | null | undefined;

/**
 * @opentelemetry/api when the application has it, else null. It is an optional peer dependency,
 * loaded on first use: an application without it pays nothing.
 */
function loadApi(): Api | null {
  if (api === undefined) {
    try {
      api = require("@opentelemetry/api") as Api;
    } catch {
      api = null;
    }
  }
  return api;
}

/** What the observable gauges read when a metrics SDK collects. */
export interface GaugeSources {
  breakerOpen(): boolean;
  local(): { entries: number; bytes: number } | undefined;
}

const SCOPE = "typeorm-autocache";

/**
 * The cache's instruments on the global OpenTelemetry meter and tracer. Metrics are created only
 * when a meter provider is registered when the cache is built (the API's default meter records
 * nothing), so without an SDK a hit costs no call at all. Spans go through the API's proxy
 * tracer, which starts recording whenever a tracer provider is registered.
 */
export class OpenTelemetry {
  private readonly tracer: Tracer;
  private readonly instruments?: Instruments;

  private constructor(
    private readonly otel: Api,
    namespace: string,
    gauges: GaugeSources,
  ) {
    this.tracer = otel.trace.getTracer(SCOPE);
    const meter = otel.metrics.getMeter(SCOPE);
    if (!(meter instanceof otel.createNoopMeter().constructor))
      this.instruments = new Instruments(meter, { "autocache.namespace": namespace }, gauges);
  }

  static open(namespace: string, gauges: GaugeSources): OpenTelemetry | undefined {
    const otel = loadApi();
    return otel ? new OpenTelemetry(otel, namespace, gauges) : undefined;
  }

  hit(method: string, ms: number): void {
    this.instruments?.hit(method, ms);
  }

  miss(method: string, ms: number): void {
    this.instruments?.miss(method, ms);
  }

  stored(method: string, stored: boolean): void {
    this.instruments?.count(stored ? "sets" : "skipped", method);
  }

  failed(method: string): void {
    this.instruments?.count("errors", method);
  }

  invalidated(table: string): void {
    this.instruments?.invalidated(table);
  }

  storeError(error: Error): void {
    this.instruments?.storeError(error);
  }

  /**
   * Runs a miss's computation in a span of its own, so the queries it runs (when they are traced)
   * are its children; the span gets the key and the tables the computation read.
   */
  async compute<T>(
    method: string,
    key: string,
    run: () => Promise<T>,
    tables: () => string[],
  ): Promise<T> {
    const { otel } = this;
    return this.tracer.startActiveSpan(
      `autocache.miss ${method}`,
      { attributes: { "autocache.method": method, "autocache.key": key } },
      async (span: Span) => {
        try {
          const value = await run();
          span.setAttribute("autocache.tables", tables());
          return value;
        } catch (error) {
          span.recordException(error as Error);
          span.setStatus({ code: otel.SpanStatusCode.ERROR, message: (error as Error).message });
          throw error;
        } finally {
          span.end();
        }
      },
    );
  }

  close(): void {
    this.instruments?.close();
  }
}

class Instruments {
  private readonly counters: Record<"hits" | "misses" | "sets" | "skipped" | "errors", Counter>;
  private readonly hitDuration: Histogram;
  private readonly missDuration: Histogram;
  private readonly invalidations: Counter;
  private readonly storeErrors: Counter;
  private readonly gauges: ObservableGauge[];
  private readonly observe: (result: ObservableResult) => void;
  private readonly observeLocal: (result: ObservableResult) => void;
  private readonly observeLocalEntries: (result: ObservableResult) => void;

  constructor(
    meter: Meter,
    private readonly base: Attributes,
    sources: GaugeSources,
  ) {
    const counter = (name: string, description: string) =>
      meter.createCounter(`autocache.${name}`, { description });
    this.counters = {
      hits: counter("hits", "Cached calls served from the cache"),
      misses: counter("misses", "Cached calls that ran their computation"),
      sets: counter("sets", "Entries written to the store"),
      skipped: counter("skipped", "Results returned but not stored"),
      errors: counter("errors", "Cached calls whose computation threw"),
    };
    this.hitDuration = meter.createHistogram("autocache.hit.duration", {
      unit: "ms",
      description: "Time a hit took, from the call to its value",
    });
    this.missDuration = meter.createHistogram("autocache.miss.duration", {
      unit: "ms",
      description: "Time a miss took, computation included",
    });
    this.invalidations = meter.createCounter("autocache.invalidations", {
      description: "Table versions moved by writes and invalidate()",
    });
    this.storeErrors = meter.createCounter("autocache.store.errors", {
      description: "Store calls that failed or timed out (callers got fresh data)",
    });
    const breaker = meter.createObservableGauge("autocache.breaker.open", {
      description: "1 while the circuit breaker skips the store",
    });
    const bytes = meter.createObservableGauge("autocache.local.bytes", {
      unit: "By",
      description: "Serialized size of the in-process tier",
    });
    const entries = meter.createObservableGauge("autocache.local.entries", {
      description: "Entries in the in-process tier",
    });
    this.observe = (result) => result.observe(sources.breakerOpen() ? 1 : 0, base);
    this.observeLocal = (result) => {
      const local = sources.local();
      if (local) result.observe(local.bytes, base);
    };
    this.observeLocalEntries = (result) => {
      const local = sources.local();
      if (local) result.observe(local.entries, base);
    };
    breaker.addCallback(this.observe);
    bytes.addCallback(this.observeLocal);
    entries.addCallback(this.observeLocalEntries);
    this.gauges = [breaker, bytes, entries];
  }

  count(counter: keyof Instruments["counters"], method: string): void {
    this.counters[counter].add(1, { ...this.base, "autocache.method": method });
  }

  hit(method: string, ms: number): void {
    const attributes = { ...this.base, "autocache.method": method };
    this.counters.hits.add(1, attributes);
    this.hitDuration.record(ms, attributes);
  }

  miss(method: string, ms: number): void {
    const attributes = { ...this.base, "autocache.method": method };
    this.counters.misses.add(1, attributes);
    this.missDuration.record(ms, attributes);
  }

  invalidated(table: string): void {
    this.invalidations.add(1, { ...this.base, "autocache.table": table });
  }

  storeError(error: Error): void {
    this.storeErrors.add(1, { ...this.base, "error.type": error.name });
  }

  /** A closed cache must not keep reporting (nor be kept alive by the meter's callbacks). */
  close(): void {
    const [breaker, bytes, entries] = this.gauges;
    breaker.removeCallback(this.observe);
    bytes.removeCallback(this.observeLocal);
    entries.removeCallback(this.observeLocalEntries);
  }
}
