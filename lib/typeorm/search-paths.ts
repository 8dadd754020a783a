import type { SearchPathChange } from "../sql/statement-effects";
import { sessionOf } from "./session";

/** A session's search_path: null while it is the default, "unknown" once it cannot be told. */
export type SearchPath = readonly string[] | null | "unknown";

interface State {
  session: SearchPath;
  /** Inside a transaction: what SET made (kept at COMMIT) and SET LOCAL made (dropped at its end). */
  transaction?: { set?: SearchPath; local?: SearchPath; unsure: boolean };
}

/**
 * Follows each session's search_path as SET, SET LOCAL, RESET and set_config change it, with the
 * transaction rules PostgreSQL applies to them (a rolled-back SET is undone, SET LOCAL ends with
 * its transaction). Where the SQL alone cannot tell the outcome, the path becomes "unknown".
 */
export class SearchPaths {
  private readonly states = new WeakMap<object, State>();

  current(runner: object): SearchPath {
    const state = this.states.get(sessionOf(runner));
    if (!state) return null;
    const transaction = state.transaction;
    if (transaction?.unsure) return "unknown";
    return transaction?.local ?? transaction?.set ?? state.session;
  }

  apply(runner: object, change: SearchPathChange, inTransaction: boolean): void {
    const state = this.state(runner);
    const value: SearchPath =
      change.kind === "set" ? change.schemas : change.kind === "reset" ? null : "unknown";
    const local = change.kind === "set" && change.local;
    if (!inTransaction) {
      // SET LOCAL outside a transaction block has no effect.
      if (!local) state.session = value;
      return;
    }
    state.transaction ??= { unsure: false };
    if (local) state.transaction.local = value;
    else state.transaction = { set: value, unsure: state.transaction.unsure };
  }

  /** The session's path can no longer be told (a failed text that changed it, for one). */
  lose(runner: object): void {
    this.states.set(sessionOf(runner), { session: "unknown" });
  }

  /** A ROLLBACK TO undid the changes made after its savepoint, and which those were is not kept. */
  rolledBackToSavepoint(runner: object): void {
    const transaction = this.states.get(sessionOf(runner))?.transaction;
    if (transaction && (transaction.set !== undefined || transaction.local !== undefined))
      transaction.unsure = true;
  }

  /** The transaction ended: committed, rolled back, or ended in a way the SQL did not show. */
  end(runner: object, outcome: "commit" | "rollback" | "unknown"): void {
    const state = this.states.get(sessionOf(runner));
    const transaction = state?.transaction;
    if (!state || !transaction) return;
    state.transaction = undefined;
    if (outcome === "rollback" || (transaction.set === undefined && !transaction.unsure)) return;
    state.session =
      outcome === "unknown" || transaction.unsure ? "unknown" : (transaction.set ?? state.session);
  }

  private state(runner: object): State {
    const session = sessionOf(runner);
    let state = this.states.get(session);
    if (!state) this.states.set(session, (state = { session: null }));
    return state;
  }
}

/** The schemas of a path as written, with "$user" standing for the role. */
export function schemasOf(path: readonly string[], role: string): string[] {
  return path.map((schema) => (schema === "$user" ? role : schema));
}
