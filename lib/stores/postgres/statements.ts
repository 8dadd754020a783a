import { createHash } from "node:crypto";

/**
 * The SQL of a PostgresStore, for one schema. Tables are UNLOGGED (no WAL: a cache needs no
 * durability, and PostgreSQL empties them after a crash, which the version rules treat like a
 * Redis restart). The clock is the row of the versions table keyed by the clock key, so a
 * TRUNCATE or a crash that loses versions loses the clock with them, and it comes back above the
 * server's time in µs, past every stamp it handed out before.
 */
export class Statements {
  readonly setup: string;
  readonly lookup: string;
  readonly stamp: string;
  readonly set: string;
  readonly bump: string;
  readonly delete: string;
  readonly deleteExpired: string;
  readonly clearEntries: string;
  readonly clearVersions: string;
  readonly sweep: string;
  /** Names prepared statements per schema, since each connection keeps them by name. */
  readonly prefix: string;

  constructor(readonly schema: string) {
    const s = quoteIdent(schema);
    const versions = `${s}.autocache_versions`;
    const entries = `${s}.autocache_entries`;
    this.prefix = `autocache_${createHash("sha1").update(schema).digest("hex").slice(0, 12)}_`;
    this.setup = `
      CREATE SCHEMA IF NOT EXISTS ${s};
      CREATE UNLOGGED TABLE IF NOT EXISTS ${versions} (key text PRIMARY KEY, version bigint NOT NULL);
      CREATE UNLOGGED TABLE IF NOT EXISTS ${entries} (
        key text PRIMARY KEY, stamp bigint NOT NULL, deps text[] NOT NULL, value bytea NOT NULL, expires_at timestamptz NOT NULL);
      CREATE INDEX IF NOT EXISTS autocache_entries_expiry ON ${entries} (expires_at);

      -- A version above every stamp handed out so far, recorded as the new clock; at least the
      -- server's time in µs, so a lost clock comes back above the stamps it handed out.
      CREATE OR REPLACE FUNCTION ${s}.autocache_next_version(clock_key text) RETURNS bigint LANGUAGE sql AS $$
        INSERT INTO ${versions} AS c (key, version)
        VALUES (clock_key, floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
        ON CONFLICT (key) DO UPDATE SET version = greatest(c.version + 1, excluded.version)
        RETURNING version
      $$;

      -- Moves the clock, then every named version up to it, never down. Every caller locks the
      -- clock row first and the versions in key order, so concurrent bumps cannot deadlock.
      CREATE OR REPLACE FUNCTION ${s}.autocache_raise(clock_key text, keys text[]) RETURNS bigint LANGUAGE plpgsql AS $$
      DECLARE v bigint := ${s}.autocache_next_version(clock_key);
      BEGIN
        INSERT INTO ${versions} AS o (key, version)
          SELECT k, v FROM unnest(keys) AS k WHERE k IS DISTINCT FROM clock_key ORDER BY k
          ON CONFLICT (key) DO UPDATE SET version = greatest(o.version, excluded.version);
        RETURN v;
      END $$;

      -- The admission decision (today's rule): refuse an entry when a version moved past its
      -- stamp, or when the clock or a version is missing; a missing one may have been bumped and
      -- lost to a TRUNCATE or a crash, so it is created above every stamp handed out, and the next
      -- computation, stamped after it, is admitted.
      CREATE OR REPLACE FUNCTION ${s}.autocache_admit(clock_key text, deps text[], stamp bigint) RETURNS boolean LANGUAGE plpgsql AS $$
      DECLARE missing text[]; outdated boolean; clock_missing boolean;
      BEGIN
        SELECT coalesce(array_agg(d.key) FILTER (WHERE v.version IS NULL), '{}'), coalesce(bool_or(v.version > stamp), false)
          INTO missing, outdated
          FROM unnest(deps) AS d(key) LEFT JOIN ${versions} v ON v.key = d.key;
        clock_missing := NOT EXISTS (SELECT 1 FROM ${versions} WHERE key = clock_key);
        IF clock_missing OR cardinality(missing) > 0 THEN
          PERFORM ${s}.autocache_raise(clock_key, missing);
          RETURN false;
        END IF;
        RETURN NOT outdated;
      END $$;`;
    // One statement, so the entry, the clock and the versions are read in one snapshot; each
    // version by its primary key (a join would scan the versions table, which grows with the tables).
    this.lookup = `
      SELECT c.version AS clock, e.stamp, e.deps, e.value, e.expires_at <= now() AS expired,
             ARRAY(SELECT (SELECT v.version FROM ${versions} v WHERE v.key = d.key)
                     FROM unnest(e.deps) WITH ORDINALITY AS d(key, n) ORDER BY d.n) AS versions
        FROM (VALUES ($1::text, $2::text)) AS wanted(key, clock)
        LEFT JOIN ${entries} e ON e.key = wanted.key
        LEFT JOIN ${versions} c ON c.key = wanted.clock`;
    this.stamp = `SELECT version FROM ${versions} WHERE key = $1`;
    this.set = `
      INSERT INTO ${entries} (key, stamp, deps, value, expires_at)
        SELECT $1, $2, $3, $4, now() + make_interval(secs => $5) WHERE ${s}.autocache_admit($6, $3, $2)
        ON CONFLICT (key) DO UPDATE
          SET stamp = excluded.stamp, deps = excluded.deps, value = excluded.value, expires_at = excluded.expires_at`;
    this.bump = `SELECT ${s}.autocache_raise($1, $2)`;
    this.delete = `DELETE FROM ${entries} WHERE key = $1`;
    this.deleteExpired = `DELETE FROM ${entries} WHERE key = $1 AND expires_at <= now()`;
    this.clearEntries = `DELETE FROM ${entries} WHERE left(key, length($1)) = $1`;
    this.clearVersions = `SELECT ${s}.autocache_raise($1, ARRAY(SELECT key FROM ${versions} WHERE left(key, length($2)) = $2))`;
    this.sweep = `DELETE FROM ${entries} WHERE expires_at <= now()`;
  }
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
