/**
 * What a freshness run did, and the checker that judges it.
 *
 * Every write to the workload's tables is logged by triggers (schema.ts) inside the writing
 * transaction, so the log holds exactly the committed writes: a rolled-back transaction, or the
 * part of one rolled back to a savepoint, leaves nothing. Each logged row version carries a
 * row_seq, unique across the run, which the row itself stores; a read that returns a row tells
 * the checker exactly which committed write (if any) produced what it saw.
 *
 * Per row, the log's order is the commit order: two writes to one row are serialized by its row
 * lock, its unique index or TRUNCATE's table lock, and the later one logs after the earlier one
 * committed. Times are taken in this process around each call (ms since the run began).
 *
 * The rule, for each key a read covers: every write whose call had RETURNED before the read
 * STARTED must be visible to it; writes that committed while it ran may or may not be. So the
 * states a read may legitimately see for a key are the state left by the newest required write
 * (or "no row" when none was required), and every committed state after it that could have been
 * committed before the read ended. A read that saw anything older is stale; one that saw a row
 * version no committed write produced, an intermediate state of a transaction, or data whose
 * transaction had not even sent its COMMIT when the read ended, is dirty.
 */

/** A row as the triggers logged it, with the database's column names. */
export type RowState = Readonly<Record<string, unknown>>;

export interface WriteRecord {
  readonly id: string;
  /** The path and how it ran, e.g. "tx[update, savepoint[delete] rolled back] commit". */
  readonly label: string;
  readonly start: number;
  /** No COMMIT was sent before this moment: nobody could see the write's data earlier. */
  readonly commitFrom: number;
  /** When the call that committed it, or gave up, returned. */
  readonly end: number;
  readonly outcome: "committed" | "rolled back" | "failed";
  readonly error?: string;
  /** The write paths it ran, e.g. ["update", "softRemove"]. */
  readonly steps?: readonly string[];
}

export interface ReadRecord {
  readonly id: string;
  /** The method, its arguments and the application instance, e.g. "app2 inGroup(1)". */
  readonly label: string;
  readonly start: number;
  readonly end: number;
  readonly observations: readonly Observation[];
}

export type Observation = RowsObservation | CountObservation | PresenceObservation;

/** Rows a read returned, each by key and the row_seq stamped by the write that produced it. */
export interface RowsObservation {
  readonly kind: "rows";
  readonly table: string;
  readonly rows: readonly { readonly key: string; readonly rowSeq: number }[];
  /** When given, the read promised every row matching it: a matching row not returned was missed. */
  readonly filter?: (state: RowState) => boolean;
  /** The only keys the filter can match, to spare the checker the others. */
  readonly scope?: readonly string[];
}

/** The number of rows matching a filter. */
export interface CountObservation {
  readonly kind: "count";
  readonly table: string;
  readonly count: number;
  readonly filter: (state: RowState) => boolean;
  readonly scope?: readonly string[];
}

/** Rows without a row_seq (junction rows): which keys matching the filter were there. */
export interface PresenceObservation {
  readonly kind: "presence";
  readonly table: string;
  readonly keys: readonly string[];
  readonly filter: (state: RowState) => boolean;
  readonly scope?: readonly string[];
}

/** One row of the trigger log. */
export interface LogEntry {
  readonly ord: number;
  readonly table: string;
  /** The primary key ("3", or "3,5" for a junction row); null for a TRUNCATE. */
  readonly key: string | null;
  readonly kind: "insert" | "update" | "delete" | "truncate";
  readonly rowSeq: number | null;
  /** The row after the write; null for a delete or a truncate. */
  readonly state: RowState | null;
  /** The write operation that made it, as the writer labelled its session or the row. */
  readonly op: string | null;
  readonly txid: string;
}

/** What was wrong with one read: each key it saw too old (or too early), one detail apiece. */
export interface Violation {
  readonly kind: "stale" | "dirty";
  readonly read: string;
  readonly details: readonly string[];
}

export interface Verdict {
  /** Reads that missed a write they were required to see, one entry per read. */
  readonly stale: Violation[];
  /** Reads that saw uncommitted or rolled-back data, one entry per read. */
  readonly dirty: Violation[];
  /** Logged writes no recorded operation claims: a harness fault, which weakens the check. */
  readonly unattributed: LogEntry[];
}

interface Finding {
  readonly kind: Violation["kind"];
  readonly detail: string;
}

/** A committed state of one key: what one logged write (or truncate) left. */
interface Version {
  readonly entry: LogEntry;
  readonly op: WriteRecord;
  /** The row, or null when the write left none. */
  readonly state: RowState | null;
  /** Whether it is the last state its transaction left this key in: only those were ever visible. */
  final: boolean;
}

/** Stands for the writer of an entry no recorded operation claims: never required, always possible. */
const UNKNOWN_WRITER: WriteRecord = {
  id: "?",
  label: "an unrecorded write",
  start: -Infinity,
  commitFrom: -Infinity,
  end: Infinity,
  outcome: "committed",
};

export function checkHistory(
  writes: readonly WriteRecord[],
  reads: readonly ReadRecord[],
  log: readonly LogEntry[],
): Verdict {
  return new Checker(writes, log).check(reads);
}

class Checker {
  /** table -> key -> committed states in commit order, TRUNCATEs of the table included. */
  private readonly histories = new Map<string, Map<string, Version[]>>();
  private readonly bySeq = new Map<number, { table: string; key: string; version: Version }>();
  private readonly unattributed: LogEntry[] = [];

  constructor(writes: readonly WriteRecord[], log: readonly LogEntry[]) {
    const ops = new Map(writes.map((w) => [w.id, w]));
    const rows = new Map<string, Map<string, Version[]>>();
    const truncates = new Map<string, Version[]>();
    for (const entry of [...log].sort((a, b) => a.ord - b.ord)) {
      let op = entry.op === null ? undefined : ops.get(entry.op);
      if (!op) {
        this.unattributed.push(entry);
        op = UNKNOWN_WRITER;
      }
      const version: Version = {
        entry,
        op,
        state: entry.kind === "insert" || entry.kind === "update" ? entry.state : null,
        final: true,
      };
      if (entry.kind === "truncate" || entry.key === null) {
        listOf(truncates, entry.table).push(version);
      } else {
        listOf(mapOf(rows, entry.table), entry.key).push(version);
      }
    }
    for (const table of new Set([...rows.keys(), ...truncates.keys()])) {
      const keys = new Map<string, Version[]>();
      for (const [key, versions] of rows.get(table) ?? []) {
        const merged = mergeByOrder(versions, truncates.get(table) ?? []);
        markFinal(merged);
        keys.set(key, merged);
        for (const version of versions) {
          if (version.entry.rowSeq !== null)
            this.bySeq.set(version.entry.rowSeq, { table, key, version });
        }
      }
      this.histories.set(table, keys);
    }
  }

  check(reads: readonly ReadRecord[]): Verdict {
    const verdict: Verdict = { stale: [], dirty: [], unattributed: this.unattributed };
    for (const read of reads) {
      const found = read.observations.flatMap((o) => this.checkObservation(read, o));
      for (const kind of ["stale", "dirty"] as const) {
        const details = found.filter((f) => f.kind === kind).map((f) => f.detail);
        if (details.length > 0) verdict[kind].push({ kind, read: describeRead(read), details });
      }
    }
    return verdict;
  }

  private checkObservation(read: ReadRecord, o: Observation): Finding[] {
    switch (o.kind) {
      case "rows":
        return this.checkRows(read, o);
      case "count":
        return this.checkCount(read, o);
      case "presence":
        return this.checkPresence(read, o);
    }
  }

  private checkRows(read: ReadRecord, o: RowsObservation): Finding[] {
    const out: Finding[] = [];
    const flag = (kind: Finding["kind"], detail: string) => out.push({ kind, detail });
    for (const row of o.rows) {
      const where = `${o.table} ${row.key}`;
      const found = this.bySeq.get(row.rowSeq);
      if (!found || found.table !== o.table || found.key !== row.key) {
        flag(
          "dirty",
          `${where}: saw row_seq ${row.rowSeq}, which no committed write produced (rolled back, or rolled back to a savepoint)`,
        );
        continue;
      }
      const seen = found.version;
      if (!seen.final) {
        flag(
          "dirty",
          `${where}: saw ${describeVersion(seen)}, a state its transaction overwrote before committing`,
        );
      } else if (seen.op.commitFrom > read.end) {
        flag(
          "dirty",
          `${where}: saw ${describeVersion(seen)}, whose COMMIT was not sent until ${ms(seen.op.commitFrom)}, after the read ended`,
        );
      } else {
        const { required } = this.window(this.history(o.table, row.key), read);
        if (required && seen.entry.ord < required.entry.ord) {
          flag(
            "stale",
            `${where}: saw ${describeVersion(seen)}, but ${describeRequired(required, read)}`,
          );
        }
      }
    }
    if (o.filter) {
      const returned = new Set(o.rows.map((r) => r.key));
      for (const key of o.scope ?? this.keys(o.table)) {
        if (returned.has(key)) continue;
        const { required, candidates } = this.window(this.history(o.table, key), read);
        if (required && !candidates.some((s) => !matches(o.filter!, s))) {
          flag(
            "stale",
            `${o.table} ${key}: missing from the result, but ${describeRequired(required, read)}, which matches, and nothing committed since could hide it`,
          );
        }
      }
    }
    return out;
  }

  private checkCount(read: ReadRecord, o: CountObservation): Finding[] {
    let surely = 0;
    let possibly = 0;
    const kept: string[] = [];
    const gone: string[] = [];
    for (const key of o.scope ?? this.keys(o.table)) {
      const history = this.history(o.table, key);
      const { required, candidates } = this.window(history, read);
      const matching = candidates.filter((s) => matches(o.filter, s)).length;
      if (matching === candidates.length) surely++;
      if (matching > 0) possibly++;
      if (!required) continue;
      // The keys that explain a count out of bounds: which writes the read should have seen.
      if (matching === candidates.length) kept.push(`${key}: ${describeRequired(required, read)}`);
      else if (
        matching === 0 &&
        history.some(
          (v) => v.final && v.entry.ord < required.entry.ord && matches(o.filter, v.state),
        )
      ) {
        gone.push(`${key}: ${describeRequired(required, read)}`);
      }
    }
    if (o.count >= surely && o.count <= possibly) return [];
    const because =
      o.count < surely
        ? `rows that had to be counted: ${kept.slice(0, 5).join("; ")}`
        : `rows no longer matching: ${gone.slice(0, 5).join("; ")}`;
    return [
      {
        kind: "stale",
        detail: `${o.table}: counted ${o.count}, but from the writes returned before the read started and those that committed during it, between ${surely} and ${possibly} rows matched; ${because}`,
      },
    ];
  }

  private checkPresence(read: ReadRecord, o: PresenceObservation): Finding[] {
    const out: Finding[] = [];
    const returned = new Set(o.keys);
    for (const key of new Set([...(o.scope ?? this.keys(o.table)), ...o.keys])) {
      const history = this.history(o.table, key);
      const { required, candidates } = this.window(history, read);
      if (returned.has(key) && !candidates.some((s) => matches(o.filter, s))) {
        const earlier =
          required &&
          history.some(
            (v) => v.final && matches(o.filter, v.state) && v.entry.ord < required.entry.ord,
          );
        out.push(
          earlier
            ? {
                kind: "stale",
                detail: `${o.table} ${key}: saw it, but ${describeRequired(required, read)}`,
              }
            : {
                kind: "dirty",
                detail: `${o.table} ${key}: saw it, but no committed write that could be visible created it`,
              },
        );
      }
      if (!returned.has(key) && required && !candidates.some((s) => !matches(o.filter, s))) {
        out.push({
          kind: "stale",
          detail: `${o.table} ${key}: missing, but ${describeRequired(required, read)}`,
        });
      }
    }
    return out;
  }

  /**
   * The newest committed state the read must see (its writer returned before the read started),
   * and every state the read may legitimately have seen: that one (or no row, when nothing was
   * required yet) and those committed after it that could have committed before the read ended.
   */
  private window(
    history: readonly Version[],
    read: ReadRecord,
  ): { required?: Version; candidates: (RowState | null)[] } {
    let required: Version | undefined;
    for (const v of history) if (v.final && v.op.end < read.start) required = v;
    const candidates: (RowState | null)[] = [required ? required.state : null];
    const after = required ? required.entry.ord : -Infinity;
    for (const v of history)
      if (v.final && v.entry.ord > after && v.op.commitFrom < read.end) candidates.push(v.state);
    return { required, candidates };
  }

  private history(table: string, key: string): readonly Version[] {
    return this.histories.get(table)?.get(key) ?? [];
  }

  private keys(table: string): Iterable<string> {
    return this.histories.get(table)?.keys() ?? [];
  }
}

function matches(filter: (state: RowState) => boolean, state: RowState | null): boolean {
  return state !== null && filter(state);
}

function mergeByOrder(a: readonly Version[], b: readonly Version[]): Version[] {
  return [...a, ...b.map((v) => ({ ...v }))].sort((x, y) => x.entry.ord - y.entry.ord);
}

/** Marks as not final every state its own transaction replaced later (on this key). */
function markFinal(history: Version[]): void {
  const later = new Set<string>();
  for (let i = history.length - 1; i >= 0; i--) {
    const v = history[i];
    v.final = !later.has(v.entry.txid);
    later.add(v.entry.txid);
  }
}

function listOf<K, V>(map: Map<K, V[]>, key: K): V[] {
  let list = map.get(key);
  if (!list) map.set(key, (list = []));
  return list;
}

function mapOf<K, K2, V>(map: Map<K, Map<K2, V>>, key: K): Map<K2, V> {
  let inner = map.get(key);
  if (!inner) map.set(key, (inner = new Map()));
  return inner;
}

function ms(t: number): string {
  return `${t.toFixed(2)} ms`;
}

function describeRead(read: ReadRecord): string {
  return `${read.label} #${read.id} [${ms(read.start)} .. ${ms(read.end)}]`;
}

function describeVersion(v: Version): string {
  const what =
    v.state === null
      ? `the ${v.entry.kind}`
      : `version ${String(v.state.version ?? "?")} (row_seq ${v.entry.rowSeq})`;
  return `${what} by ${v.op.label} #${v.op.id} [${ms(v.op.start)} .. ${ms(v.op.end)}]`;
}

function describeRequired(required: Version, read: ReadRecord): string {
  const left =
    required.state === null
      ? "left no row"
      : `wrote version ${String(required.state.version ?? "?")} (row_seq ${required.entry.rowSeq})`;
  return `${required.op.label} #${required.op.id} ${left} and returned at ${ms(required.op.end)}, ${(read.start - required.op.end).toFixed(2)} ms before the read started`;
}
