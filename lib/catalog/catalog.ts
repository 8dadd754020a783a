import { SqlAnalyzer } from "../sql/analyzer";
import type { RelationName } from "../sql/statement-effects";
import {
  type ChangeKind,
  type FunctionWrites,
  firedEvents,
  functionWrites,
  ruleEvent,
  type TriggerEvent,
  triggerEvents,
} from "../sql/trigger-writes";
import type { SqlReader } from "./catalog-connection";
import { type EdgeRow, type RuleRow, readCatalogRows, type TriggerRow } from "./catalog-queries";
import { type QualifiedName, qualifiedName } from "./qualified-name";

export type { QualifiedName } from "./qualified-name";

/** A change to a relation's rows, and how it reaches them. */
export interface TableChange {
  readonly table: QualifiedName;
  readonly kind: ChangeKind;
}

/** What a trigger or rule changes when the events it fires on happen, or why that cannot be known. */
export type TriggerEffect =
  | {
      readonly events: readonly TriggerEvent[];
      readonly changes: readonly TableChange[];
      /** A BEFORE ROW trigger: the columns of the row it may set ("any" when that cannot be read). */
      readonly sets?: readonly string[] | "any";
      readonly opaque?: undefined;
    }
  | { readonly events: readonly TriggerEvent[]; readonly opaque: string };

/** The relations a write changes, and, if it may also change relations no one can name, why. */
export interface WriteEffects {
  readonly tables: QualifiedName[];
  readonly unseen?: string;
}

/** What a Catalog is made of, as read from the database. */
interface CatalogFacts {
  /** Names the catalog rows this was read from; see fingerprint(). */
  readonly fingerprint: string;
  /** The role the library connects as, which "$user" in a search path stands for. */
  readonly role: string;
  /** Schemas an unqualified name is looked up in, in order, on a connection that did not change its search path. */
  readonly searchPath: readonly string[];
  readonly currentSchema: string;
  readonly schemas: ReadonlySet<string>;
  readonly kinds: ReadonlyMap<QualifiedName, string>;
  readonly viewReads: ReadonlyMap<QualifiedName, readonly QualifiedName[]>;
  /**
   * Referenced table to the rows that change when its rows are deleted: deleted (CASCADE) or
   * updated (SET NULL, SET DEFAULT).
   */
  readonly deleteCascades: ReadonlyMap<QualifiedName, readonly TableChange[]>;
  /** The same for updates of the referenced key, which update the referencing rows. */
  readonly updateCascades: ReadonlyMap<QualifiedName, readonly TableChange[]>;
  /** Referenced table to every table that references it, whatever its rules (TRUNCATE CASCADE). */
  readonly referencedBy: ReadonlyMap<QualifiedName, readonly TableChange[]>;
  /** Parents and children in inheritance and partitioning, both ways. */
  readonly family: ReadonlyMap<QualifiedName, readonly QualifiedName[]>;
  readonly builtinFunctions: ReadonlySet<string>;
  /** Functions outside pg_catalog that may write (VOLATILE), by bare and qualified name. */
  readonly volatileFunctions: ReadonlySet<string>;
  /** The user triggers and rules of each relation. */
  readonly triggers: ReadonlyMap<QualifiedName, readonly TriggerEffect[]>;
  /** Views whose definition calls a function outside pg_catalog, directly or through other views. */
  readonly opaqueViews: ReadonlySet<QualifiedName>;
}

/**
 * What the database says about its relations, read once and again after DDL: which names exist
 * in which schema, what views read, which foreign keys cascade writes into which tables, which
 * tables inherit from (or are partitions of) which, and what the triggers on each write.
 */
export class Catalog {
  private constructor(private readonly facts: CatalogFacts) {}

  /** Names the catalog rows this was read from; see fingerprint(). */
  get fingerprint(): string {
    return this.facts.fingerprint;
  }

  /** The role the library connects as, which "$user" in a search path stands for. */
  get role(): string {
    return this.facts.role;
  }

  /** Schemas an unqualified name is looked up in, in order, on a connection that did not change its search path. */
  get searchPath(): readonly string[] {
    return this.facts.searchPath;
  }

  get builtinFunctions(): ReadonlySet<string> {
    return this.facts.builtinFunctions;
  }

  /**
   * Reads the catalog in one snapshot, with its fingerprint: the catalog it was read from is the
   * one that fingerprint names, so a later change of fingerprint means DDL committed since.
   */
  static async load(reader: SqlReader): Promise<Catalog> {
    // A failed query drops the connection (see CatalogConnection), which ends the transaction.
    await reader.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    const catalog = await Catalog.read(reader, await Catalog.fingerprint(reader));
    await reader.query("COMMIT");
    return catalog;
  }

  /**
   * A digest of the catalog rows this class reads, which changes whenever DDL that matters here
   * commits: the count and the newest row version of each catalog. Temporary tables, which
   * sessions create all the time and no cached query of another session can read, are left out.
   */
  static async fingerprint(reader: SqlReader): Promise<string> {
    const [row] = await reader.query<{ fingerprint: string }>(
      `SELECT concat_ws('/',
         (SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM pg_class WHERE relpersistence <> 't'),
         (SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM pg_namespace),
         (SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM pg_constraint),
         (SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM pg_trigger),
         (SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM pg_rewrite),
         (SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM pg_inherits),
         (SELECT count(*) || ':' || coalesce(max(xmin::text::bigint), 0) FROM pg_proc)) AS fingerprint`,
    );
    return row.fingerprint;
  }

  private static async read(runner: SqlReader, fingerprint: string): Promise<Catalog> {
    const rows = await readCatalogRows(runner);
    const searchPath = parsePath(rows.paths.path);
    const kinds = new Map(rows.relations.map((r) => [qualifiedName(r.schema, r.name), r.kind]));
    const builtinFunctions = new Set(rows.builtins.map((b) => b.name));
    await SqlAnalyzer.load();
    const triggers = triggerEffects(rows.triggerRows, rows.ruleRows, {
      kinds,
      searchPath,
      role: rows.paths.role,
      isBuiltin: (name) => isBuiltin(builtinFunctions, name),
      analyzer: new SqlAnalyzer(),
    });
    return new Catalog({
      fingerprint,
      role: rows.paths.role,
      searchPath,
      currentSchema: rows.paths.current ?? "public",
      schemas: new Set(rows.namespaces.map((n) => n.name)),
      kinds,
      viewReads: graph(rows.views),
      deleteCascades: changes(rows.foreignKeys, (fk) => DELETE_ACTIONS[fk.on_delete]),
      updateCascades: changes(rows.foreignKeys, (fk) => UPDATE_ACTIONS[fk.on_update]),
      referencedBy: changes(rows.foreignKeys, () => "truncate-cascade"),
      family: graph([...rows.inherits, ...rows.inherits.map(reverse)]),
      builtinFunctions,
      volatileFunctions: new Set(
        rows.volatile.flatMap((f) => [f.name, qualifiedName(f.schema, f.name)]),
      ),
      triggers,
      opaqueViews: new Set(rows.viewsCallingFunctions.map((v) => qualifiedName(v.schema, v.name))),
    });
  }

  /** Whether the name denotes a relation the catalog knew when it was read. */
  knows(ref: RelationName, searchPath?: readonly string[]): boolean {
    return this.facts.kinds.has(this.qualify(ref, searchPath));
  }

  /**
   * The relation an unqualified name means: the first schema on the search path that has it (the
   * connection's own path when it set one), else where CREATE would put it.
   */
  qualify(ref: RelationName, searchPath?: readonly string[]): QualifiedName {
    return `${this.schemaOf(ref, searchPath)}.${ref.name}`;
  }

  /** The schema of the relation a name means; see qualify. */
  schemaOf(ref: RelationName, searchPath?: readonly string[]): string {
    if (ref.schema) return ref.schema;
    for (const schema of searchPath ?? this.searchPath)
      if (this.facts.kinds.has(qualifiedName(schema, ref.name))) return schema;
    return searchPath?.find((schema) => this.facts.schemas.has(schema)) ?? this.facts.currentSchema;
  }

  /**
   * Whether a write `earlier` resolved (this process wrote that table while it was current) may
   * change tables here that it did not there: DDL added a cascade, trigger, rule, partition or
   * view edge on its way. DDL elsewhere in the database, and DDL that only removes edges, does not
   * count: writes resolved with `earlier` invalidated at least what they changed.
   */
  writesDifferFrom(earlier: Catalog): boolean {
    for (const [memoKey, before] of earlier.effectsMemo) {
      const space = memoKey.indexOf(" ");
      const now = this.writeEffects(
        memoKey.slice(space + 1),
        memoKey.slice(0, space) as ChangeKind,
      );
      if (
        (now.unseen !== undefined && before.unseen === undefined) ||
        now.tables.some((t) => !before.tables.includes(t))
      )
        return true;
    }
    return false;
  }

  // A catalog never changes once read (a reload makes a new one), so answers are kept.
  private readonly effectsMemo = new Map<string, WriteEffects>();
  private readonly readsMemo = new Map<QualifiedName, QualifiedName[]>();

  /** The tables a read of `name` depends on: itself and, for a view, what it reads, recursively. */
  readDependencies(name: QualifiedName): QualifiedName[] {
    let tables = this.readsMemo.get(name);
    if (!tables)
      this.readsMemo.set(name, (tables = closure([name], (n) => this.facts.viewReads.get(n))));
    return tables;
  }

  /** Its inheritance and partitioning relatives, both ways and transitively: readers of a parent read its children's rows. */
  relatives(name: QualifiedName): QualifiedName[] {
    return closure([name], (n) => this.facts.family.get(n)).filter((n) => n !== name);
  }

  /** The tables whose rows a write to `name` may change; see writeEffects. */
  writeDependencies(name: QualifiedName, kind: ChangeKind): QualifiedName[] {
    return this.writeEffects(name, kind).tables;
  }

  /**
   * The tables whose rows a write to `name` may change: itself, the tables a view writes through,
   * inheritance or partition relatives, what foreign-key rules (CASCADE, SET NULL, SET DEFAULT)
   * carry a delete or update on to (a TRUNCATE ... CASCADE empties every referencing table), and
   * what the triggers fired on any of these write, each change followed on in turn. `unseen` says
   * why, if a trigger or rule fired may write tables the library cannot name.
   */
  writeEffects(name: QualifiedName, kind: ChangeKind): WriteEffects {
    const memoKey = `${kind} ${name}`;
    let effects = this.effectsMemo.get(memoKey);
    if (!effects) this.effectsMemo.set(memoKey, (effects = this.computeWriteEffects(name, kind)));
    return effects;
  }

  private computeWriteEffects(name: QualifiedName, kind: ChangeKind): WriteEffects {
    const tables = new Set<QualifiedName>();
    const seen = new Set<string>();
    const queue: TableChange[] = [];
    let unseen: string | undefined;
    const visit = (change: TableChange) => {
      const key = `${change.kind} ${change.table}`;
      if (seen.has(key)) return;
      seen.add(key);
      tables.add(change.table);
      queue.push(change);
    };
    visit({ table: name, kind });
    while (queue.length > 0) {
      const { table, kind: how } = queue.pop() as TableChange;
      for (const t of this.facts.viewReads.get(table) ?? []) visit({ table: t, kind: how });
      // An update through a partitioned table moves rows between partitions by DELETE and INSERT.
      for (const t of this.facts.family.get(table) ?? [])
        visit({ table: t, kind: how === "update" ? "merge" : how });
      for (const edges of this.cascadesOf(how))
        for (const change of edges.get(table) ?? []) visit(change);
      const fired = firedEvents(how);
      for (const trigger of this.facts.triggers.get(table) ?? []) {
        if (!trigger.events.some((e) => fired.includes(e))) continue;
        if (trigger.opaque !== undefined) unseen ??= trigger.opaque;
        else for (const change of trigger.changes) visit(change);
      }
    }
    return { tables: [...tables], unseen };
  }

  /**
   * Whether a write of this kind to `name` changes only the rows its statement names (row
   * precision): a plain table without rules, inheritance or partition relatives, whose triggers
   * can be read and write no row of it but the one they fire for, and no foreign-key rule (or
   * trigger it fires) that carries the write back into it. Resolves the columns its BEFORE ROW
   * triggers may set besides the statement's, or undefined when it does not.
   */
  rowWriteColumns(name: QualifiedName, kind: ChangeKind): readonly string[] | undefined {
    if (this.facts.kinds.get(name) !== "r" || this.facts.family.has(name)) return undefined;
    const fired = firedEvents(kind);
    const sets = new Set<string>();
    for (const trigger of this.facts.triggers.get(name) ?? []) {
      if (!trigger.events.some((e) => fired.includes(e))) continue;
      if (trigger.opaque !== undefined || trigger.sets === "any") return undefined;
      if (
        trigger.changes.some((change) =>
          this.writeDependencies(change.table, change.kind).includes(name),
        )
      )
        return undefined;
      for (const column of trigger.sets ?? []) sets.add(column);
    }
    for (const edges of this.cascadesOf(kind)) {
      for (const change of edges.get(name) ?? [])
        if (this.writeDependencies(change.table, change.kind).includes(name)) return undefined;
    }
    return [...sets];
  }

  /**
   * Whether a function name (bare or qualified) is one of PostgreSQL's own that reads no tables.
   * The *_to_xml family runs SQL given as text, so it may read anything.
   */
  isBuiltinFunction(name: string): boolean {
    return isBuiltin(this.builtinFunctions, name);
  }

  /** Whether calling this function (bare or qualified name) may write: a VOLATILE one outside pg_catalog. */
  mayWrite(functionName: string): boolean {
    return this.facts.volatileFunctions.has(functionName);
  }

  /** Whether reading this relation runs a function outside pg_catalog (a view that calls one). */
  callsFunctions(name: QualifiedName): boolean {
    return this.readDependencies(name).some((n) => this.facts.opaqueViews.has(n));
  }

  private cascadesOf(kind: ChangeKind): ReadonlyMap<QualifiedName, readonly TableChange[]>[] {
    switch (kind) {
      case "delete":
        return [this.facts.deleteCascades];
      case "update":
        return [this.facts.updateCascades];
      case "merge":
        return [this.facts.deleteCascades, this.facts.updateCascades];
      case "truncate-cascade":
        return [this.facts.referencedBy];
      default:
        return [];
    }
  }
}

// pg_constraint.confdeltype and confupdtype: what a referencing row undergoes ('a' and 'r' refuse).
const DELETE_ACTIONS: Record<string, ChangeKind | undefined> = {
  c: "delete",
  n: "update",
  d: "update",
};
const UPDATE_ACTIONS: Record<string, ChangeKind | undefined> = {
  c: "update",
  n: "update",
  d: "update",
};

function isBuiltin(builtins: ReadonlySet<string>, name: string): boolean {
  const dot = name.lastIndexOf(".");
  const bare = dot >= 0 ? name.slice(dot + 1) : name;
  if (dot >= 0 && name.slice(0, dot) !== "pg_catalog") return false;
  if (/_to_xml/i.test(bare)) return false;
  return builtins.has(bare.toLowerCase()) || builtins.has(bare);
}

interface TriggerContext {
  kinds: ReadonlyMap<QualifiedName, string>;
  searchPath: readonly string[];
  /** The role "$user" in a function's own search_path stands for. */
  role: string;
  isBuiltin(name: string): boolean;
  analyzer: SqlAnalyzer;
}

/**
 * Each relation's triggers and rules, with what they change. A trigger is opaque when its WHEN
 * condition or function calls a function that is not PostgreSQL's own (which may write anything),
 * when its function cannot be read, or when it writes a relation the catalog does not know (which
 * its name may mean once it exists). Rules are always opaque.
 */
function triggerEffects(
  triggers: readonly TriggerRow[],
  rules: readonly RuleRow[],
  context: TriggerContext,
): Map<QualifiedName, TriggerEffect[]> {
  const out = new Map<QualifiedName, TriggerEffect[]>();
  const add = (schema: string, name: string, effect: TriggerEffect) => {
    const table = qualifiedName(schema, name);
    out.set(table, [...(out.get(table) ?? []), effect]);
  };
  const functions = new Map<string, FunctionWrites>();
  for (const row of triggers) {
    let writes = functions.get(row.function);
    if (!writes) {
      writes = functionWrites(
        {
          schema: row.function_schema,
          name: row.function_name,
          language: row.language,
          definition: row.function_definition,
        },
        context.analyzer,
      );
      functions.set(row.function, writes);
    }
    const events = triggerEvents(row.type);
    const why = triggerOpacity(row, writes, context);
    const label = `the trigger ${row.trigger} on ${row.schema}.${row.name}`;
    if (why !== undefined || writes.opaque !== undefined) {
      add(row.schema, row.name, { events, opaque: `${label} ${why ?? writes.opaque}` });
      continue;
    }
    const path =
      row.search_path === null ? context.searchPath : functionPath(row.search_path, context.role);
    const changes: TableChange[] = [];
    let unknown: string | undefined;
    for (const change of writes.changes) {
      const table = resolve(context.kinds, change.ref, path);
      if (table === undefined)
        unknown ??= change.ref.schema ? `${change.ref.schema}.${change.ref.name}` : change.ref.name;
      else changes.push({ table, kind: change.kind });
    }
    if (unknown !== undefined) {
      add(row.schema, row.name, {
        events,
        opaque: `${label} writes ${unknown}, which the library does not know, so it may write any table`,
      });
    } else {
      // pg_trigger.tgtype: 1 ROW, 2 BEFORE. Only a BEFORE ROW trigger may change the row being written.
      const beforeRow = (row.type & 3) === 3;
      add(row.schema, row.name, {
        events,
        changes,
        sets: beforeRow ? (writes.assigns ?? "any") : undefined,
      });
    }
  }
  for (const row of rules) {
    const event = ruleEvent(row.event);
    if (!event) continue;
    add(row.schema, row.name, {
      events: [event],
      opaque: `the rule ${row.rule} on ${row.schema}.${row.name} may write any table`,
    });
  }
  return out;
}

/** Why a trigger may write what no one can name, from the functions its WHEN condition or function call. */
function triggerOpacity(
  row: TriggerRow,
  writes: FunctionWrites,
  context: TriggerContext,
): string | undefined {
  const when = context.analyzer.analyze(row.definition);
  if (when.opaqueWrite) return `cannot be read (${when.opaqueWrite}), so it may write any table`;
  const called = [...when.functions, ...(writes.opaque === undefined ? writes.functions : [])];
  const foreign = called.find((f) => !context.isBuiltin(f));
  return foreign === undefined ? undefined : `calls ${foreign}(), which may write any table`;
}

/** The relation a name means when a function runs with this search path, if the catalog knows it. */
function resolve(
  kinds: ReadonlyMap<QualifiedName, string>,
  ref: RelationName,
  path: readonly string[],
): QualifiedName | undefined {
  const candidates = ref.schema
    ? [qualifiedName(ref.schema, ref.name)]
    : path.map((schema) => qualifiedName(schema, ref.name));
  return candidates.find((name) => kinds.has(name));
}

/** A function's own search_path setting ("a, \"B\", $user"), as schema names. */
function functionPath(setting: string, role: string): string[] {
  return setting
    .split(",")
    .map((s) => s.trim().replace(/^"(.*)"$/, "$1"))
    .map((s) => (s === "$user" ? role : s))
    .filter(Boolean);
}

function parsePath(path: string[] | string): string[] {
  if (Array.isArray(path)) return path;
  return path
    .replace(/^\{|\}$/g, "")
    .split(",")
    .filter(Boolean)
    .map((s) => s.replace(/^"|"$/g, ""));
}

function reverse(edge: EdgeRow): EdgeRow {
  return {
    from_schema: edge.to_schema,
    from_name: edge.to_name,
    to_schema: edge.from_schema,
    to_name: edge.from_name,
  };
}

function changes<E extends EdgeRow>(
  edges: readonly E[],
  kind: (edge: E) => ChangeKind | undefined,
): Map<QualifiedName, TableChange[]> {
  const out = new Map<QualifiedName, TableChange[]>();
  for (const e of edges) {
    const how = kind(e);
    if (!how) continue;
    const from = qualifiedName(e.from_schema, e.from_name);
    out.set(from, [
      ...(out.get(from) ?? []),
      { table: qualifiedName(e.to_schema, e.to_name), kind: how },
    ]);
  }
  return out;
}

function graph(edges: readonly EdgeRow[]): Map<QualifiedName, QualifiedName[]> {
  const out = new Map<QualifiedName, QualifiedName[]>();
  for (const e of edges) {
    const from = qualifiedName(e.from_schema, e.from_name);
    const list = out.get(from) ?? [];
    list.push(qualifiedName(e.to_schema, e.to_name));
    out.set(from, list);
  }
  return out;
}

function closure(
  start: QualifiedName[],
  next: (name: QualifiedName) => readonly QualifiedName[] | undefined,
): QualifiedName[] {
  const seen = new Set(start);
  const queue = [...start];
  while (queue.length > 0) {
    for (const n of next(queue.pop() as QualifiedName) ?? []) {
      if (!seen.has(n)) {
        seen.add(n);
        queue.push(n);
      }
    }
  }
  return [...seen];
}
