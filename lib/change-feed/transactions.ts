import type { Pgoutput } from "pg-logical-replication";
import { qualifiedName } from "../catalog/qualified-name";
import type { RelationName } from "../sql/statement-effects";
import { parseLsn } from "./lsn";

/**
 * One row a committed transaction changed, as the stream carries it, each image holding only the
 * columns whose values are known. `after` is the new row (insert, update). `before` is what is
 * known of the old row (update, delete): the whole row under REPLICA IDENTITY FULL, else its
 * replica identity columns, which the server sends for an update only when they changed (they are
 * then the new row's). An unchanged TOASTed value the server leaves out is unknown. A TRUNCATE
 * carries no rows.
 */
export interface RowChange {
  readonly table: RelationName;
  readonly kind: "insert" | "update" | "delete";
  readonly identity: "default" | "nothing" | "full" | "index";
  readonly before?: Readonly<Record<string, unknown>>;
  readonly after?: Readonly<Record<string, unknown>>;
}

/** A transaction as it committed: the tables it changed, and its rows. */
export interface CommittedTransaction {
  readonly xid: number;
  /** The end of its commit record: once its invalidations are delivered, the slot may move here. */
  readonly endLsn: bigint;
  /** Commit time on the server, in ms since the epoch. */
  readonly commitTime: number;
  /** Every table it changed, "schema.table", with TRUNCATE's. */
  readonly tables: ReadonlyMap<string, RelationName>;
  readonly rows: readonly RowChange[];
  /** Tables it truncated: every row of them changed. */
  readonly truncated: readonly RelationName[];
  /** A relation it wrote was new to the feed under its name, or changed shape (DDL ran). */
  readonly relationsChanged: boolean;
}

/**
 * Turns pgoutput messages, in stream order, into committed transactions. A transaction whose
 * COMMIT never arrives (the connection broke) is dropped by reset(): the server sends it again
 * from the slot, which was not moved past it.
 * @internal
 */
export class TransactionAssembler {
  /** Each relation's name and columns as last announced, by oid, to see DDL between two messages. */
  private readonly shapes = new Map<number, string>();
  private open?: {
    xid: number;
    tables: Map<string, RelationName>;
    rows: RowChange[];
    truncated: RelationName[];
    relationsChanged: boolean;
  };
  /** Set by a Relation message seen outside a transaction; it applies to the next one. */
  private relationsChangedBetween = false;

  get inTransaction(): boolean {
    return this.open !== undefined;
  }

  /** Feeds one message; returns the transaction it commits, if it is a COMMIT. */
  accept(message: Pgoutput.Message): CommittedTransaction | undefined {
    switch (message.tag) {
      case "begin":
        this.open = {
          xid: message.xid,
          tables: new Map(),
          rows: [],
          truncated: [],
          relationsChanged: this.relationsChangedBetween,
        };
        this.relationsChangedBetween = false;
        return undefined;
      case "relation":
        if (this.relationChanged(message)) {
          if (this.open) this.open.relationsChanged = true;
          else this.relationsChangedBetween = true;
        }
        return undefined;
      case "insert":
        this.row(message.relation, "insert", undefined, message.new);
        return undefined;
      case "update":
        this.row(
          message.relation,
          "update",
          message.old ?? message.key ?? keyOf(message.relation, message.new),
          message.new,
        );
        return undefined;
      case "delete":
        // Without a replica identity nothing of the old row is known: no column at all.
        this.row(message.relation, "delete", message.old ?? message.key ?? {}, undefined);
        return undefined;
      case "truncate":
        for (const relation of message.relations) {
          const table = this.touch(relation);
          if (table) this.open?.truncated.push(table);
        }
        return undefined;
      case "commit":
        return this.commit(message);
      default:
        return undefined;
    }
  }

  /** Forgets a transaction left open by a broken connection. */
  reset(): void {
    this.open = undefined;
  }

  private commit(message: Pgoutput.MessageCommit): CommittedTransaction | undefined {
    const open = this.open;
    this.open = undefined;
    if (!open || message.commitEndLsn === null) return undefined;
    return {
      xid: open.xid,
      endLsn: parseLsn(message.commitEndLsn),
      commitTime: Number(message.commitTime as bigint) / 1000,
      tables: open.tables,
      rows: open.rows,
      truncated: open.truncated,
      relationsChanged: open.relationsChanged,
    };
  }

  private row(
    relation: Pgoutput.MessageRelation,
    kind: RowChange["kind"],
    before: Record<string, unknown> | undefined,
    after: Record<string, unknown> | undefined,
  ): void {
    const table = this.touch(relation);
    if (table)
      this.open?.rows.push({
        table,
        kind,
        identity: relation.replicaIdentity,
        before: before && known(before),
        after: after && known(after),
      });
  }

  private touch(relation: Pgoutput.MessageRelation): RelationName | undefined {
    if (!this.open) return undefined;
    const qualified = qualifiedName(relation.schema, relation.name);
    let table = this.open.tables.get(qualified);
    if (!table)
      this.open.tables.set(qualified, (table = { schema: relation.schema, name: relation.name }));
    return table;
  }

  /** Whether this announcement differs from the last one for its oid (or is the first). */
  private relationChanged(relation: Pgoutput.MessageRelation): boolean {
    const shape = `${relation.schema}.${relation.name}(${relation.columns.map((c) => `${c.name}:${c.typeOid}`).join(",")})`;
    const previous = this.shapes.get(relation.relationOid);
    this.shapes.set(relation.relationOid, shape);
    return previous !== undefined && previous !== shape;
  }
}

/** The replica identity columns of a row (the old row's, for an update that kept them). */
function keyOf(
  relation: Pgoutput.MessageRelation,
  row: Record<string, unknown> | null,
): Record<string, unknown> {
  const key: Record<string, unknown> = {};
  for (const column of relation.keyColumns) if (row && column in row) key[column] = row[column];
  return key;
}

/** The image without the columns the stream left unknown (undefined: an unchanged TOASTed value, a key tuple's other columns). */
function known(image: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [column, value] of Object.entries(image)) if (value !== undefined) out[column] = value;
  return out;
}
