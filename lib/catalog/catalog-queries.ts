import type { SqlReader } from "./catalog-connection";

// The rows the Catalog is built from, one query each, read in the caller's snapshot.

export interface RelationRow {
  schema: string;
  name: string;
  kind: string;
}
export interface EdgeRow {
  from_schema: string;
  from_name: string;
  to_schema: string;
  to_name: string;
}
export interface TriggerRow {
  trigger: string;
  schema: string;
  name: string;
  type: number;
  definition: string;
  function: string;
  function_schema: string;
  function_name: string;
  language: string;
  function_definition: string | null;
  search_path: string | null;
}
export interface RuleRow {
  rule: string;
  schema: string;
  name: string;
  event: string;
}

/** Every catalog row the Catalog needs, read on the library's own connection. */
export async function readCatalogRows(reader: SqlReader) {
  const [paths] = await reader.query<{
    path: string[] | string;
    current: string | null;
    role: string;
  }>(`SELECT current_schemas(false) AS path, current_schema() AS current, current_user AS role`);
  const namespaces = await reader.query<{ name: string }>(
    `SELECT nspname AS name FROM pg_namespace`,
  );
  const relations: RelationRow[] = await reader.query(
    `SELECT n.nspname AS schema, c.relname AS name, c.relkind AS kind
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'`,
  );
  const views: EdgeRow[] = await reader.query(
    `SELECT DISTINCT vn.nspname AS from_schema, v.relname AS from_name, tn.nspname AS to_schema, t.relname AS to_name
         FROM pg_rewrite r
         JOIN pg_class v ON v.oid = r.ev_class AND v.relkind = 'v'
         JOIN pg_namespace vn ON vn.oid = v.relnamespace
         JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
         JOIN pg_class t ON t.oid = d.refobjid AND t.oid <> v.oid
         JOIN pg_namespace tn ON tn.oid = t.relnamespace`,
  );
  const foreignKeys: (EdgeRow & { on_delete: string; on_update: string })[] = await reader.query(
    `SELECT pn.nspname AS from_schema, p.relname AS from_name, cn.nspname AS to_schema, c.relname AS to_name,
              con.confdeltype AS on_delete, con.confupdtype AS on_update
         FROM pg_constraint con
         JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
         JOIN pg_class p ON p.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
        WHERE con.contype = 'f'`,
  );
  const inherits: EdgeRow[] = await reader.query(
    `SELECT pn.nspname AS from_schema, p.relname AS from_name, cn.nspname AS to_schema, c.relname AS to_name
         FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace cn ON cn.oid = c.relnamespace
         JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace`,
  );
  const builtins: { name: string }[] = await reader.query(
    `SELECT DISTINCT proname AS name FROM pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace`,
  );
  const volatile: { schema: string; name: string }[] = await reader.query(
    `SELECT DISTINCT n.nspname AS schema, p.proname AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE p.provolatile = 'v' AND n.nspname NOT IN ('pg_catalog', 'information_schema')`,
  );
  // Foreign keys are carried out by internal triggers; the user's own may write elsewhere.
  const triggerRows: TriggerRow[] = await reader.query(
    `SELECT t.tgname AS trigger, n.nspname AS schema, c.relname AS name, t.tgtype::int AS type,
              pg_get_triggerdef(t.oid) AS definition, p.oid::text AS function,
              pn.nspname AS function_schema, p.proname AS function_name, l.lanname AS language,
              CASE WHEN l.lanname = 'plpgsql' THEN pg_get_functiondef(p.oid) END AS function_definition,
              (SELECT substr(s, 13) FROM unnest(p.proconfig) s WHERE starts_with(s, 'search_path=')) AS search_path
         FROM pg_trigger t
         JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_namespace pn ON pn.oid = p.pronamespace
         JOIN pg_language l ON l.oid = p.prolang
        WHERE NOT t.tgisinternal`,
  );
  // A view's own rule is named _RETURN; other rules, on tables or views, may write elsewhere.
  const ruleRows: RuleRow[] = await reader.query(
    `SELECT r.rulename AS rule, n.nspname AS schema, c.relname AS name, r.ev_type AS event FROM pg_rewrite r
         JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE r.rulename <> '_RETURN' AND n.nspname NOT IN ('pg_catalog', 'information_schema')`,
  );
  const viewsCallingFunctions: { schema: string; name: string }[] = await reader.query(
    `SELECT DISTINCT vn.nspname AS schema, v.relname AS name
         FROM pg_rewrite r
         JOIN pg_class v ON v.oid = r.ev_class AND v.relkind IN ('v', 'm')
         JOIN pg_namespace vn ON vn.oid = v.relnamespace
         JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_proc'::regclass
         JOIN pg_proc p ON p.oid = d.refobjid
        WHERE p.pronamespace <> 'pg_catalog'::regnamespace`,
  );
  return {
    paths,
    namespaces,
    relations,
    views,
    foreignKeys,
    inherits,
    builtins,
    volatile,
    triggerRows,
    ruleRows,
    viewsCallingFunctions,
  };
}
