import type { QueryRunner } from "typeorm";
import type { Catalog } from "../catalog/catalog";
import type { Invalidator } from "../invalidation/invalidator";
import type { RowChange, RowPrecision } from "../invalidation/row-precision";
import type { Ended, TransactionBuffer } from "../invalidation/transaction-buffer";
import type { KeyLayout } from "../keys/key-layout";
import type { SqlAnalyzer } from "../sql/analyzer";
import type { ReadScope } from "../sql/conditions";
import type { RelationName, StatementEffects } from "../sql/statement-effects";
import type { ChangeKind } from "../sql/trigger-writes";
import { type TrackingContext, tracking } from "../tracking/tracking-context";
import type { QueryDetail } from "./registry";
import { type SearchPath, type SearchPaths, schemasOf } from "./search-paths";

/** The catalog as last read, and a way to read it again after DDL or for a name it lacks. */
export interface CatalogSource {
  get(): Promise<Catalog>;
  reload(): Promise<Catalog>;
  /** Why the last reload failed, if it did: the catalog may lack relations DDL made since. */
  readonly failed?: Error;
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
    private readonly paths: SearchPaths,
    private readonly invalidator: Invalidator,
    private readonly warn: (message: string) => void,
    /** Row precision for the catalog as read; undefined with `precision: "table"`. */
    private readonly rows?: (catalog: Catalog) => RowPrecision,
  ) {}

  async afterQuery(
    sql: string,
    runner: QueryRunner,
    succeeded: boolean,
    detail: QueryDetail = {},
  ): Promise<void> {
    const effects = this.analyzer.analyze(sql);
    const before = this.paths.current(runner);
    this.followSearchPath(runner, effects, succeeded);
    const after = this.paths.current(runner);
    const context = tracking.current();
    if (context) {
      if (before !== null || after !== null) {
        context.refuse(
          "it ran on a connection whose search_path was changed, where unqualified names may mean other tables than its key says",
        );
      }
      await this.track(context, effects, runner, succeeded, detail);
    }
    if (succeeded && effects.changesCatalog) {
      this.unknownNames.clear();
      void this.catalog.reload();
    }
    // A text of several statements that failed may have committed some of them first
    // (BEGIN; UPDATE ...; COMMIT; <error>): what it may have written counts.
    const partial = !succeeded && effects.statements > 1;
    const written =
      succeeded || partial ? await this.writtenUnder([before, after], effects, detail) : [];
    const due = new Set<string>();
    const ended: Ended[] = [];
    if (succeeded) {
      const opening = effects.control.filter((c) => c.kind === "begin" || c.kind === "savepoint");
      const closing = effects.control.filter((c) => c.kind !== "begin" && c.kind !== "savepoint");
      for (const control of opening) this.buffer.apply(runner, control);
      const held = written.length > 0 && this.buffer.hold(runner, written);
      if (!held || effects.control.length > 0) for (const dep of written) due.add(dep);
      if (effects.changesCatalog) this.buffer.changedCatalog(runner);
      for (const control of closing) {
        const end = this.buffer.apply(runner, control);
        if (end) ended.push(end);
        if (control.kind === "commit" || control.kind === "rollback")
          this.paths.end(runner, control.kind);
        if (control.kind === "rollback-to") this.paths.rolledBackToSavepoint(runner);
      }
    } else if (partial) {
      // Which of its statements ran is unknown: what it may have written is held if the
      // transaction survived, and due if the server says none is open (see reconcile).
      if (!this.buffer.hold(runner, written)) for (const dep of written) due.add(dep);
    } else if (effects.control.some((c) => c.kind === "commit")) {
      // A COMMIT that fails rolls back.
      this.buffer.abort(runner);
      this.paths.end(runner, "rollback");
    }
    const unseen = this.buffer.reconcile(runner);
    if (unseen) {
      ended.push(unseen);
      this.paths.end(runner, "unknown");
    }
    for (const end of ended) {
      for (const dep of end.deps) due.add(dep);
      if (end.changedCatalog) {
        // The catalog read when the DDL ran could not see it before it committed: read it again, and
        // since the transaction's writes were resolved without it, what they reached is unknown.
        this.unknownNames.clear();
        await this.catalog.reload();
        if (end.deps.size > 0) due.add(this.keys.everything);
      }
    }
    if (due.size > 0) await this.invalidator.invalidate(due);
  }

  /**
   * A session's search_path changes as its SQL sets it. A text that also opens or ends a
   * transaction, or that failed, leaves it unknown: the order of its effects is not kept.
   */
  private followSearchPath(
    runner: QueryRunner,
    effects: StatementEffects,
    succeeded: boolean,
  ): void {
    if (effects.searchPath.length === 0 || (!succeeded && effects.statements === 1)) return;
    if (!succeeded || effects.control.length > 0) return this.paths.lose(runner);
    const inTransaction = runner.isTransactionActive || this.buffer.isOpen(runner);
    for (const change of effects.searchPath) this.paths.apply(runner, change, inTransaction);
  }

  /**
   * What a statement writes, with its unqualified names resolved by each search_path it may have
   * run under (the session's before and after it, when it changed it). Under an unknown path, the
   * written table could be any of that name: every entry of the database is invalidated.
   */
  private async writtenUnder(
    paths: readonly SearchPath[],
    effects: StatementEffects,
    detail: QueryDetail,
  ): Promise<string[]> {
    const unqualified = [...effects.writes, ...effects.truncates].some((ref) => !ref.schema);
    const distinct = [
      ...new Set(
        paths.map((path) => (path === null || path === "unknown" ? path : JSON.stringify(path))),
      ),
    ];
    if (!unqualified || (distinct.length === 1 && distinct[0] === null))
      return this.withUnsureCatalog(await this.writtenDeps(effects, detail));
    if (distinct.includes("unknown"))
      return [...(await this.writtenDeps(effects, detail)), this.keys.everything];
    const catalog = await this.catalog.get();
    const resolved = new Set<string>();
    for (const path of distinct) {
      const schemas =
        path === null ? undefined : schemasOf(JSON.parse(path) as string[], catalog.role);
      const qualify = <R extends RelationName>(ref: R): R =>
        ref.schema ? ref : { ...ref, schema: catalog.schemaOf(ref, schemas) };
      const under = {
        ...effects,
        writes: effects.writes.map(qualify),
        truncates: effects.truncates.map(qualify),
      };
      for (const dep of await this.writtenDeps(under, detail)) resolved.add(dep);
    }
    return this.withUnsureCatalog([...resolved]);
  }

  /** While the catalog cannot be re-read, a write may reach tables it does not show: it invalidates everything. */
  private withUnsureCatalog(deps: string[]): string[] {
    return deps.length > 0 && this.catalog.failed ? [...deps, this.keys.everything] : deps;
  }

  private async track(
    context: TrackingContext,
    effects: StatementEffects,
    runner: QueryRunner,
    succeeded: boolean,
    detail: QueryDetail,
  ): Promise<void> {
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
      context.refuse(
        "a query in it failed, so what it returned is a fallback; pass cacheFallback: true to cache fallbacks",
      );
    }
    if (runner.isTransactionActive || this.buffer.isOpen(runner))
      context.refuse("it ran inside a transaction");
    const cteNames = new Set(effects.cteNames);
    const opaqueViews: string[] = [];
    const bounded = await this.boundedReads(effects, detail);
    for (const ref of effects.reads) {
      if (!ref.schema && cteNames.has(ref.name) && !(await this.catalog.get()).knows(ref)) continue;
      const catalog = await this.catalogFor(ref);
      const name = catalog.qualify(ref);
      if (catalog.callsFunctions(name)) opaqueViews.push(name);
      for (const table of catalog.readDependencies(name))
        context.addDeps(bounded.get(table) ?? [this.keys.version(table)]);
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
  private async boundedReads(
    effects: StatementEffects,
    detail: QueryDetail,
  ): Promise<Map<string, string[]>> {
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
      for (const table of catalog.readDependencies(catalog.qualify(ref)))
        reads.set(table, (reads.get(table) ?? 0) + 1);
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
      ...effects.truncates.map((ref) => ({
        ...ref,
        kind: effects.truncateCascades ? ("truncate-cascade" as const) : ("truncate" as const),
      })),
    ];
    for (const ref of written) {
      const catalog = await this.catalogFor(ref);
      const name = catalog.qualify(ref);
      const changed = catalog.writeEffects(name, ref.kind);
      const rows = this.rowWrite(catalog, name, ref.kind, effects, detail);
      for (const t of changed.tables)
        for (const key of t === name && rows ? rows : this.keys.tableWide(t)) deps.add(key);
      triggered ??= changed.unseen;
    }
    const catalog = await this.catalog.get();
    const unseen =
      effects.opaqueWrite ??
      effects.functions
        .filter((f) => catalog.mayWrite(f))
        .map((f) => `it calls ${f}(), a VOLATILE function that may write any table`)[0] ??
      triggered;
    if (unseen) {
      this.warn(
        `a statement invalidates every cached result of this database: ${unseen}. Writes the library sees precisely invalidate less.`,
      );
      deps.add(this.keys.everything);
    }
    return [...deps];
  }

  /**
   * The row versions a write bumps when its statement names the rows it changes and nothing else
   * (a trigger, a cascade back into the table) changes others; undefined for the whole table.
   */
  private rowWrite(
    catalog: Catalog,
    name: string,
    kind: ChangeKind,
    effects: StatementEffects,
    detail: QueryDetail,
  ): string[] | undefined {
    const scope = effects.writeScope;
    if (!this.rows || !scope || scope.kind !== kind || catalog.qualify(scope.relation) !== name)
      return undefined;
    const triggered =
      effects.writes.length === 1 && effects.truncates.length === 0
        ? catalog.rowWriteColumns(name, kind)
        : undefined;
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
      for (const key of rows?.covers(change.table)
        ? rows.changeKeys(change)
        : this.keys.tableWide(change.table))
        keys.add(key);
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
