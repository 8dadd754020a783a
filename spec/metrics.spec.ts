import { context, metrics, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  AggregationTemporality,
  type DataPoint,
  type Histogram,
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from "@opentelemetry/sdk-metrics";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { expect } from "chai";
import { Post } from "./support/entities";
import { type App, openApp, uniqueNamespace } from "./support/fixture";
import { PostRepository } from "./support/repositories";
import { warm } from "./support/warm";

const METHOD = "PostRepository<Post>.findAll";

describe("metrics and traces", function () {
  this.timeout(30_000);

  describe("without OpenTelemetry: stats({ byMethod: true })", () => {
    const ns = uniqueNamespace();
    let app: App;

    before(async () => {
      app = await openApp(ns, { fresh: true });
    });
    after(() => app?.close());

    it("counts hits, misses, sets and latencies per method, invalidations per table, and the breaker", async () => {
      const posts = new PostRepository(Post, app.dataSource.manager);
      await posts.insert({ title: "a" });
      await warm(app, () => posts.findAll());
      await posts.findAll();
      const stats = app.cache.stats({ byMethod: true });
      const method = stats.byMethod[METHOD];
      expect(method.hits).to.equal(2);
      expect(method.misses).to.be.within(1, 3);
      expect(method.sets).to.be.at.least(1);
      expect(method.hits + method.misses).to.equal(stats.hits + stats.misses);
      expect(method.hitMs).to.be.greaterThan(0);
      expect(method.missMs).to.be.greaterThan(method.hitMs / method.hits);
      expect(stats.invalidationsByTable[`${ns}.post`]).to.equal(1);
      expect(stats.breakerOpen).to.equal(false);
      expect(stats.local).to.equal(undefined);
      expect(app.cache.stats(), "the plain form keeps its shape").to.have.all.keys(
        "hits",
        "misses",
        "sets",
        "invalidations",
        "errors",
        "skipped",
      );
    });
  });

  describe("with the OpenTelemetry SDK and its in-memory exporters", () => {
    const ns = uniqueNamespace();
    const spans = new InMemorySpanExporter();
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
    const meterProvider = new MeterProvider({ readers: [reader] });
    const tracerProvider = new BasicTracerProvider({
      spanProcessors: [new SimpleSpanProcessor(spans)],
    });
    let app: App;

    before(async () => {
      context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
      trace.setGlobalTracerProvider(tracerProvider);
      metrics.setGlobalMeterProvider(meterProvider);
      // The SDK is registered before the cache is built, as an application's instrumentation file does.
      app = await openApp(ns, { fresh: true, cache: { local: { maxBytes: 1024 * 1024 } } });
    });

    after(async () => {
      await app?.close();
      await meterProvider.shutdown();
      await tracerProvider.shutdown();
      metrics.disable();
      trace.disable();
      context.disable();
    });

    async function collect(): Promise<Map<string, DataPoint<number | Histogram>[]>> {
      exporter.reset();
      await reader.forceFlush();
      const points = new Map<string, DataPoint<number | Histogram>[]>();
      for (const resource of exporter.getMetrics()) {
        for (const scope of resource.scopeMetrics) {
          for (const metric of scope.metrics)
            points.set(metric.descriptor.name, [
              ...(points.get(metric.descriptor.name) ?? []),
              ...(metric.dataPoints as DataPoint<number | Histogram>[]),
            ]);
        }
      }
      return points;
    }

    function valueFor(
      points: Map<string, DataPoint<number | Histogram>[]>,
      name: string,
      attribute: string,
      value: string,
    ): number | Histogram | undefined {
      return points.get(name)?.find((p) => p.attributes[attribute] === value)?.value;
    }

    it("exports the counters and latencies per method, invalidations per table, and the gauges", async () => {
      const posts = new PostRepository(Post, app.dataSource.manager);
      await posts.insert({ title: "a" });
      await warm(app, () => posts.findAll());
      await posts.findAll();
      const stats = app.cache.stats({ byMethod: true }).byMethod[METHOD];
      const points = await collect();
      expect(valueFor(points, "autocache.hits", "autocache.method", METHOD)).to.equal(stats.hits);
      expect(valueFor(points, "autocache.misses", "autocache.method", METHOD)).to.equal(
        stats.misses,
      );
      expect(valueFor(points, "autocache.sets", "autocache.method", METHOD)).to.equal(stats.sets);
      expect(
        (valueFor(points, "autocache.hit.duration", "autocache.method", METHOD) as Histogram).count,
      ).to.equal(stats.hits);
      expect(
        (valueFor(points, "autocache.miss.duration", "autocache.method", METHOD) as Histogram)
          .count,
      ).to.equal(stats.misses);
      expect(valueFor(points, "autocache.invalidations", "autocache.table", `${ns}.post`)).to.equal(
        1,
      );
      expect(valueFor(points, "autocache.breaker.open", "autocache.namespace", ns)).to.equal(0);
      expect(valueFor(points, "autocache.local.entries", "autocache.namespace", ns)).to.equal(1);
      expect(
        valueFor(points, "autocache.local.bytes", "autocache.namespace", ns),
      ).to.be.greaterThan(0);
      expect(points.get("autocache.hits")?.[0].attributes["autocache.namespace"]).to.equal(ns);
    });

    it("traces each miss in a span with its key and the tables it read, under the caller's span", async () => {
      const posts = new PostRepository(Post, app.dataSource.manager);
      await posts.insert({ title: "b" });
      spans.reset();
      await trace.getTracer("spec").startActiveSpan("request", async (parent) => {
        await posts.findPublished();
        parent.end();
      });
      const finished = spans.getFinishedSpans();
      const miss = finished.find(
        (s) => s.name === "autocache.miss PostRepository<Post>.findPublished",
      );
      expect(miss, finished.map((s) => s.name).join(", ")).to.not.equal(undefined);
      expect(miss?.attributes["autocache.key"]).to.be.a("string").and.include("findPublished");
      expect(miss?.attributes["autocache.tables"]).to.deep.equal([`${ns}.author`, `${ns}.post`]);
      const request = finished.find((s) => s.name === "request");
      expect(miss?.parentSpanContext?.spanId).to.equal(request?.spanContext().spanId);
    });

    it("a computation that throws ends its span with the error and counts it for the method", async () => {
      const failing = new (class Failing extends PostRepository {
        async broken(): Promise<unknown> {
          return this.query("SELECT * FROM no_such_table");
        }
      })(Post, app.dataSource.manager);
      const { cached } = await import("../lib");
      const broken = cached(failing.broken, { name: "broken" });
      spans.reset();
      let thrown: unknown;
      await broken.call(failing).catch((error: unknown) => (thrown = error));
      expect(thrown).to.be.an("error");
      const span = spans
        .getFinishedSpans()
        .find((s) => s.name.startsWith("autocache.miss") && s.name.endsWith(".broken"));
      expect(span?.status.code).to.equal(2);
      expect(app.cache.stats({ byMethod: true }).byMethod["Failing<Post>.broken"].errors).to.equal(
        1,
      );
    });
  });
});
