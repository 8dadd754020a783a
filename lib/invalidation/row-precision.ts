import type { DataSource } from "typeorm";
import type { Catalog, QualifiedName } from "../catalog/catalog";
import { parseRelationName } from "../catalog/qualified-name";
import type { KeyLayout } from "../keys/key-layout";
import type { ColumnBound, Operand, ReadScope, WriteScope } from "../sql/conditions";
import { canonical, rowSchema, type TableRows } from "./row-schema";

/** A row of a table by column name; a column left out is unknown. */
export type RowImage = Readonly<Record<string, unknown>>;

/**
 * One row changed: its values before (absent for an insert) and after (absent for a delete).
 * What a change feed reports, and what row precision makes of a write it sees.
 */
export interface RowChange {
  /** Schema-qualified: "public.post". */
  readonly table: QualifiedName;
  readonly before?: RowImage;
  readonly after?: RowImage;
}

/**
 * Row precision over a DataSource's entities, for each catalog as read (names qualify by it), or
 * undefined with `precision: "table"`.
 */
export function rowPrecisionOf(
  dataSource: DataSource,
  keys: KeyLayout,
  precision: "row" | "table",
): ((catalog: Catalog) => RowPrecision) | undefined {
  if (precision === "table") return undefined;
  const built = new WeakMap<Catalog, RowPrecision>();
  return (catalog) => {
    let rows = built.get(catalog);
    if (!rows) {
      rows = new RowPrecision(
        keys,
        rowSchema(dataSource, (path) => qualifyPath(catalog, path)),
      );
      built.set(catalog, rows);
    }
    return rows;
  };
}

function qualifyPath(catalog: Catalog, path: string): QualifiedName {
  return catalog.qualify(parseRelationName(path));
}

/** Longer IN lists and results are kept table-wide: their versions would cost more than they save. */
const MAX_VALUES = 100;

/**
 * Row precision (invariant 9): which versions a read depends on, from the conditions that bound
 * its rows, and which versions a write bumps, from the rows it changed. Every write to a table
 * bumps the table version; readers bounded by conditions depend on finer versions instead (see
 * KeyLayout), so a write to one row keeps the results of the others.
 *
 * A reader bounded by `col IN values` depends on "#*" (rows unknown), "#col=<v>" for each value,
 * and either "#col" (rows with an unknown col changed), or, when its result holds every row the
 * bound admits (exact), "#col!" (rows of unknown identity or new value), "#<f>~" for the other
 * columns its conditions test, and "#<id>=<p>" for each row p of its result: a write that keeps a
 * row's col changes such a result only if the row is in it.
 */
export class RowPrecision {
  constructor(
    private readonly keys: KeyLayout,
    private readonly tables: ReadonlyMap<QualifiedName, TableRows>,
  ) {}

  /** Whether row versions apply to the table at all. */
  covers(table: QualifiedName): boolean {
    return this.tables.has(table);
  }

  /**
   * The versions a read of `table` depends on, given the scopes of every place the statement
   * reads it; undefined when one of them is not bounded (the whole table then).
   */
  readKeys(
    table: QualifiedName,
    scopes: readonly ReadScope[],
    params: readonly unknown[] | undefined,
    result: unknown,
  ): string[] | undefined {
    const rows = this.tables.get(table);
    if (!rows || scopes.length === 0) return undefined;
    const out = new Set([this.keys.rowsUnknown(table)]);
    for (const scope of scopes) {
      const chosen = this.choose(rows, scope, params) ?? this.followed(rows, scope, result);
      if (!chosen) return undefined;
      const { column, values } = chosen;
      for (const value of values) out.add(this.keys.rowValue(table, column, value));
      const members =
        scope.exact.has(column) && column !== rows.identity
          ? this.members(rows, scope, result)
          : undefined;
      if (!members) {
        out.add(this.keys.column(table, column, "unknown"));
        continue;
      }
      out.add(this.keys.column(table, column, "moved"));
      for (const filter of scope.exact.get(column) ?? [])
        out.add(this.keys.column(table, filter, "set"));
      for (const id of members) out.add(this.keys.rowValue(table, rows.identity, id));
    }
    return [...out];
  }

  /**
   * The versions a write bumps, from what its statement says of the rows it changed; undefined
   * when that is not enough to bound them (the whole table then).
   */
  writeKeys(
    table: QualifiedName,
    scope: WriteScope,
    params: readonly unknown[] | undefined,
    result: unknown,
    triggered: readonly string[] = [],
  ): string[] | undefined {
    const rows = this.tables.get(table);
    if (!rows) return undefined;
    // Columns BEFORE ROW triggers may set take values the statement does not show.
    if (triggered.length > 0 && scope.kind !== "delete") {
      const unknown = (values: ReadonlyMap<string, Operand | undefined>) =>
        new Map([...values, ...triggered.map((c): [string, undefined] => [c, undefined])]);
      scope = {
        ...scope,
        set: scope.kind === "update" ? unknown(scope.set) : scope.set,
        rows: scope.rows.map(unknown),
      };
    }
    if (scope.kind === "insert") {
      const returned = returnedValues(result);
      const changes = scope.rows.map((row) => {
        const after: Record<string, unknown> = {};
        for (const [column, value] of row) if (value) after[column] = resolve(value, params);
        return { table, after };
      });
      const keys = new Set(changes.flatMap((change) => this.changeKeys(change)));
      // RETURNING (generated keys): their values are known, though not which row has which.
      for (const [column, values] of returned) {
        const kind = rows.columns.get(column);
        if (!kind || !scope.returning.includes(column)) continue;
        const texts = values.map((v) => canonical(kind, v));
        if (texts.some((t) => t === undefined)) continue;
        keys.delete(this.keys.column(table, column, "unknown"));
        keys.delete(this.keys.column(table, column, "moved"));
        for (const text of texts)
          if (text !== null) keys.add(this.keys.rowValue(table, column, text as string));
      }
      return [...keys];
    }
    const bound = this.chooseWriteBound(rows, scope.bounds, params);
    if (!bound) return undefined;
    const keys = new Set([this.keys.version(table)]);
    const identityKnown = bound.column === rows.identity;
    for (const [column, kind] of rows.columns) {
      const before = column === bound.column ? bound.values : undefined;
      if (before) for (const value of before) keys.add(this.keys.rowValue(table, column, value));
      else {
        keys.add(this.keys.column(table, column, "unknown"));
        if (!identityKnown) keys.add(this.keys.column(table, column, "moved"));
      }
      if (scope.kind !== "update" || !scope.set.has(column)) continue;
      const set = scope.set.get(column);
      const after = set ? canonical(kind, resolve(set, params)) : undefined;
      if (after === undefined) {
        keys.add(this.keys.column(table, column, "unknown"));
        keys.add(this.keys.column(table, column, "moved"));
      } else if (after !== null) keys.add(this.keys.rowValue(table, column, after));
    }
    for (const column of scope.set.keys()) keys.add(this.keys.column(table, column, "set"));
    return [...keys];
  }

  /**
   * The versions one row change bumps. The entry point for change feeds (logical replication):
   * give the row's values before and after, leaving out columns whose values are unknown.
   */
  changeKeys(change: RowChange): string[] {
    const { table, before, after } = change;
    const rows = this.tables.get(table);
    if (!rows) return this.keys.tableWide(table);
    const keys = new Set([this.keys.version(table)]);
    const identityKind = rows.columns.get(rows.identity) ?? "text";
    const identityKnown =
      before === undefined || typeof canonical(identityKind, before[rows.identity]) === "string";
    for (const [column, kind] of rows.columns) {
      for (const image of [before, after]) {
        if (!image) continue;
        const value = column in image ? canonical(kind, image[column]) : undefined;
        if (value === undefined) {
          keys.add(this.keys.column(table, column, "unknown"));
          if (image === after || !identityKnown) keys.add(this.keys.column(table, column, "moved"));
        } else if (value !== null) keys.add(this.keys.rowValue(table, column, value));
      }
    }
    // No "#<col>~": an exact read's result held the row only if it lists the old identity (or
    // that is unknown: "#<col>!"), and holds it now only if the new value of its bound column is
    // one of its values (or that is unknown: "#<col>!" again), whatever other columns changed.
    return [...keys];
  }

  /**
   * The bound a read's versions follow: the identity column when it is bounded, else one whose
   * result is exact, else the one with the fewest values. Each value must have a canonical text.
   */
  private choose(
    rows: TableRows,
    scope: ReadScope,
    params: readonly unknown[] | undefined,
  ): { column: string; values: string[] } | undefined {
    const usable: { column: string; values: string[]; rank: number }[] = [];
    for (const bound of scope.bounds) {
      const values = boundValues(rows, bound, params);
      if (!values || values.length === 0) continue;
      const rank = bound.column === rows.identity ? 0 : scope.exact.has(bound.column) ? 1 : 2;
      usable.push({ column: bound.column, values, rank });
    }
    usable.sort((a, b) => a.rank - b.rank || a.values.length - b.values.length);
    return usable[0];
  }

  /** The bound of a LEFT-JOINed relation: the values the result shows where it is joined. */
  private followed(
    rows: TableRows,
    scope: ReadScope,
    result: unknown,
  ): { column: string; values: string[] } | undefined {
    const kind = scope.follows && rows.columns.get(scope.follows.column);
    const records = (result as { rows?: unknown } | undefined)?.rows;
    if (!scope.follows || !kind || !Array.isArray(records)) return undefined;
    const values = new Set<string>();
    for (const record of records) {
      // NULL joins no row.
      const value = canonical(kind, (record as Record<string, unknown>)[scope.follows.output]);
      if (value === undefined) return undefined;
      if (value !== null) values.add(value);
    }
    return values.size > MAX_VALUES
      ? undefined
      : { column: scope.follows.column, values: [...values] };
  }

  /** A write's bound: the identity when its WHERE names it, else any condition column. */
  private chooseWriteBound(
    rows: TableRows,
    bounds: readonly ColumnBound[],
    params: readonly unknown[] | undefined,
  ): { column: string; values: string[] } | undefined {
    const usable = bounds
      .map((bound) => ({ column: bound.column, values: boundValues(rows, bound, params) }))
      .filter((b): b is { column: string; values: string[] } => b.values !== undefined);
    return usable.find((b) => b.column === rows.identity) ?? usable[0];
  }

  /** The identities of the rows of the table in an exact read's result, or undefined. */
  private members(rows: TableRows, scope: ReadScope, result: unknown): string[] | undefined {
    const output = [...scope.outputs].find(([, column]) => column === rows.identity)?.[0];
    const records = (result as { rows?: unknown } | undefined)?.rows;
    if (output === undefined || !Array.isArray(records) || records.length > MAX_VALUES)
      return undefined;
    const kind = rows.columns.get(rows.identity) ?? "text";
    const ids = new Set<string>();
    for (const record of records) {
      // A row of the table is absent from this record (a join's NULL side): nothing to depend on.
      const value = canonical(kind, (record as Record<string, unknown>)[output]);
      if (value === undefined) return undefined;
      if (value !== null) ids.add(value);
    }
    return [...ids];
  }
}

/** The canonical texts of a bound's values, or undefined when one is NULL, unknown or there are too many. */
function boundValues(
  rows: TableRows,
  bound: ColumnBound,
  params: readonly unknown[] | undefined,
): string[] | undefined {
  const kind = rows.columns.get(bound.column);
  if (!kind) return undefined;
  const out = new Set<string>();
  for (const operand of bound.values) {
    const value = resolve(operand, params);
    const items =
      "spread" in operand && operand.spread
        ? Array.isArray(value)
          ? value
          : [undefined]
        : [value];
    for (const item of items) {
      const text = canonical(kind, item);
      if (typeof text !== "string") return undefined;
      out.add(text);
    }
  }
  return out.size > MAX_VALUES ? undefined : [...out];
}

function resolve(operand: Operand, params: readonly unknown[] | undefined): unknown {
  if ("literal" in operand) return operand.literal;
  // A parameter that was not passed is unknown: a symbol has no canonical text.
  if (!params || operand.param > params.length) return Symbol.for("unknown");
  return params[operand.param - 1];
}

/** The values RETURNING gave back, by column. */
function returnedValues(result: unknown): Map<string, unknown[]> {
  const out = new Map<string, unknown[]>();
  const records = (result as { rows?: unknown } | undefined)?.rows;
  if (!Array.isArray(records)) return out;
  for (const record of records) {
    for (const [column, value] of Object.entries(record as Record<string, unknown>)) {
      let values = out.get(column);
      if (!values) out.set(column, (values = []));
      values.push(value);
    }
  }
  return out;
}
