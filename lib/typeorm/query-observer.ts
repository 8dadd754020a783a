import type { QueryRunner } from "typeorm";
import type { Catalog } from "../catalog/catalog";
import type { Invalidator } from "../invalidation/invalidator";
import type { RowChange, RowPrecision } from "../invalidation/row-precision";
import type { TransactionBuffer } from "../invalidation/transaction-buffer";
import type { KeyLayout } from "../keys/key-space";
import type { SqlAnalyzer } from "../sql/analyzer";
import type { ReadScope } from "../sql/conditions";
import type { RelationName, StatementEffects } from "../sql/statement-effects";
import type { ChangeKind } from "../catalog/trigger-writes";
import { type TrackingContext, tracking } from "../tracking/tracking-context";
import type { QueryDetail } from "./registry";

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
    /** Row precision for the catalog as read; undefined with `precision: "table"`. */
    private readonly rows?: (catalog: Catalog) => RowPrecision,
  ) {}

  async afterQuery(sql: string, runner: QueryRunner, succeeded: boolean, detail: QueryDetail = {}): Promise<void> {
    const effects = this.analyzer.analyze(sql);
    const context = tracking.current();
    if (context && context.owner === this.owner) await this.track(context, effects, runner, detail);
    if (succeeded && effects.changesCatalog) {
      this.unknownNames.clear();
      void this.catalog.reload();
    }
    const written = succeeded ? await this.writtenDeps(effects, detail) : [];
    const opening = effects.control.filter((c) => c.kind === "begin" || c.kind === "savepoint");
    const closing = effects.control.filter((c) => c.kind !== "begin" && c.kind !== "savepoint");
    for (const control of opening) this.buffer.apply(runner, control, succeeded);
    const held = written.length > 0 && this.buffer.hold(runner, written);
    const due = new Set<string>(held && effects.control.length === 0 ? [] : written);
    for (const control of closing) for (const dep of this.buffer.apply(runner, control, succeeded) ?? []) due.add(dep);
    if (due.size > 0) await this.invalidator.invalidate(due);
  }

  private async track(context: TrackingContext, effects: StatementEffects, runner: QueryRunner, detail: QueryDetail): Promise<void> {
    if (runner.isTransactionActive || this.buffer.isOpen(runner)) context.refuse("it ran inside a transaction");
    const cteNames = new Set(effects.cteNames);
    const opaqueViews: string[] = [];
    const bounded = await this.boundedReads(effects, detail);
    for (const ref of effects.reads) {
      if (!ref.schema && cteNames.has(ref.name) && !(await this.catalog.get()).knows(ref)) continue;
      const catalog = await this.catalogFor(ref);
      const name = catalog.qualify(ref);
      if (catalog.callsFunctions(name)) opaqueViews.push(name);
      for (const table of catalog.readDependencies(name)) context.addDeps(bounded.get(table) ?? [this.keys.version(table)]);
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

  /**
   * The versions each table a SELECT reads depends on, for the tables every read of which is
   * bounded by conditions (row precision); the others are left out, to depend on the whole table.
   */
  private async boundedReads(effects: StatementEffects, detail: QueryDetail): Promise<Map<string, string[]>> {
    const out = new Map<string, string[]>();
    if (!this.rows || effects.readScopes.length === 0) return out;
    const catalog = await this.catalog.get();
    const rows = this.rows(catalog);
    const scopes = new Map<string, ReadScope[]>();
    for (const scope of effects.readScopes) {
      const name = catalog.qualify(scope.relation);
      scopes.set(name, [...(scopes.get(name) ?? []), scope]);
    }
    // A table read anywhere else too (a subquery, through a view) depends on all of its rows.
    const reads = new Map<string, number>();
    for (const ref of effects.reads) {
      for (const table of catalog.readDependencies(catalog.qualify(ref))) reads.set(table, (reads.get(table) ?? 0) + 1);
    }
    for (const [table, own] of scopes) {
      if (reads.get(table) !== own.length) continue;
      const keys = rows.readKeys(table, own, detail.parameters, detail.result);
      if (keys) out.set(table, keys);
    }
    return out;
  }

  private async writtenDeps(effects: StatementEffects, detail: QueryDetail): Promise<string[]> {
    const deps = new Set<string>();
    let triggered: string | undefined;
    const written = [
      ...effects.writes,
      ...effects.truncates.map((ref) => ({ ...ref, kind: effects.truncateCascades ? "truncate-cascade" as const : "truncate" as const })),
    ];
    for (const ref of written) {
      const catalog = await this.catalogFor(ref);
      const name = catalog.qualify(ref);
      const changed = catalog.writeEffects(name, ref.kind);
      const rows = this.rowWrite(catalog, name, ref.kind, effects, detail);
      for (const t of changed.tables) for (const key of t === name && rows ? rows : this.keys.tableWide(t)) deps.add(key);
      triggered ??= changed.unseen;
    }
    const catalog = await this.catalog.get();
    const unseen =
      effects.opaqueWrite ??
      effects.functions.filter((f) => catalog.mayWrite(f)).map((f) => `it calls ${f}(), a VOLATILE function that may write any table`)[0] ??
      triggered;
    if (unseen) {
      this.warn(`a statement invalidates every cached result of this database: ${unseen}. Writes the library sees precisely invalidate less.`);
      deps.add(this.keys.everything);
    }
    return [...deps];
  }

  /**
   * The row versions a write bumps when its statement names the rows it changes and nothing else
   * (a trigger, a cascade back into the table) changes others; undefined for the whole table.
   */
  private rowWrite(catalog: Catalog, name: string, kind: ChangeKind, effects: StatementEffects, detail: QueryDetail): string[] | undefined {
    const scope = effects.writeScope;
    if (!this.rows || !scope || scope.kind !== kind || catalog.qualify(scope.relation) !== name) return undefined;
    const triggered = effects.writes.length === 1 && effects.truncates.length === 0 ? catalog.rowWriteColumns(name, kind) : undefined;
    if (!triggered) return undefined;
    return this.rows(catalog).writeKeys(name, scope, detail.parameters, detail.result, triggered);
  }

  /**
   * The versions row changes reported from outside the DataSource bump (a change feed such as
   * logical replication): each change is final, cascades and trigger effects arriving as changes
   * of their own.
   */
  async rowChangeKeys(changes: readonly RowChange[]): Promise<string[]> {
    const catalog = await this.catalog.get();
    const rows = this.rows?.(catalog);
    const keys = new Set<string>();
    for (const change of changes) {
      for (const key of rows?.covers(change.table) ? rows.changeKeys(change) : this.keys.tableWide(change.table)) keys.add(key);
    }
    return [...keys];
  }

  private async catalogFor(ref: RelationName): Promise<Catalog> {
    const catalog = await this.catalog.get();
    const name = catalog.qualify(ref);
    if (catalog.knows(ref) || this.unknownNames.has(name)) return catalog;
    this.unknownNames.add(name);
    return this.catalog.reload();
  }
}
