import { parsePlPgSQLSync, scanSync } from "libpg-query";
import type { SqlAnalyzer } from "./analyzer";
import type { RelationName, WriteKind } from "./statement-effects";

/** How a change reaches a relation's rows, which decides what it sets off in turn. */
export type ChangeKind = WriteKind | "truncate" | "truncate-cascade";

/** The statements a trigger or rule fires on. */
export type TriggerEvent = "insert" | "update" | "delete" | "truncate";

/** A relation a trigger's function changes, by the name its SQL uses. */
export interface NamedChange {
  readonly ref: RelationName;
  readonly kind: ChangeKind;
}

/**
 * What the SQL inside a trigger's function changes, or why that cannot be known. `functions` are
 * the functions it calls: unless they are PostgreSQL's own, they may write anything.
 */
export type FunctionWrites =
  | {
      readonly changes: readonly NamedChange[];
      readonly functions: readonly string[];
      /**
       * The columns of NEW it may set, run as a BEFORE ROW trigger (row precision needs them);
       * undefined when it may set any (it assigns NEW as a whole, or returns another row).
       */
      readonly assigns?: readonly string[];
      readonly opaque?: undefined;
    }
  | { readonly opaque: string };

// Bits of pg_trigger.tgtype (PostgreSQL's TRIGGER_TYPE_*).
const EVENT_BITS: readonly [number, TriggerEvent][] = [
  [4, "insert"],
  [8, "delete"],
  [16, "update"],
  [32, "truncate"],
];

// pg_rewrite.ev_type; a SELECT rule ('1') is a view's definition.
const RULE_EVENTS: Record<string, TriggerEvent> = { "2": "update", "3": "insert", "4": "delete" };

// PostgreSQL's own trigger functions that change only the row being written.
const ROW_ONLY_BUILTINS = new Set([
  "tsvector_update_trigger",
  "tsvector_update_trigger_column",
  "suppress_redundant_updates_trigger",
]);

// Every PL/pgSQL statement kind whose SQL the tree shows. EXECUTE (dynexecute, dynfors, and the
// dynquery of OPEN and RETURN QUERY) runs SQL built at run time; a kind unknown here may too.
const KNOWN_STATEMENTS = new Set(
  [
    "block",
    "assign",
    "if",
    "case",
    "loop",
    "while",
    "fori",
    "fors",
    "forc",
    "foreach_a",
    "exit",
    "return",
    "return_next",
    "return_query",
    "raise",
    "assert",
    "execsql",
    "getdiag",
    "open",
    "fetch",
    "close",
    "perform",
    "call",
    "commit",
    "rollback",
  ].map((kind) => `PLpgSQL_stmt_${kind}`),
);
const DYNAMIC_STATEMENTS = new Set(["PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors"]);
const DYNAMIC = "runs dynamic SQL (EXECUTE), which may write any table";

// PostgreSQL's parse modes for the SQL inside PL/pgSQL (RawParseMode).
const PARSE_DEFAULT = 0;
const PARSE_EXPRESSION = 2;
const PARSE_ASSIGNMENTS = new Set([3, 4, 5]);

export function triggerEvents(tgtype: number): TriggerEvent[] {
  return EVENT_BITS.filter(([bit]) => (tgtype & bit) !== 0).map(([, event]) => event);
}

export function ruleEvent(evType: string): TriggerEvent | undefined {
  return RULE_EVENTS[evType];
}

/**
 * The trigger events a change fires. INSERT ... ON CONFLICT DO UPDATE is reported as an update,
 * and fires insert triggers as well as update ones.
 */
export function firedEvents(kind: ChangeKind): readonly TriggerEvent[] {
  switch (kind) {
    case "insert":
      return ["insert"];
    case "update":
      return ["insert", "update"];
    case "delete":
      return ["delete"];
    case "merge":
      return ["insert", "update", "delete"];
    default:
      return ["truncate"];
  }
}

/**
 * What a trigger function changes, read from its definition (pg_get_functiondef): the statements of
 * a PL/pgSQL body and every expression in it, each through the SQL analyzer. Other languages, and
 * SQL built at run time, cannot be read.
 */
export function functionWrites(
  fn: { schema: string; name: string; language: string; definition: string | null },
  analyzer: SqlAnalyzer,
): FunctionWrites {
  if (fn.schema === "pg_catalog" && ROW_ONLY_BUILTINS.has(fn.name))
    return { changes: [], functions: [], assigns: undefined };
  if (fn.language !== "plpgsql" || fn.definition === null) {
    return {
      opaque: `runs ${fn.schema}.${fn.name}(), written in ${fn.language}, which the library cannot read, so it may write any table`,
    };
  }
  let tree: unknown;
  try {
    tree = parsePlPgSQLSync(fn.definition);
  } catch (error) {
    return {
      opaque: `runs ${fn.schema}.${fn.name}(), which PostgreSQL's PL/pgSQL parser rejected (${(error as Error).message}), so it may write any table`,
    };
  }
  const out: Collector = { changes: [], functions: [] };
  walk(tree, out, analyzer);
  return out.opaque
    ? { opaque: out.opaque }
    : { changes: out.changes, functions: out.functions, assigns: assignedColumns(tree) };
}

/**
 * The fields of NEW a PL/pgSQL trigger function assigns: PL/pgSQL creates a record-field datum for
 * each field it assigns (by := or INTO), and none for fields it only reads. Undefined when NEW is
 * assigned as a whole, used as a loop or INTO target, or another record than NEW or OLD is returned.
 */
function assignedColumns(tree: unknown): string[] | undefined {
  const fn = (tree as { plpgsql_funcs?: { PLpgSQL_function?: Record<string, unknown> }[] })
    .plpgsql_funcs?.[0]?.PLpgSQL_function;
  const datums = (fn?.datums as Record<string, Record<string, unknown>>[] | undefined) ?? [];
  const recordNo = (name: string) => datums.findIndex((d) => d.PLpgSQL_rec?.refname === name);
  const newNo = recordNo("new");
  const oldNo = recordNo("old");
  if (newNo < 0) return [];
  const columns: string[] = [];
  for (const datum of datums) {
    const field = datum.PLpgSQL_recfield;
    if (field && ((field.recparentno as number | undefined) ?? 0) === newNo)
      columns.push(field.fieldname as string);
  }
  let whole = false;
  const visit = (node: unknown, key?: string): void => {
    if (Array.isArray(node)) {
      for (const item of node) visit(item, key);
      return;
    }
    if (typeof node !== "object" || node === null) return;
    for (const [k, value] of Object.entries(node as Record<string, unknown>)) {
      if (k === "datums") continue;
      if (k === "PLpgSQL_stmt_return") {
        const returned = (value as { retvarno?: number; expr?: unknown }).retvarno;
        if (
          (value as { expr?: unknown }).expr !== undefined ||
          (returned !== undefined && returned !== newNo && returned !== oldNo)
        )
          whole = true;
        continue;
      }
      if (k === "varno" && value === newNo) whole = true;
      if ((k === "target" || k === "var") && JSON.stringify(value).includes('"refname":"new"'))
        whole = true;
      visit(value, k);
    }
  };
  visit(fn?.action);
  return whole ? undefined : columns;
}

interface Collector {
  changes: NamedChange[];
  functions: string[];
  opaque?: string;
}

function walk(node: unknown, out: Collector, analyzer: SqlAnalyzer): void {
  if (out.opaque) return;
  if (Array.isArray(node)) {
    for (const item of node) walk(item, out, analyzer);
    return;
  }
  if (typeof node !== "object" || node === null) return;
  for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
    if (key === "dynquery" || DYNAMIC_STATEMENTS.has(key)) {
      out.opaque = DYNAMIC;
      return;
    }
    if (key.startsWith("PLpgSQL_stmt_") && !KNOWN_STATEMENTS.has(key)) {
      out.opaque = `uses ${key}, which the library cannot read, so it may write any table`;
      return;
    }
    if (key === "PLpgSQL_expr")
      embedded(value as { query: string; parseMode?: number }, out, analyzer);
    else walk(value, out, analyzer);
  }
}

function embedded(
  expr: { query: string; parseMode?: number },
  out: Collector,
  analyzer: SqlAnalyzer,
): void {
  const sql = standalone(expr.query, expr.parseMode ?? PARSE_DEFAULT);
  const effects = sql === undefined ? undefined : analyzer.analyze(sql);
  // Names are resolved with the function's search path, which the body must leave as it is.
  if (!effects || effects.opaqueWrite || /search_path/i.test(expr.query)) {
    out.opaque = `runs "${brief(expr.query)}", which the library cannot read precisely, so it may write any table`;
    return;
  }
  for (const ref of effects.writes) out.changes.push({ ref, kind: ref.kind });
  const truncated: ChangeKind = effects.truncateCascades ? "truncate-cascade" : "truncate";
  for (const ref of effects.truncates) out.changes.push({ ref, kind: truncated });
  out.functions.push(...effects.functions);
}

/** The SQL an embedded statement or expression amounts to, as text the SQL parser accepts. */
function standalone(query: string, mode: number): string | undefined {
  if (mode === PARSE_DEFAULT) return query;
  if (mode === PARSE_EXPRESSION) return `SELECT ${query}`;
  if (!PARSE_ASSIGNMENTS.has(mode)) return undefined;
  // "target := value": the target's subscripts are expressions too, so both sides are kept.
  const at = assignmentOperator(query);
  if (!at) return undefined;
  const bytes = Buffer.from(query);
  return `SELECT ${bytes.subarray(0, at.start).toString()}, ${bytes.subarray(at.end).toString()}`;
}

/** Where the assignment operator is, in bytes, as the scanner counts. */
function assignmentOperator(query: string): { start: number; end: number } | undefined {
  let tokens: ReturnType<typeof scanSync>["tokens"];
  try {
    tokens = scanSync(query).tokens;
  } catch {
    return undefined;
  }
  let depth = 0;
  for (const token of tokens) {
    if (token.text === "(" || token.text === "[") depth++;
    else if (token.text === ")" || token.text === "]") depth--;
    else if (depth === 0 && (token.text === ":=" || token.text === "="))
      return { start: token.start, end: token.end };
  }
  return undefined;
}

function brief(sql: string): string {
  const text = sql.replace(/\s+/g, " ").trim();
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
