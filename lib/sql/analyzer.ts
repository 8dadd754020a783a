import { loadModule, parseSync } from "libpg-query";
import type { ReadScope, WriteScope } from "./conditions";
import { readScopes, writeScope } from "./conditions";
import type {
  RelationName,
  RelationWrite,
  SearchPathChange,
  StatementEffects,
  TransactionControl,
  WriteKind,
} from "./statement-effects";

const MEMO_LIMIT = 5000;

// Statements that change no table rows. Those marked in CATALOG_ONLY add to the catalog.
const NEUTRAL = new Set([
  "SelectStmt",
  "InsertStmt",
  "UpdateStmt",
  "DeleteStmt",
  "MergeStmt",
  "TruncateStmt",
  "CopyStmt",
  "RefreshMatViewStmt",
  "TransactionStmt",
  "ExplainStmt",
  "VariableSetStmt",
  "VariableShowStmt",
  "ListenStmt",
  "UnlistenStmt",
  "NotifyStmt",
  "LockStmt",
  "VacuumStmt",
  "CheckPointStmt",
  "DiscardStmt",
  "DeallocateStmt",
  "PrepareStmt",
  "DeclareCursorStmt",
  "FetchStmt",
  "ClosePortalStmt",
  "ConstraintsSetStmt",
  "CommentStmt",
  "GrantStmt",
  "GrantRoleStmt",
  "CreateRoleStmt",
  "AlterRoleStmt",
  "CreateStmt",
  "CreateTableAsStmt",
  "IndexStmt",
  "CreateSeqStmt",
  "AlterSeqStmt",
  "ViewStmt",
  "CreateSchemaStmt",
  "CreateExtensionStmt",
  "CreateFunctionStmt",
  "CreateTrigStmt",
  "CreateEnumStmt",
  "CompositeTypeStmt",
  "CreateDomainStmt",
  "DefineStmt",
  "ReindexStmt",
  "ClusterStmt",
]);
const CATALOG_ONLY = new Set([
  "CreateStmt",
  "CreateTableAsStmt",
  "ViewStmt",
  "CreateSchemaStmt",
  "CreateExtensionStmt",
  "CreateFunctionStmt",
  "CreateTrigStmt",
]);

// REFRESH MATERIALIZED VIEW replaces every row: for what references it, that is a delete.
const WRITE_KINDS: Record<string, WriteKind> = {
  InsertStmt: "insert",
  UpdateStmt: "update",
  DeleteStmt: "delete",
  MergeStmt: "merge",
  RefreshMatViewStmt: "delete",
};

let ready: Promise<void> | undefined;

/**
 * Finds what SQL reads and writes with PostgreSQL's own parser (libpg-query), memoized per text,
 * since an application sends the same few hundred texts over and over.
 */
export class SqlAnalyzer {
  private readonly memo = new Map<string, StatementEffects>();

  /** Loads the parser (WebAssembly); analyze() may be called once this resolves. */
  static load(): Promise<void> {
    ready ??= loadModule();
    return ready;
  }

  analyze(sql: string): StatementEffects {
    let effects = this.memo.get(sql);
    if (effects) return effects;
    effects = analyzeText(sql);
    if (this.memo.size >= MEMO_LIMIT) this.memo.delete(this.memo.keys().next().value as string);
    this.memo.set(sql, effects);
    return effects;
  }
}

interface Collector {
  reads: RelationName[];
  writes: RelationWrite[];
  truncates: RelationName[];
  truncateCascades: boolean;
  functions: string[];
  cteNames: string[];
  opaqueWrite?: string;
  changesCatalog: boolean;
  control: TransactionControl[];
  statements: number;
  searchPath: SearchPathChange[];
  readScopes: ReadScope[];
  writeScope?: WriteScope;
}

function analyzeText(sql: string): StatementEffects {
  const out: Collector = {
    reads: [],
    writes: [],
    truncates: [],
    truncateCascades: false,
    functions: [],
    cteNames: [],
    changesCatalog: false,
    control: [],
    statements: 0,
    searchPath: [],
    readScopes: [],
  };
  let tree: { stmts?: { stmt: Record<string, unknown> }[] };
  try {
    tree = parseSync(sql) as typeof tree;
  } catch (error) {
    out.opaqueWrite = `PostgreSQL's parser rejected it (${(error as Error).message})`;
    return out;
  }
  for (const { stmt } of tree.stmts ?? []) {
    const kind = Object.keys(stmt)[0];
    out.statements++;
    const pathChange = searchPathChange(kind, stmt[kind] as Record<string, unknown>);
    if (pathChange) out.searchPath.push(pathChange);
    if (!NEUTRAL.has(kind)) {
      out.opaqueWrite ??= `${kind} may change rows in ways the statement does not name`;
      out.changesCatalog = true;
    }
    if (CATALOG_ONLY.has(kind)) out.changesCatalog = true;
    if ((stmt[kind] as Record<string, unknown>).kind === "TRANS_STMT_COMMIT_PREPARED") {
      out.opaqueWrite ??= "COMMIT PREPARED applies writes made in another session";
    }
    const control = transactionControl(kind, stmt[kind] as Record<string, unknown>);
    if (control) out.control.push(control);
    walk(stmt, out);
  }
  // Conditions are read with the statement's parameters, which belong to a text of one statement.
  const only = tree.stmts?.length === 1 ? tree.stmts[0].stmt : undefined;
  if (only) {
    out.readScopes = readScopes(only, out.cteNames);
    out.writeScope = writeScope(only);
  }
  return out;
}

function walk(node: unknown, out: Collector): void {
  if (Array.isArray(node)) {
    for (const item of node) walk(item, out);
    return;
  }
  if (typeof node !== "object" || node === null) return;
  for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
    const body = value as Record<string, unknown>;
    switch (key) {
      case "RangeVar":
        out.reads.push(relation(body));
        continue;
      case "TruncateStmt":
        for (const item of body.relations as { RangeVar: Record<string, unknown> }[])
          out.truncates.push(relation(item.RangeVar));
        if (body.behavior === "DROP_CASCADE") out.truncateCascades = true;
        continue;
      case "CopyStmt":
        if (body.relation && body.is_from)
          out.writes.push({
            ...relation(body.relation as Record<string, unknown>),
            kind: "insert",
          });
        if (body.relation && !body.is_from)
          out.reads.push(relation(body.relation as Record<string, unknown>));
        if (body.is_from && !body.relation) out.opaqueWrite ??= "COPY FROM without a table";
        walk(body.query, out);
        continue;
      case "FuncCall": {
        const name = (body.funcname as { String: { sval: string } }[])
          .map((p) => p.String.sval)
          .join(".");
        out.functions.push(name);
        if (setsSearchPath(name, body)) out.searchPath.push({ kind: "unknown" });
        break;
      }
      case "CommonTableExpr":
        out.cteNames.push(body.ctename as string);
        break;
    }
    // CREATE OR REPLACE VIEW changes what the view returns: entries that read it are outdated.
    if (key === "ViewStmt" && body.replace)
      out.writes.push({ ...relation(body.view as Record<string, unknown>), kind: "insert" });
    const kind = WRITE_KINDS[key];
    if (kind && body.relation)
      out.writes.push({
        ...relation(body.relation as Record<string, unknown>),
        kind: upsert(key, body) ? "update" : kind,
      });
    walk(value, out);
  }
}

// INSERT ... ON CONFLICT DO UPDATE may update rows, which carries on through ON UPDATE rules.
function upsert(key: string, body: Record<string, unknown>): boolean {
  return (
    key === "InsertStmt" &&
    (body.onConflictClause as { action?: string } | undefined)?.action === "ONCONFLICT_UPDATE"
  );
}

function relation(node: Record<string, unknown>): RelationName {
  const name = node.relname as string;
  return node.schemaname ? { schema: node.schemaname as string, name } : { name };
}

function transactionControl(
  kind: string,
  body: Record<string, unknown>,
): TransactionControl | undefined {
  if (kind !== "TransactionStmt") return undefined;
  const name = body.savepoint_name as string;
  switch (body.kind) {
    case "TRANS_STMT_BEGIN":
    case "TRANS_STMT_START":
      return { kind: "begin" };
    case "TRANS_STMT_COMMIT":
      return { kind: "commit", chain: body.chain === true };
    case "TRANS_STMT_ROLLBACK":
      return { kind: "rollback", chain: body.chain === true };
    // Its writes are applied by COMMIT PREPARED, in any session, which invalidates everything.
    case "TRANS_STMT_PREPARE":
      return { kind: "rollback" };
    case "TRANS_STMT_SAVEPOINT":
      return { kind: "savepoint", name };
    case "TRANS_STMT_RELEASE":
      return { kind: "release", name };
    case "TRANS_STMT_ROLLBACK_TO":
      return { kind: "rollback-to", name };
    default:
      return undefined;
  }
}

/** SET / RESET of search_path (and RESET ALL, DISCARD ALL, which reset it too). */
function searchPathChange(
  kind: string,
  body: Record<string, unknown>,
): SearchPathChange | undefined {
  if (kind === "DiscardStmt") return body.target === "DISCARD_ALL" ? { kind: "reset" } : undefined;
  if (kind !== "VariableSetStmt") return undefined;
  if (body.kind === "VAR_RESET_ALL") return { kind: "reset" };
  if (body.name !== "search_path") return undefined;
  if (body.kind === "VAR_RESET" || body.kind === "VAR_SET_DEFAULT") return { kind: "reset" };
  if (body.kind !== "VAR_SET_VALUE") return { kind: "unknown" };
  // Each argument is one schema name, quoted or not ('a, b' names the schema "a, b").
  const schemas = (body.args as { A_Const?: { sval?: { sval: string } } }[]).map(
    (arg) => arg.A_Const?.sval?.sval,
  );
  if (schemas.some((schema) => schema === undefined)) return { kind: "unknown" };
  return { kind: "set", local: body.is_local === true, schemas: schemas as string[] };
}

/** Whether a call may be set_config('search_path', ...): any set_config whose setting name is not another literal. */
function setsSearchPath(name: string, body: Record<string, unknown>): boolean {
  if (name !== "set_config" && name !== "pg_catalog.set_config") return false;
  const setting = (body.args as { A_Const?: { sval?: { sval: string } } }[] | undefined)?.[0]
    ?.A_Const?.sval?.sval;
  return setting === undefined || setting.toLowerCase() === "search_path";
}
