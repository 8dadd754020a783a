import type { RelationName } from "./statement-effects";

/** A value in a condition: the n-th parameter (an array of values when `spread`), or a literal. */
export type Operand =
  | { readonly param: number; readonly spread?: true }
  | { readonly literal: string | number | boolean };

/** The rows whose `column` equals one of `values`. */
export interface ColumnBound {
  readonly column: string;
  readonly values: readonly Operand[];
}

/**
 * One occurrence of a relation in the FROM clause of a top-level SELECT, with what bounds the rows
 * of it the result can contain or depend on.
 */
export interface ReadScope {
  readonly relation: RelationName;
  /** Each alone bounds those rows (so any one may be chosen); none: the whole relation. */
  readonly bounds: readonly ColumnBound[];
  /**
   * By bound column: the result holds every row of the relation that the bound admits and that
   * passes conditions on `filters` (other columns of the same rows), so a write that keeps a row's
   * bound value changes the result only if the row is in it, or if it sets a filter column.
   * Absent for a column: the result may leave such rows out for other reasons (a LIMIT, a join).
   */
  readonly exact: ReadonlyMap<string, readonly string[]>;
  /** Columns of the relation the result returns as they are, by output name. */
  readonly outputs: ReadonlyMap<string, string>;
  /**
   * A LEFT-JOINed relation that nothing but its ON clause tests, joined by `column` = a column of
   * a row the result returns (under the output name `output`): the rows it can contribute are
   * those whose `column` holds one of the values the result shows there.
   */
  readonly follows?: { readonly column: string; readonly output: string };
}

/** The rows one INSERT, UPDATE or DELETE changes, as far as its text says. */
export interface WriteScope {
  readonly relation: RelationName;
  readonly kind: "insert" | "update" | "delete";
  /** UPDATE and DELETE: each alone bounds the rows changed; none: the rows are unknown. */
  readonly bounds: readonly ColumnBound[];
  /** UPDATE: each column set, with its new value (undefined: an expression, so unknown). */
  readonly set: ReadonlyMap<string, Operand | undefined>;
  /** INSERT: each row's values by column (undefined: DEFAULT or an expression). */
  readonly rows: readonly ReadonlyMap<string, Operand | undefined>[];
  /** Columns RETURNING gives back under their own names. */
  readonly returning: readonly string[];
}

type Node = Record<string, unknown>;

interface Occurrence {
  readonly relation: RelationName;
  readonly alias: string;
  /** ON conjuncts that bound this occurrence's rows: inner joins, and the nullable side of outer ones. */
  readonly on: Node[];
  /** Whether every join above it keeps all of its rows (it is the root of a chain of LEFT JOINs). */
  readonly preserved: boolean;
  /** Whether it is the nullable side of a LEFT JOIN whose other side is preserved (a relation loaded with its owner). */
  readonly joined: boolean;
}

/** A column reference resolved against the FROM clause: an occurrence (by alias) and a column. */
interface Resolved {
  readonly alias: string;
  readonly column: string;
}

/** The read scopes of a top-level SELECT (none for anything else), skipping names defined by WITH. */
export function readScopes(stmt: Node, cteNames: readonly string[]): ReadScope[] {
  const select = stmt.SelectStmt as Node | undefined;
  if (select?.op !== "SETOP_NONE" || select.valuesLists) return [];
  const from = (select.fromClause as Node[] | undefined) ?? [];
  const occurrences: Occurrence[] = [];
  let opaqueItems = false;
  const ons: Node[] = [];
  for (const item of from)
    if (!collectFrom(item, occurrences, ons, from.length === 1)) opaqueItems = true;
  const resolve = resolver(occurrences, opaqueItems);
  const where = conjuncts(select.whereClause as Node | undefined);
  const equalities = [...where, ...ons.flatMap((on) => conjuncts(on))].flatMap((c) =>
    columnEquality(c, resolve),
  );
  const aggregate = Boolean(
    select.groupClause ||
      select.havingClause ||
      select.limitCount ||
      select.limitOffset ||
      select.distinctClause,
  );
  const outputs = outputColumns((select.targetList as Node[] | undefined) ?? [], resolve);
  const scopes: ReadScope[] = [];
  for (const occurrence of occurrences) {
    if (!occurrence.relation.schema && cteNames.includes(occurrence.relation.name)) continue;
    const own = (conditions: Node[]) =>
      mergeBounds(conditions.map((c) => boundsOf(c, occurrence.alias, resolve)));
    const direct = own([...where, ...occurrence.on]);
    // x.col = v in WHERE (which rejects rows where x is NULL) with x.col = t.c in a join: t.c = v.
    const inferred = new Map<string, Operand[]>();
    for (const [alias, column, other] of equalities) {
      if (other.alias !== occurrence.alias || alias === occurrence.alias) continue;
      const values = mergeBounds(where.map((c) => boundsOf(c, alias, resolve))).get(column);
      if (values && !inferred.has(other.column)) inferred.set(other.column, values);
    }
    const bounds = mergeBounds([direct, inferred]);
    const exact = new Map<string, readonly string[]>();
    if (!aggregate && !opaqueItems && (occurrence.preserved || occurrence.joined)) {
      for (const column of bounds.keys()) {
        const filters = occurrence.preserved
          ? exactFilters(column, occurrence.alias, where, ons, equalities, resolve)
          : joinedFilters(column, occurrence, where, ons, resolve);
        if (filters) exact.set(column, filters);
      }
    }
    scopes.push({
      relation: occurrence.relation,
      bounds: [...bounds].map(([column, values]) => ({ column, values })),
      exact,
      outputs: new Map(
        outputs
          .filter(([, ref]) => ref.alias === occurrence.alias)
          .map(([name, ref]) => [name, ref.column]),
      ),
      follows:
        aggregate || opaqueItems || !occurrence.joined
          ? undefined
          : follows(occurrence, where, ons, outputs, resolve),
    });
  }
  return scopes;
}

/** The write scope of a top-level INSERT ... VALUES, UPDATE or DELETE, or undefined. */
export function writeScope(stmt: Node): WriteScope | undefined {
  const [kind, body] = Object.entries(stmt)[0] as [string, Node];
  if (body.withClause || !body.relation) return undefined;
  const target = body.relation as Node;
  const relation = relationOf(target);
  const alias =
    ((target.alias as Node | undefined)?.aliasname as string | undefined) ?? relation.name;
  if (kind === "InsertStmt") {
    const select = (body.selectStmt as Node | undefined)?.SelectStmt as Node | undefined;
    const cols = ((body.cols as Node[] | undefined) ?? []).map(
      (c) => (c.ResTarget as Node).name as string,
    );
    const conflict = body.onConflictClause as Node | undefined;
    if (
      !select?.valuesLists ||
      cols.length === 0 ||
      (conflict && conflict.action !== "ONCONFLICT_NOTHING")
    )
      return undefined;
    const rows = (select.valuesLists as Node[]).map((list) => {
      const items = (list.List as Node).items as Node[];
      return new Map(cols.map((column, i) => [column, operand(items[i])]));
    });
    const returning =
      (((body.returningClause as Node | undefined)?.exprs ?? body.returningList) as
        | Node[]
        | undefined) ?? [];
    const returned = returning.flatMap((item) => {
      const target = item.ResTarget as Node;
      const fields = columnFields(target.val as Node);
      const column = fields?.length === 1 ? fields[0] : undefined;
      return column && (target.name === undefined || target.name === column) ? [column] : [];
    });
    return { relation, kind: "insert", bounds: [], set: new Map(), rows, returning: returned };
  }
  if (kind !== "UpdateStmt" && kind !== "DeleteStmt") return undefined;
  const joined = ((body.fromClause ?? body.usingClause) as Node[] | undefined)?.length;
  const resolve = (ref: Node): Resolved | undefined => {
    const fields = columnFields(ref);
    if (!fields) return undefined;
    if (fields.length === 1) return joined ? undefined : { alias, column: fields[0] };
    if (fields.length === 2 && fields[0] === alias) return { alias, column: fields[1] };
    if (
      fields.length === 3 &&
      fields[1] === alias &&
      (!relation.schema || fields[0] === relation.schema)
    )
      return { alias, column: fields[2] };
    return undefined;
  };
  const bounds = mergeBounds(
    conjuncts(body.whereClause as Node | undefined).map((c) => boundsOf(c, alias, resolve)),
  );
  const set = new Map<string, Operand | undefined>();
  for (const item of (body.targetList as Node[] | undefined) ?? []) {
    const target = item.ResTarget as Node;
    // SET col[1] = ..., SET col.field = ...: the column changes in a way not written out.
    set.set(target.name as string, target.indirection ? undefined : operand(target.val as Node));
  }
  return {
    relation,
    kind: kind === "UpdateStmt" ? "update" : "delete",
    bounds: [...bounds].map(([column, values]) => ({ column, values })),
    set,
    rows: [],
    returning: [],
  };
}

/**
 * Walks a FROM item, recording RangeVars and the ON conditions that bound each; false when it
 * holds something else (a subquery, a function, a join with USING), whose columns cannot be told apart.
 */
function collectFrom(
  item: Node,
  out: Occurrence[],
  ons: Node[],
  preserved: boolean,
  on: Node[] = [],
  joined = false,
): boolean {
  if (item.RangeVar) {
    const rv = item.RangeVar as Node;
    const relation = relationOf(rv);
    const alias =
      ((rv.alias as Node | undefined)?.aliasname as string | undefined) ?? relation.name;
    out.push({ relation, alias, on, preserved, joined });
    return true;
  }
  const join = item.JoinExpr as Node | undefined;
  if (!join) return false;
  const quals = join.quals as Node | undefined;
  if (quals) ons.push(quals);
  const type = join.jointype as string;
  const conds = quals ? conjuncts(quals) : [];
  // ON conditions bound an inner join's sides and an outer join's nullable side, which they
  // decide the rows of; a preserved side keeps its rows whatever they say.
  const left = collectFrom(
    join.larg as Node,
    out,
    ons,
    preserved && type === "JOIN_LEFT",
    type === "JOIN_INNER" || type === "JOIN_RIGHT" ? conds : [],
  );
  const right = collectFrom(
    join.rarg as Node,
    out,
    ons,
    false,
    type === "JOIN_INNER" || type === "JOIN_LEFT" ? conds : [],
    preserved && type === "JOIN_LEFT",
  );
  return left && right && !join.usingClause && !join.isNatural;
}

function resolver(
  occurrences: readonly Occurrence[],
  opaqueItems: boolean,
): (ref: Node) => Resolved | undefined {
  return (ref) => {
    const fields = columnFields(ref);
    if (!fields) return undefined;
    if (fields.length === 1) {
      return occurrences.length === 1 && !opaqueItems
        ? { alias: occurrences[0].alias, column: fields[0] }
        : undefined;
    }
    const matches = occurrences.filter((o) =>
      fields.length === 2
        ? o.alias === fields[0]
        : o.alias === fields[1] &&
          o.relation.name === fields[1] &&
          (!o.relation.schema || o.relation.schema === fields[0]),
    );
    return matches.length === 1 && fields.length <= 3
      ? { alias: matches[0].alias, column: fields[fields.length - 1] }
      : undefined;
  };
}

/** The names of a ColumnRef ("t", "col"), or undefined for anything else (t.*). */
function columnFields(node: Node | undefined): string[] | undefined {
  const ref = node?.ColumnRef as Node | undefined;
  if (!ref) return undefined;
  const fields = ref.fields as Node[];
  if (!fields.every((f) => f.String)) return undefined;
  return fields.map((f) => (f.String as Node).sval as string);
}

function conjuncts(node: Node | undefined): Node[] {
  if (!node) return [];
  const bool = node.BoolExpr as Node | undefined;
  if (bool?.boolop === "AND_EXPR") return (bool.args as Node[]).flatMap((arg) => conjuncts(arg));
  return [node];
}

/** The column bounds an expression sets on one alias's rows: AND keeps each, OR those on a column every branch bounds. */
function boundsOf(
  node: Node,
  alias: string,
  resolve: (ref: Node) => Resolved | undefined,
): Map<string, Operand[]> {
  const bool = node.BoolExpr as Node | undefined;
  if (bool?.boolop === "AND_EXPR")
    return mergeBounds((bool.args as Node[]).map((arg) => boundsOf(arg, alias, resolve)));
  if (bool?.boolop === "OR_EXPR") {
    const branches = (bool.args as Node[]).map((arg) => boundsOf(arg, alias, resolve));
    const out = new Map<string, Operand[]>();
    for (const column of branches[0].keys()) {
      if (branches.every((b) => b.has(column)))
        out.set(
          column,
          branches.flatMap((b) => b.get(column) as Operand[]),
        );
    }
    return out;
  }
  const expr = node.A_Expr as Node | undefined;
  if (!expr || !isEquals(expr)) return new Map();
  let column = resolve(expr.lexpr as Node);
  let other = expr.rexpr as Node;
  if (!column && expr.kind === "AEXPR_OP") {
    column = resolve(expr.rexpr as Node);
    other = expr.lexpr as Node;
  }
  if (!column || column.alias !== alias) return new Map();
  let values: (Operand | undefined)[];
  if (expr.kind === "AEXPR_OP") values = [operand(other)];
  else if (expr.kind === "AEXPR_IN")
    values = ((other.List as Node | undefined)?.items as Node[] | undefined)?.map(operand) ?? [
      undefined,
    ];
  else if (other.ParamRef)
    values = [{ param: (other.ParamRef as Node).number as number, spread: true }];
  else
    values = ((other.A_ArrayExpr as Node | undefined)?.elements as Node[] | undefined)?.map(
      operand,
    ) ?? [undefined];
  if (values.length === 0 || values.some((v) => v === undefined)) return new Map();
  return new Map([[column.column, values as Operand[]]]);
}

function isEquals(expr: Node): boolean {
  const name = expr.name as Node[];
  const equals = name.length === 1 && (name[0].String as Node | undefined)?.sval === "=";
  return (
    equals && (expr.kind === "AEXPR_OP" || expr.kind === "AEXPR_IN" || expr.kind === "AEXPR_OP_ANY")
  );
}

/** Either bound holds; on the same column, the shorter list is kept. */
function mergeBounds(all: readonly Map<string, Operand[]>[]): Map<string, Operand[]> {
  const out = new Map<string, Operand[]>();
  for (const bounds of all) {
    for (const [column, values] of bounds) {
      const known = out.get(column);
      if (!known || values.length < known.length) out.set(column, values);
    }
  }
  return out;
}

/** `x.a = y.b` between two occurrences, both ways round: [alias, column, the other side]. */
function columnEquality(
  node: Node,
  resolve: (ref: Node) => Resolved | undefined,
): [string, string, Resolved][] {
  const expr = node.A_Expr as Node | undefined;
  if (expr?.kind !== "AEXPR_OP" || !isEquals(expr)) return [];
  const left = resolve(expr.lexpr as Node);
  const right = resolve(expr.rexpr as Node);
  if (!left || !right || left.alias === right.alias) return [];
  return [
    [left.alias, left.column, right],
    [right.alias, right.column, left],
  ];
}

/**
 * The filter columns when the result holds every row of `alias` whose `column` the WHERE admits:
 * each WHERE conjunct must be about that alias's own columns, or bound `column` through a join
 * equality (the joined row then exists for every such row or for none). Undefined otherwise.
 */
function exactFilters(
  column: string,
  alias: string,
  where: readonly Node[],
  ons: readonly Node[],
  equalities: readonly [string, string, Resolved][],
  resolve: (ref: Node) => Resolved | undefined,
): string[] | undefined {
  const filters = new Set<string>();
  for (const conjunct of where) {
    const refs = columnRefs(conjunct);
    if (!refs) return undefined;
    const resolved = refs.map(resolve);
    if (resolved.every((r) => r?.alias === alias)) {
      if (
        !boundsOf(conjunct, alias, resolve).has(column) ||
        resolved.some((r) => r?.column !== column)
      ) {
        for (const r of resolved) if (r && r.column !== column) filters.add(r.column);
      }
      continue;
    }
    const bound = resolved.length === 1 ? resolved[0] : undefined;
    const through =
      bound &&
      equalities.some(
        ([a, c, other]) =>
          a === bound.alias &&
          c === bound.column &&
          other.alias === alias &&
          other.column === column,
      );
    if (!through) return undefined;
  }
  for (const on of ons) {
    for (const ref of columnRefs(on) ?? []) {
      const r = resolve(ref);
      if (r?.alias === alias && r.column !== column) filters.add(r.column);
    }
  }
  return [...filters];
}

/**
 * The filter columns when the result holds every row of a LEFT-JOINed relation whose `column`
 * the query bounds: it is joined by `column` = a column of another relation that the WHERE bounds
 * (so every row with a bound value meets the same rows there, or none), and otherwise only its
 * own columns are tested, in its ON clause or the WHERE. Undefined otherwise.
 */
function joinedFilters(
  column: string,
  occurrence: Occurrence,
  where: readonly Node[],
  ons: readonly Node[],
  resolve: (ref: Node) => Resolved | undefined,
): string[] | undefined {
  const filters = new Set<string>();
  const alias = occurrence.alias;
  const own = (conjunct: Node): boolean | undefined => {
    const refs = columnRefs(conjunct)?.map(resolve);
    if (!refs || refs.some((r) => r === undefined)) return undefined;
    if (!refs.some((r) => r?.alias === alias)) return false;
    if (!refs.every((r) => r?.alias === alias)) return undefined;
    if (!boundsOf(conjunct, alias, resolve).has(column) || refs.some((r) => r?.column !== column)) {
      for (const r of refs) if (r && r.column !== column) filters.add(r.column);
    }
    return true;
  };
  for (const conjunct of where) if (own(conjunct) === undefined) return undefined;
  let joinedBy = false;
  for (const on of ons) {
    const conds = conjuncts(on);
    const mine = conds.some((c) => occurrence.on.includes(c));
    for (const conjunct of conds) {
      const equality = columnEquality(conjunct, resolve).find(([a]) => a === alias);
      if (mine && equality && equality[1] === column) {
        const [, , other] = equality;
        const bound = where.some((c) => boundsOf(c, other.alias, resolve).has(other.column));
        if (!bound) return undefined;
        joinedBy = true;
        continue;
      }
      const about = own(conjunct);
      if (about === undefined || (about && !mine)) return undefined;
    }
  }
  return joinedBy ? [...filters] : undefined;
}

/**
 * How a LEFT-JOINed relation follows the rows it is joined to (see ReadScope.follows): its ON
 * clause joins it by one equality to a column the result returns, and tests nothing else but its
 * own columns; no other condition of the query mentions it, so every row it is joined to is in
 * the result whatever its own rows hold.
 */
function follows(
  occurrence: Occurrence,
  where: readonly Node[],
  ons: readonly Node[],
  outputs: readonly [string, Resolved][],
  resolve: (ref: Node) => Resolved | undefined,
): { column: string; output: string } | undefined {
  const alias = occurrence.alias;
  const mentions = (conjunct: Node): boolean | undefined => {
    const refs = columnRefs(conjunct)?.map(resolve);
    if (!refs || refs.some((r) => r === undefined)) return undefined;
    return refs.some((r) => r?.alias === alias);
  };
  if (where.some((c) => mentions(c) !== false)) return undefined;
  for (const on of ons) {
    const conds = conjuncts(on);
    if (!conds.some((c) => occurrence.on.includes(c)) && conds.some((c) => mentions(c) !== false))
      return undefined;
  }
  let found: { column: string; output: string } | undefined;
  for (const conjunct of occurrence.on) {
    const equality = columnEquality(conjunct, resolve).find(([a]) => a === alias);
    const output =
      equality &&
      outputs.find(
        ([, ref]) => ref.alias === equality[2].alias && ref.column === equality[2].column,
      )?.[0];
    if (equality && output !== undefined && !found) {
      found = { column: equality[1], output };
      continue;
    }
    const refs = columnRefs(conjunct)?.map(resolve);
    if (!refs || refs.some((r) => r === undefined || (r.alias !== alias && mentions(conjunct))))
      return undefined;
  }
  return found;
}

/** Every ColumnRef in an expression, or undefined when it holds a subquery. */
function columnRefs(node: unknown): Node[] | undefined {
  const out: Node[] = [];
  let opaque = false;
  const visit = (value: unknown) => {
    if (Array.isArray(value)) return value.forEach(visit);
    if (typeof value !== "object" || value === null) return;
    for (const [key, child] of Object.entries(value as Node)) {
      if (key === "SubLink") opaque = true;
      else if (key === "ColumnRef") out.push(value as Node);
      else visit(child);
    }
  };
  visit(node);
  return opaque ? undefined : out;
}

/** Output names of the target list entries that are plain columns, once each. */
function outputColumns(
  targets: readonly Node[],
  resolve: (ref: Node) => Resolved | undefined,
): [string, Resolved][] {
  const seen = new Map<string, number>();
  const out: [string, Resolved][] = [];
  for (const item of targets) {
    const target = item.ResTarget as Node;
    const fields = columnFields(target.val as Node);
    const name = (target.name as string | undefined) ?? fields?.[fields.length - 1] ?? "?column?";
    seen.set(name, (seen.get(name) ?? 0) + 1);
    const ref = resolve(target.val as Node);
    if (ref) out.push([name, ref]);
  }
  return out.filter(([name]) => seen.get(name) === 1);
}

function operand(node: Node | undefined): Operand | undefined {
  if (!node) return undefined;
  const param = node.ParamRef as Node | undefined;
  if (param) return { param: param.number as number };
  const constant = node.A_Const as Node | undefined;
  if (!constant || constant.isnull) return undefined;
  if (constant.ival) return { literal: ((constant.ival as Node).ival as number | undefined) ?? 0 };
  if (constant.sval) return { literal: (constant.sval as Node).sval as string };
  if (constant.fval) return { literal: (constant.fval as Node).fval as string };
  if (constant.boolval)
    return { literal: ((constant.boolval as Node).boolval as boolean | undefined) ?? false };
  return undefined;
}

function relationOf(node: Node): RelationName {
  const name = node.relname as string;
  return node.schemaname ? { schema: node.schemaname as string, name } : { name };
}
