import { createHash } from "node:crypto";
import type { SqlReader } from "./catalog-connection";

/** Who the database is, for keys: two DataSources share entries only when these agree. */
export interface DatabaseIdentity {
  /** The server and database: tables of the same name elsewhere are other tables. */
  readonly database: string;
  /**
   * The database, the connection's current schema and the DataSource's `schema` option (which
   * TypeORM writes into the SQL rather than the search path): a tenant schema gets entries of its own.
   */
  readonly scope: string;
}

/**
 * Reads the identity from the server itself, so two applications that reach one database by
 * different host names still share invalidations: the cluster's system identifier where the role
 * may read it, else the server's address and port, plus the database's name and oid.
 */
export async function readIdentity(
  runner: SqlReader,
  schemaOption: string | undefined,
  override?: string,
): Promise<DatabaseIdentity> {
  const [row] = await runner.query<{ name: string; oid: string; schema: string; address: string }>(
    `SELECT current_database() AS name, d.oid::text AS oid, current_schema() AS schema,
            coalesce(host(inet_server_addr()), 'local') || ':' || coalesce(inet_server_port()::text, '') AS address
       FROM pg_database d WHERE d.datname = current_database()`,
  );
  // Read only where the role may: a failed query would cost the library its connection.
  const [allowed] = await runner.query<{ ok: boolean }>(
    `SELECT has_function_privilege('pg_control_system()', 'EXECUTE') AS ok`,
  );
  const [control] =
    allowed.ok && !override
      ? await runner.query<{ id: string }>(
          `SELECT system_identifier::text AS id FROM pg_control_system()`,
        )
      : [];
  // Without the privilege the address stands in; databaseId pins it where that is not enough.
  const server = control?.id ?? row.address;
  const database = override ?? digest(`${server}/${row.name}/${row.oid}`);
  return { database, scope: digest(`${database}/${row.schema}/${schemaOption ?? ""}`) };
}

function digest(text: string): string {
  return createHash("sha1").update(text).digest("base64url").slice(0, 12);
}
