import { DataSource } from "typeorm";
import { QueryCacheSubscriber } from "../../lib";
import { freshnessEntities, TABLES } from "./entities";
import type { LogEntry } from "./history";

/**
 * Session settings for the workload's connections. Durability is not under test, and visibility
 * is the same without waiting for the WAL flush. Writers and TRUNCATE do deadlock now and then
 * (which is fine: the victim rolls back); where the role may, deadlocks are found after 50 ms
 * rather than a second, so they stall the run less.
 */
export async function sessionOptions(pgUrl: string): Promise<string> {
  const admin = new DataSource({ type: "postgres", url: pgUrl });
  await admin.initialize();
  try {
    const [{ superuser }] = await admin.query(
      `SELECT rolsuper AS superuser FROM pg_roles WHERE rolname = current_user`,
    );
    return `-c synchronous_commit=off${superuser ? " -c deadlock_timeout=50ms" : ""}`;
  } finally {
    await admin.destroy();
  }
}

/** A DataSource on the workload's tables, in `schema`; the first one creates them. */
export async function openFreshnessDataSource(
  pgUrl: string,
  schema: string,
  create: boolean,
  options: string,
): Promise<DataSource> {
  if (create) {
    const admin = new DataSource({ type: "postgres", url: pgUrl });
    await admin.initialize();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.query(`CREATE SCHEMA "${schema}"`);
    await admin.destroy();
  }
  const dataSource = new DataSource({
    type: "postgres",
    url: pgUrl,
    schema,
    entities: freshnessEntities,
    subscribers: [QueryCacheSubscriber],
    synchronize: create,
    logging: false,
    extra: { max: 12, options },
  });
  await dataSource.initialize();
  if (create) for (const sql of triggerSql(schema)) await dataSource.query(sql);
  return dataSource;
}

export async function dropSchema(pgUrl: string, schema: string): Promise<void> {
  const admin = new DataSource({ type: "postgres", url: pgUrl });
  await admin.initialize();
  await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await admin.destroy();
}

/**
 * Triggers that make every write checkable whatever path it took, cascades and TRUNCATE included.
 * Before a row is written it gets the next row_seq and its version + 1; after, the write is
 * logged, in the same transaction, with the session's "fr.op" label (or, for writes sent through
 * a pooled connection, the row's tag) and the transaction id. The log's order is taken AFTER the
 * row is written, so of two conflicting writes the one that waited for the other logs later.
 *
 * The library reads these triggers' PL/pgSQL and sees that they write only fr_log (and the row
 * itself), so a write invalidates its own table and the log: the run checks freshness under
 * per-table invalidation, cascades included.
 */
function triggerSql(schema: string): string[] {
  const q = (name: string) => `"${schema}"."${name}"`;
  const seq = `nextval('${q("fr_seq").replace(/'/g, "''")}')`;
  const label = `nullif(current_setting('fr.op', true), '')`;
  const rowTables = [TABLES.account, TABLES.item, TABLES.label];
  return [
    `CREATE SEQUENCE ${q("fr_seq")}`,
    `CREATE TABLE ${q("fr_log")} (
       ord bigint PRIMARY KEY, tbl text NOT NULL, key text, kind text NOT NULL,
       row_seq bigint, state jsonb, op text, txid bigint NOT NULL)`,
    `CREATE FUNCTION ${q("fr_stamp")}() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       NEW.row_seq := ${seq};
       IF TG_OP = 'UPDATE' THEN NEW.version := OLD.version + 1; ELSE NEW.version := 1; END IF;
       RETURN NEW;
     END $$`,
    `CREATE FUNCTION ${q("fr_log_row")}() RETURNS trigger LANGUAGE plpgsql AS $$
     DECLARE
       j jsonb;
       k text := '';
     BEGIN
       IF TG_OP = 'DELETE' THEN j := to_jsonb(OLD); ELSE j := to_jsonb(NEW); END IF;
       FOR i IN 0 .. TG_NARGS - 1 LOOP
         k := k || CASE WHEN i > 0 THEN ',' ELSE '' END || (j ->> TG_ARGV[i]);
       END LOOP;
       INSERT INTO ${q("fr_log")} VALUES (
         ${seq}, TG_TABLE_NAME, k, lower(TG_OP),
         CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE (j ->> 'row_seq')::bigint END,
         CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE j END,
         coalesce(${label}, CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE j ->> 'tag' END),
         txid_current());
       RETURN NULL;
     END $$`,
    `CREATE FUNCTION ${q("fr_log_truncate")}() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       INSERT INTO ${q("fr_log")} VALUES (${seq}, TG_TABLE_NAME, NULL, 'truncate', NULL, NULL, ${label}, txid_current());
       RETURN NULL;
     END $$`,
    ...rowTables.flatMap((t) => [
      `CREATE TRIGGER fr_stamp BEFORE INSERT OR UPDATE ON ${q(t)} FOR EACH ROW EXECUTE FUNCTION ${q("fr_stamp")}()`,
      `CREATE TRIGGER fr_log AFTER INSERT OR UPDATE OR DELETE ON ${q(t)} FOR EACH ROW EXECUTE FUNCTION ${q("fr_log_row")}('id')`,
    ]),
    `CREATE TRIGGER fr_log AFTER INSERT OR UPDATE OR DELETE ON ${q(TABLES.accountLabel)}
       FOR EACH ROW EXECUTE FUNCTION ${q("fr_log_row")}('account_id', 'label_id')`,
    ...[...rowTables, TABLES.accountLabel].map(
      (t) =>
        `CREATE TRIGGER fr_truncate AFTER TRUNCATE ON ${q(t)} FOR EACH STATEMENT EXECUTE FUNCTION ${q("fr_log_truncate")}()`,
    ),
  ];
}

/** The committed writes, in log order. */
export async function readLog(dataSource: DataSource, schema: string): Promise<LogEntry[]> {
  const rows: {
    ord: string;
    tbl: string;
    key: string | null;
    kind: LogEntry["kind"];
    row_seq: string | null;
    state: Record<string, unknown> | null;
    op: string | null;
    txid: string;
  }[] = await dataSource.query(
    `SELECT ord, tbl, key, kind, row_seq, state, op, txid FROM "${schema}"."fr_log" ORDER BY ord`,
  );
  return rows.map((r) => ({
    ord: Number(r.ord),
    table: r.tbl,
    key: r.key,
    kind: r.kind,
    rowSeq: r.row_seq === null ? null : Number(r.row_seq),
    state: r.state,
    op: r.op,
    txid: r.txid,
  }));
}
