import type { RelationName } from "../sql/statement-effects";
import type { CommittedTransaction, RowChange } from "./transactions";

/**
 * Committed transactions whose invalidations are not delivered yet, merged into one delivery:
 * commits that arrive while a delivery is under way (or while the store is down) cost one store
 * round trip together, and the slot may then move to the last of them.
 */
export interface Batch {
  /** Every table written, "schema.table". */
  readonly tables: Map<string, RelationName>;
  /** Their rows, or undefined once more than the bound arrived: then whole tables count. */
  rows: RowChange[] | undefined;
  /** Tables truncated: all their rows changed. */
  readonly truncated: Map<string, RelationName>;
  relationsChanged: boolean;
  /** Where the slot may move once this batch is delivered. */
  endLsn: bigint;
  /** The transactions' ids, up to the rows' bound (they only name what was delivered). */
  readonly xids: number[];
  transactions: number;
  /** The earliest commit time in the batch, ms since the epoch. */
  firstCommitTime: number;
}

export class Backlog {
  private batch?: Batch;

  constructor(private readonly maxRows: number) {}

  get isEmpty(): boolean {
    return this.batch === undefined;
  }

  add(transaction: CommittedTransaction): void {
    this.merge({
      tables: new Map(transaction.tables),
      rows: [...transaction.rows],
      truncated: new Map(transaction.truncated.map((t) => [`${t.schema}.${t.name}`, t])),
      relationsChanged: transaction.relationsChanged,
      endLsn: transaction.endLsn,
      xids: [transaction.xid],
      transactions: 1,
      firstCommitTime: transaction.commitTime,
    });
  }

  /** Everything waiting, as one batch; the backlog is empty afterwards. */
  take(): Batch | undefined {
    const batch = this.batch;
    this.batch = undefined;
    return batch;
  }

  /** Puts back a batch that could not be delivered, ahead of what arrived meanwhile. */
  putBack(batch: Batch): void {
    const later = this.batch;
    this.batch = undefined;
    this.merge(batch);
    if (later) this.merge(later);
  }

  private merge(next: Batch): void {
    const into = this.batch;
    if (!into) {
      this.batch = next;
      if (next.rows && next.rows.length > this.maxRows) next.rows = undefined;
      return;
    }
    for (const [key, table] of next.tables) into.tables.set(key, table);
    for (const [key, table] of next.truncated) into.truncated.set(key, table);
    // Past the bound, the rows are let go and whole tables are invalidated: memory stays bounded
    // however long the store is down, at the price of precision.
    if (into.rows && next.rows && into.rows.length + next.rows.length <= this.maxRows)
      into.rows.push(...next.rows);
    else into.rows = undefined;
    into.relationsChanged ||= next.relationsChanged;
    if (next.endLsn > into.endLsn) into.endLsn = next.endLsn;
    if (into.xids.length + next.xids.length <= this.maxRows) into.xids.push(...next.xids);
    into.transactions += next.transactions;
    into.firstCommitTime = Math.min(into.firstCommitTime, next.firstCommitTime);
  }
}
