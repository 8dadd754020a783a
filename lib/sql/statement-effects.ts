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
  | { readonly kind: "commit" }
  | { readonly kind: "rollback" }
  | { readonly kind: "savepoint"; readonly name: string }
  | { readonly kind: "release"; readonly name: string }
  | { readonly kind: "rollback-to"; readonly name: string };

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
  /** A single SELECT: the relations of its FROM clause, with the conditions that bound their rows. */
  readonly readScopes: readonly ReadScope[];
  /** A single INSERT ... VALUES, UPDATE or DELETE: the rows it changes, as far as its text says. */
  readonly writeScope?: WriteScope;
}
