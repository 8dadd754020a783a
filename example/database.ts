import { Client } from "pg";
import { DataSource } from "typeorm";
import { QueryCacheSubscriber } from "../lib";
import { entities } from "./entities";
import { SqlCounter } from "./sql-counter";

/** The example's own PostgreSQL schema: it is dropped and rebuilt on every run, and nothing else is touched. */
export const SCHEMA = "autocache_example";

/**
 * Rebuilds the example's schema and opens a DataSource on it, with QueryCacheSubscriber (which
 * lets the cache see every statement) and SqlCounter (which lets the example count them).
 */
export async function openDatabase(pgUrl: string): Promise<DataSource> {
  const client = new Client({ connectionString: pgUrl });
  await client.connect().catch((error: { code?: string; message: string }) => {
    // 3D000: the database named by the URL does not exist (the default, `test`, is not created by PostgreSQL).
    if (error.code !== "3D000") throw error;
    const name = new URL(pgUrl).pathname.slice(1);
    throw new Error(
      `${error.message}: create it (createdb -U postgres ${name}) or set PG_URL to another database.`,
    );
  });
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
    await client.query(`CREATE SCHEMA "${SCHEMA}"`);
  } finally {
    await client.end();
  }

  const dataSource = new DataSource({
    type: "postgres",
    url: pgUrl,
    schema: SCHEMA,
    entities,
    subscribers: [QueryCacheSubscriber, SqlCounter],
    synchronize: true,
    logging: false,
  });
  await dataSource.initialize();

  try {
    // Used by PostRepository.popular(): it reads comment out of the cache's sight.
    await dataSource.query(
      `CREATE FUNCTION "${SCHEMA}".comment_count(post_id integer) RETURNS integer LANGUAGE sql STABLE
         AS $$ SELECT count(*)::integer FROM "${SCHEMA}".comment WHERE "postId" = post_id $$`,
    );
  } catch (error) {
    await dataSource.destroy();
    throw error;
  }
  return dataSource;
}
