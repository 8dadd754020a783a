import type { QueryRunner } from "typeorm";
import type { Catalog } from "../catalog/catalog";
import type { Invalidator } from "../invalidation/invalidator";
import type { TransactionBuffer } from "../invalidation/transaction-buffer";
import type { KeyLayout } from "../keys/key-space";
import type { SqlAnalyzer } from "../sql/analyzer";
import type { RelationName, StatementEffects } from "../sql/statement-effects";
import { type TrackingContext, tracking } from "../tracking/tracking-context";

/** The catalog as last read, and a way to read it again after DDL or for a name it lacks. */
export interface CatalogSource {
  get(): Promise<Catalog>;
  reload(): Promise<Catalog>;
}

/**
 * Turns each query TypeORM ran into what the cache must know: the tables a cached computation
 * read, and the invalidations a write makes due, now or at its transaction's outermost COMMIT.
 */
export class QueryObserver {
  private readonly unknownNames = new Set<string>();

  constructor(
    private readonly owner: object,
    private readonly analyzer: SqlAnalyzer,
    private readonly catalog: CatalogSource,
    private readonly keys: KeyLayout,
    private readonly buffer: TransactionBuffer,
    private readonly invalidator: Invalidator,
    private readonly warn: (message: string) => void,
  ) {}

  async afterQuery(sql: string, runner: QueryRunner, succeeded: boolean): Promise<void> {
    const effects = this.analyzer.analyze(sql);
    const context = tracking.current();
    if (context) await this.track(context, effects, runner, succeeded);
    if (succeeded && effects.changesCatalog) {
      this.unknownNames.clear();
      void this.catalog.reload();
    }
    const written = succeeded ? await this.writtenDeps(effects) : [];
    const opening = effects.control.filter((c) => c.kind === "begin" || c.kind === "savepoint");
    const closing = effects.control.filter((c) => c.kind !== "begin" && c.kind !== "savepoint");
    for (const control of opening) this.buffer.apply(runner, control, succeeded);
    const held = written.length > 0 && this.buffer.hold(runner, written);
    const due = new Set<string>(held && effects.control.length === 0 ? [] : written);
    for (const control of closing) for (const dep of this.buffer.apply(runner, control, succeeded) ?? []) due.add(dep);
    if (due.size > 0) await this.invalidator.invalidate(due);
  }

  private async track(context: TrackingContext, effects: StatementEffects, runner: QueryRunner, succeeded: boolean): Promise<void> {
    // A computation of another cache reads through this DataSource: what it read can be named only
    // in version keys that cache checks, which holds when both share one store and namespace.
    if (context.owner !== this.owner && !context.policy.sharesVersions(this.owner)) {
      context.refuse(
        "it ran a query through another DataSource whose QueryCache uses another store or namespace, so writes " +
          "there could not invalidate it; give both caches one store and namespace",
      );
      return;
    }
    context.sawQuery = true;
    if (!succeeded && !context.policy.cacheFallback) {
      context.refuse("a query in it failed, so what it returned is a fallback; pass cacheFallback: true to cache fallbacks");
    }
    if (runner.isTransactionActive || this.buffer.isOpen(runner)) context.refuse("it ran inside a transaction");
    const cteNames = new Set(effects.cteNames);
    const opaqueViews: string[] = [];
    for (const ref of effects.reads) {
      if (!ref.schema && cteNames.has(ref.name) && !(await this.catalog.get()).knows(ref)) continue;
      const catalog = await this.catalogFor(ref);
      const name = catalog.qualify(ref);
      if (catalog.callsFunctions(name)) opaqueViews.push(name);
      for (const table of catalog.readDependencies(name)) context.deps.add(this.keys.version(table));
    }
    if (context.vouched) return;
    const catalog = await this.catalog.get();
    if (opaqueViews.length > 0) {
      context.refuse(
        `it reads the view ${opaqueViews[0]}, which calls a function that may read tables the library ` +
          `cannot see; name them with dependsOn to cache it`,
      );
    }
    const opaque = effects.functions.find((name) => !catalog.isBuiltinFunction(name));
    if (opaque) {
      context.refuse(
        `it calls ${opaque}(), which may read tables the library cannot see; name them with ` +
          `dependsOn to cache it`,
      );
    }
  }

  private async writtenDeps(effects: StatementEffects): Promise<string[]> {
    const tables = new Set<string>();
    let triggered: string | undefined;
    const written = [
      ...effects.writes,
      ...effects.truncates.map((ref) => ({ ...ref, kind: effects.truncateCascades ? "truncate-cascade" as const : "truncate" as const })),
    ];
    for (const ref of written) {
      const catalog = await this.catalogFor(ref);
      const changed = catalog.writeEffects(catalog.qualify(ref), ref.kind);
      for (const t of changed.tables) tables.add(t);
      triggered ??= changed.unseen;
    }
    const deps = [...tables].map((t) => this.keys.version(t));
    const catalog = await this.catalog.get();
    const unseen =
      effects.opaqueWrite ??
      effects.functions.filter((f) => catalog.mayWrite(f)).map((f) => `it calls ${f}(), a VOLATILE function that may write any table`)[0] ??
      triggered;
    if (unseen) {
      this.warn(`a statement invalidates every cached result of this database: ${unseen}. Writes the library sees precisely invalidate less.`);
      deps.push(this.keys.everything);
    }
    return deps;
  }

  private async catalogFor(ref: RelationName): Promise<Catalog> {
    const catalog = await this.catalog.get();
    const name = catalog.qualify(ref);
    if (catalog.knows(ref) || this.unknownNames.has(name)) return catalog;
    this.unknownNames.add(name);
    return this.catalog.reload();
  }
}
