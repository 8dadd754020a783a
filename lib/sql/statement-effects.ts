import type { ReadScope, WriteScope } from "./conditions";

/** A relation named in SQL, as written: the schema is absent when the name was unqualified. */
export interface RelationName {
  readonly schema?: string;
  readonly name: string;
}

/** How a statement changes a relation's rows, which decides what foreign keys carry the change on to. */
export type WriteKind = "insert" | "update" | "delete" | "merge";

export interface RelationWrite extends RelationName {
  readonly kind: WriteKind;
}

/** A transaction-control statement, as far as invalidation cares. */
export type TransactionControl =
  | { readonly kind: "begin" }
  /** With chain (COMMIT AND CHAIN), a new transaction opens at once. */
  | { readonly kind: "commit"; readonly chain?: boolean }
  | { readonly kind: "rollback"; readonly chain?: boolean }
  | { readonly kind: "savepoint"; readonly name: string }
  | { readonly kind: "release"; readonly name: string }
  | { readonly kind: "rollback-to"; readonly name: string };

/**
 * A change to the connection's search_path, which decides what unqualified names mean: SET (for the
 * session, or LOCAL to the transaction), RESET (back to the default), or one the tree cannot tell
 * (set_config with a value that is not a literal).
 */
export type SearchPathChange =
  | { readonly kind: "set"; readonly local: boolean; readonly schemas: readonly string[] }
  | { readonly kind: "reset" }
  | { readonly kind: "unknown" };

/** What one SQL text does to the data, found from its parse tree. */
export interface StatementEffects {
  /** Relations read: FROM, JOIN, subqueries, CTEs, USING, INSERT ... SELECT sources. */
  readonly reads: readonly RelationName[];
  /** Relations whose rows may change: targets of INSERT, UPDATE, DELETE, MERGE, COPY FROM, REFRESH. */
  readonly writes: readonly RelationWrite[];
  /** TRUNCATE targets; with CASCADE every table referencing them is emptied too. */
  readonly truncates: readonly RelationName[];
  readonly truncateCascades: boolean;
  /** Functions called, by qualified or bare name; ones outside pg_catalog may read anything. */
  readonly functions: readonly string[];
  /** Names defined by WITH in this text, which are not relations. */
  readonly cteNames: readonly string[];
  /** Why this text may change data the tree does not show (DDL, CALL, DO, EXECUTE, unparseable). */
  readonly opaqueWrite?: string;
  /** Whether it may change the catalog (tables, views, functions), so cached catalog facts age. */
  readonly changesCatalog: boolean;
  /** Transaction control statements, in order. */
  readonly control: readonly TransactionControl[];
  /** How many statements the text holds; several run as one implicit transaction unless it has control statements. */
  readonly statements: number;
  /** Changes to the search_path, in order. */
  readonly searchPath: readonly SearchPathChange[];
  /** A single SELECT: the relations of its FROM clause, with the conditions that bound their rows. */
  readonly readScopes: readonly ReadScope[];
  /** A single INSERT ... VALUES, UPDATE or DELETE: the rows it changes, as far as its text says. */
  readonly writeScope?: WriteScope;
}
