import type { Client } from "pg";
import { ChangeFeedSetupError } from "../errors";

/** How far the slot's consumer is behind the server, read from pg_replication_slots. */
export interface SlotLag {
  /** WAL bytes the server keeps for this slot: from its confirmed position to the current end. */
  readonly bytes: number;
  /** Whether a consumer (this instance or another) is connected to the slot. */
  readonly active: boolean;
  /** The server process serving that consumer. */
  readonly activePid: number | null;
}

export interface SlotNames {
  readonly slot: string;
  readonly publication: string;
}

const INSUFFICIENT_PRIVILEGE = "42501";
const DUPLICATE_OBJECT = "42710";

/**
 * Checks that the server can feed the slot, and creates the publication and the slot when they
 * are missing and `create` allows it. Every refusal says the SQL that fixes it. Two instances
 * creating the same slot at once is not an error: one wins, both use it.
 * @internal
 */
export async function prepareSlot(
  client: Client,
  names: SlotNames,
  create: boolean,
): Promise<void> {
  const [{ wal_level: walLevel }] = (await client.query(`SHOW wal_level`)).rows;
  if (walLevel !== "logical") {
    throw new ChangeFeedSetupError(
      `the server runs with wal_level=${walLevel}, and logical decoding needs wal_level=logical (a server restart)`,
      `ALTER SYSTEM SET wal_level = logical;  -- then restart PostgreSQL; on a managed service set its parameter instead`,
    );
  }
  const createPublication = `CREATE PUBLICATION ${quoteIdent(names.publication)} FOR ALL TABLES;`;
  const hasPublication =
    (await client.query(`SELECT 1 FROM pg_publication WHERE pubname = $1`, [names.publication]))
      .rowCount === 1;
  if (!hasPublication) {
    if (!create)
      throw new ChangeFeedSetupError(
        `the publication ${names.publication} does not exist`,
        createPublication,
      );
    await createOrExplain(
      client,
      createPublication,
      `this role may not create the publication ${names.publication}`,
    );
  }
  const createSlot = `SELECT pg_create_logical_replication_slot(${quoteLiteral(names.slot)}, 'pgoutput');`;
  const found = (
    await client.query(`SELECT plugin, database FROM pg_replication_slots WHERE slot_name = $1`, [
      names.slot,
    ])
  ).rows[0];
  if (!found) {
    if (!create)
      throw new ChangeFeedSetupError(
        `the replication slot ${names.slot} does not exist`,
        createSlot,
      );
    await createOrExplain(
      client,
      createSlot,
      `this role may not create the replication slot ${names.slot}`,
    );
    return;
  }
  if (found.plugin !== "pgoutput") {
    throw new ChangeFeedSetupError(
      `the replication slot ${names.slot} decodes with ${found.plugin}, and the feed reads pgoutput`,
      `SELECT pg_drop_replication_slot(${quoteLiteral(names.slot)}); ${createSlot}`,
    );
  }
  const [{ current }] = (await client.query(`SELECT current_database() AS current`)).rows;
  if (found.database !== current) {
    throw new ChangeFeedSetupError(
      `the replication slot ${names.slot} belongs to the database ${found.database}, not ${current}; name another slot, or connect to that database`,
      `${createSlot}  -- in ${current}, under another slot name`,
    );
  }
}

/** @internal */
export async function readLag(client: Client, slot: string): Promise<SlotLag | undefined> {
  const { rows } = await client.query(
    `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 AS bytes, active, active_pid
       FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  if (rows.length === 0) return undefined;
  return {
    bytes: Number(rows[0].bytes ?? 0),
    active: rows[0].active,
    activePid: rows[0].active_pid,
  };
}

/** Drops the slot (the server then keeps no WAL for it); a slot already gone is not an error.
 * @internal
 */
export async function dropSlot(client: Client, slot: string): Promise<void> {
  await client.query(
    `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
}

/** Whether a START_REPLICATION failed because another connection holds the slot. */
export function isSlotInUse(error: unknown): boolean {
  return (error as { code?: string }).code === "55006";
}

/** Whether the role may not open a replication connection at all. */
export function lacksReplication(error: unknown): boolean {
  const e = error as { code?: string; message?: string };
  return (
    e.code === "28000" ||
    e.code === INSUFFICIENT_PRIVILEGE ||
    /replication role|permission denied to start WAL sender/i.test(e.message ?? "")
  );
}

async function createOrExplain(client: Client, sql: string, problem: string): Promise<void> {
  try {
    await client.query(sql);
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === DUPLICATE_OBJECT) return;
    if (code === INSUFFICIENT_PRIVILEGE)
      throw new ChangeFeedSetupError(`${problem} (${(error as Error).message})`, sql);
    throw error;
  }
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function quoteLiteral(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}
