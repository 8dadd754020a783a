import type { TransactionControl } from "../sql/statement-effects";
import { serverInTransaction, sessionOf } from "../typeorm/session";

interface Frame {
  readonly savepoint?: string;
  readonly deps: Set<string>;
}

interface Transaction {
  frames: Frame[];
  /** Whether DDL ran in it: the catalog read before its COMMIT does not show it. */
  changedCatalog: boolean;
}

/** What the end of a transaction makes due. */
export interface Ended {
  readonly deps: Set<string>;
  readonly changedCatalog: boolean;
}

/**
 * Holds the invalidations of one session's open transaction until it ends: a savepoint gets a
 * frame of its own, RELEASE folds it into the one below, ROLLBACK TO empties it, and only the
 * outermost COMMIT hands everything over. Where the driver reports the server's transaction
 * status, that status has the last word (see reconcile).
 */
export class TransactionBuffer {
  private readonly open = new WeakMap<object, Transaction>();

  /** Whether the runner's session is inside a transaction, as far as this buffer or the server knows. */
  isOpen(runner: object): boolean {
    return this.open.has(sessionOf(runner)) || serverInTransaction(runner) === true;
  }

  /** Records deps written inside the open transaction; false when there is none. */
  hold(runner: object, deps: Iterable<string>): boolean {
    const transaction = this.open.get(sessionOf(runner));
    if (!transaction) return false;
    const top = transaction.frames[transaction.frames.length - 1].deps;
    for (const dep of deps) top.add(dep);
    return true;
  }

  /** Notes DDL run inside the open transaction; false when there is none. */
  changedCatalog(runner: object): boolean {
    const transaction = this.open.get(sessionOf(runner));
    if (transaction) transaction.changedCatalog = true;
    return transaction !== undefined;
  }

  /** Applies a control statement that succeeded; returns what a COMMIT makes due. */
  apply(runner: object, control: TransactionControl): Ended | undefined {
    const session = sessionOf(runner);
    const transaction = this.open.get(session);
    if (control.kind === "begin") {
      if (!transaction) this.begin(session);
      return undefined;
    }
    if (!transaction) {
      if ((control.kind === "commit" || control.kind === "rollback") && control.chain)
        this.begin(session);
      return undefined;
    }
    const frames = transaction.frames;
    switch (control.kind) {
      case "commit":
      case "rollback":
        this.open.delete(session);
        if (control.chain) this.begin(session);
        return control.kind === "commit"
          ? { deps: union(frames), changedCatalog: transaction.changedCatalog }
          : undefined;
      case "savepoint":
        frames.push({ savepoint: control.name, deps: new Set() });
        return undefined;
      case "release": {
        const at = findSavepoint(frames, control.name);
        if (at > 0)
          frames.splice(at - 1, frames.length, {
            savepoint: frames[at - 1].savepoint,
            deps: union(frames.slice(at - 1)),
          });
        return undefined;
      }
      case "rollback-to": {
        const at = findSavepoint(frames, control.name);
        if (at > 0) frames.splice(at, frames.length, { savepoint: control.name, deps: new Set() });
        return undefined;
      }
    }
  }

  /**
   * A COMMIT that failed rolled the transaction back; so did any failure of the statement that
   * opened it.
   */
  abort(runner: object): void {
    this.open.delete(sessionOf(runner));
  }

  /**
   * Aligns the buffer with the server's status after a statement, where the driver reports it: a
   * transaction the server no longer has ended in a way the SQL did not show (one text that
   * committed and then failed), so what it held is due; one the server has and the buffer does not
   * is opened. Without a status, the buffer's own account stands.
   */
  reconcile(runner: object): Ended | undefined {
    const inTransaction = serverInTransaction(runner);
    const session = sessionOf(runner);
    const transaction = this.open.get(session);
    if (inTransaction === false && transaction) {
      this.open.delete(session);
      return { deps: union(transaction.frames), changedCatalog: transaction.changedCatalog };
    }
    if (inTransaction === true && !transaction) this.begin(session);
    return undefined;
  }

  private begin(session: object): void {
    this.open.set(session, { frames: [{ deps: new Set() }], changedCatalog: false });
  }
}

function findSavepoint(frames: Frame[], name: string): number {
  for (let i = frames.length - 1; i > 0; i--) if (frames[i].savepoint === name) return i;
  return -1;
}

function union(frames: readonly Frame[]): Set<string> {
  const out = new Set<string>();
  for (const frame of frames) for (const dep of frame.deps) out.add(dep);
  return out;
}
