import type { QueryRunner } from "typeorm";
import type { RelationName, WriteKind } from "../sql/statement-effects";

/** A relation by schema-qualified name, "schema.table", as used in dependency keys. */
export type QualifiedName = string;

interface RelationRow {
  schema: string;
  name: string;
  kind: string;
}
interface EdgeRow {
  from_schema: string;
  from_name: string;
  to_schema: string;
  to_name: string;
}

/**
 * What the database says about its relations, read once and again after DDL: which names exist
 * in which schema, what views read, which foreign keys cascade writes into which tables, and which
 * tables inherit from (or are partitions of) which.
 */
export class Catalog {
  private constructor(
    /** Schemas an unqualified name is looked up in, in order. */
    private readonly searchPath: readonly string[],
    private readonly currentSchema: string,
    private readonly kinds: ReadonlyMap<QualifiedName, string>,
    private readonly viewReads: ReadonlyMap<QualifiedName, readonly QualifiedName[]>,
    /** Referenced table to the tables whose rows change when its rows are deleted (CASCADE, SET NULL, SET DEFAULT). */
    private readonly deleteCascades: ReadonlyMap<QualifiedName, readonly QualifiedName[]>,
    /** The same for updates of the referenced key. */
    private readonly updateCascades: ReadonlyMap<QualifiedName, readonly QualifiedName[]>,
    /** Referenced table to every table that references it, whatever its rules (TRUNCATE CASCADE). */
    private readonly referencedBy: ReadonlyMap<QualifiedName, readonly QualifiedName[]>,
    /** Parents and children in inheritance and partitioning, both ways. */
    private readonly family: ReadonlyMap<QualifiedName, readonly QualifiedName[]>,
    readonly builtinFunctions: ReadonlySet<string>,
    /** Functions outside pg_catalog that may write (VOLATILE), by bare and qualified name. */
    private readonly volatileFunctions: ReadonlySet<string>,
    /** Tables with triggers of their own, whose writes may write anywhere. */
    private readonly triggered: ReadonlySet<QualifiedName>,
    /** Views whose definition calls a function outside pg_catalog, directly or through other views. */
    private readonly opaqueViews: ReadonlySet<QualifiedName>,
  ) {}

  static async load(runner: QueryRunner): Promise<Catalog> {
    const [paths] = await runner.query(`SELECT current_schemas(false) AS path, current_schema() AS current`);
    const relations: RelationRow[] = await runner.query(
      `SELECT n.nspname AS schema, c.relname AS name, c.relkind AS kind
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'`,
    );
    const views: EdgeRow[] = await runner.query(
      `SELECT DISTINCT vn.nspname AS from_schema, v.relname AS from_name, tn.nspname AS to_schema, t.relname AS to_name
         FROM pg_rewrite r
         JOIN pg_class v ON v.oid = r.ev_class AND v.relkind = 'v'
         JOIN pg_namespace vn ON vn.oid = v.relnamespace
         JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
         JOIN pg_class t ON t.oid = d.refobjid AND t.oid <> v.oid
         JOIN pg_namespace tn ON tn.oid = t.relnamespace`,
    );
    const foreignKeys: (EdgeRow & { on_delete: boolean; on_update: boolean })[] = await runner.query(
      `SELECT pn.nspname AS from_schema, p.relname AS from_name, cn.nspname AS to_schema, c.relname AS to_name,
              con.confdeltype IN ('c', 'n', 'd') AS on_delete, con.confupdtype IN ('c', 'n', 'd') AS on_update
         FROM pg_constraint con
         JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
         JOIN pg_class p ON p.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
        WHERE con.contype = 'f'`,
    );
    const inherits: EdgeRow[] = await runner.query(
      `SELECT pn.nspname AS from_schema, p.relname AS from_name, cn.nspname AS to_schema, c.relname AS to_name
         FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
         JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace`,
    );
    const builtins: { name: string }[] = await runner.query(
      `SELECT DISTINCT proname AS name FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace`,
    );
    const volatile: { schema: string; name: string }[] = await runner.query(
      `SELECT DISTINCT n.nspname AS schema, p.proname AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.provolatile = 'v' AND n.nspname NOT IN ('pg_catalog', 'information_schema')`,
    );
    // User triggers, and rules on tables (a view's own rule is named _RETURN), may write elsewhere.
    const triggered: { schema: string; name: string }[] = await runner.query(
      `SELECT n.nspname AS schema, c.relname AS name FROM pg_trigger t
         JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal
       UNION
       SELECT n.nspname, c.relname FROM pg_rewrite r
         JOIN pg_class c ON c.oid = r.ev_class AND c.relkind IN ('r', 'p')
         JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE r.rulename <> '_RETURN'`,
    );
    const viewsCallingFunctions: { schema: string; name: string }[] = await runner.query(
      `SELECT DISTINCT vn.nspname AS schema, v.relname AS name
         FROM pg_rewrite r
         JOIN pg_class v ON v.oid = r.ev_class AND v.relkind IN ('v', 'm')
         JOIN pg_namespace vn ON vn.oid = v.relnamespace
         JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_proc'::regclass
         JOIN pg_proc p ON p.oid = d.refobjid
        WHERE p.pronamespace <> 'pg_catalog'::regnamespace`,
    );
    return new Catalog(
      parsePath(paths.path),
      paths.current ?? "public",
      new Map(relations.map((r) => [`${r.schema}.${r.name}`, r.kind])),
      graph(views),
      graph(foreignKeys.filter((fk) => fk.on_delete)),
      graph(foreignKeys.filter((fk) => fk.on_update)),
      graph(foreignKeys),
      graph([...inherits, ...inherits.map(reverse)]),
      new Set(builtins.map((b) => b.name)),
      new Set(volatile.flatMap((f) => [f.name, `${f.schema}.${f.name}`])),
      new Set(triggered.map((t) => `${t.schema}.${t.name}`)),
      new Set(viewsCallingFunctions.map((v) => `${v.schema}.${v.name}`)),
    );
  }

  /** Whether the name denotes a relation the catalog knew when it was read. */
  knows(ref: RelationName): boolean {
    return this.kinds.has(this.qualify(ref));
  }

  /** The relation an unqualified name means here: the first schema on the search path that has it. */
  qualify(ref: RelationName): QualifiedName {
    if (ref.schema) return `${ref.schema}.${ref.name}`;
    for (const schema of this.searchPath) {
      const name = `${schema}.${ref.name}`;
      if (this.kinds.has(name)) return name;
    }
    return `${this.currentSchema}.${ref.name}`;
  }

  /** The tables a read of `name` depends on: itself and, for a view, what it reads, recursively. */
  readDependencies(name: QualifiedName): QualifiedName[] {
    return closure([name], (n) => this.viewReads.get(n));
  }

  /**
   * The tables whose rows a write to `name` may change: itself, the tables a view writes through,
   * inheritance or partition relatives, and what foreign-key rules (CASCADE, SET NULL, SET DEFAULT)
   * carry a delete or update on to; a TRUNCATE ... CASCADE empties every referencing table.
   */
  writeDependencies(name: QualifiedName, kind: WriteKind | "truncate" | "truncate-cascade"): QualifiedName[] {
    const carried =
      kind === "truncate-cascade" ? [this.referencedBy]
      : kind === "delete" ? [this.deleteCascades]
      : kind === "update" ? [this.updateCascades]
      : kind === "merge" ? [this.deleteCascades, this.updateCascades]
      : [];
    return closure([name], (n) => [
      ...(this.viewReads.get(n) ?? []),
      ...(this.family.get(n) ?? []),
      ...carried.flatMap((edges) => edges.get(n) ?? []),
    ]);
  }

  /**
   * Whether a function name (bare or qualified) is one of PostgreSQL's own that reads no tables.
   * The *_to_xml family runs SQL given as text, so it may read anything.
   */
  isBuiltinFunction(name: string): boolean {
    const dot = name.lastIndexOf(".");
    const bare = dot >= 0 ? name.slice(dot + 1) : name;
    if (dot >= 0 && name.slice(0, dot) !== "pg_catalog") return false;
    if (/_to_xml/i.test(bare)) return false;
    return this.builtinFunctions.has(bare.toLowerCase()) || this.builtinFunctions.has(bare);
  }

  /** Whether calling this function (bare or qualified name) may write: a VOLATILE one outside pg_catalog. */
  mayWrite(functionName: string): boolean {
    return this.volatileFunctions.has(functionName);
  }

  /** Whether writing this table fires triggers or rules of its own, which may write other tables. */
  hasTriggers(name: QualifiedName): boolean {
    return this.triggered.has(name);
  }

  /** Whether reading this relation runs a function outside pg_catalog (a view that calls one). */
  callsFunctions(name: QualifiedName): boolean {
    return this.readDependencies(name).some((n) => this.opaqueViews.has(n));
  }
}

function parsePath(path: string[] | string): string[] {
  if (Array.isArray(path)) return path;
  return path.replace(/^\{|\}$/g, "").split(",").filter(Boolean).map((s) => s.replace(/^"|"$/g, ""));
}

function reverse(edge: EdgeRow): EdgeRow {
  return { from_schema: edge.to_schema, from_name: edge.to_name, to_schema: edge.from_schema, to_name: edge.from_name };
}

function graph(edges: readonly EdgeRow[]): Map<QualifiedName, QualifiedName[]> {
  const out = new Map<QualifiedName, QualifiedName[]>();
  for (const e of edges) {
    const from = `${e.from_schema}.${e.from_name}`;
    const list = out.get(from) ?? [];
    list.push(`${e.to_schema}.${e.to_name}`);
    out.set(from, list);
  }
  return out;
}

function closure(start: QualifiedName[], next: (name: QualifiedName) => readonly QualifiedName[] | undefined): QualifiedName[] {
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
