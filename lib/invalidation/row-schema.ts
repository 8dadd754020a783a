import type { DataSource } from "typeorm";
import type { QualifiedName } from "../catalog/catalog";

/** How values of a column compare for equality, as far as row versions are concerned. */
export type ValueKind = "integer" | "uuid" | "text";

/** What row precision knows of one table. */
export interface TableRows {
  /** The primary key's first column: a row's identity in row versions. */
  readonly identity: string;
  /**
   * The columns read conditions may bound and writes report values of: the primary key, foreign
   * keys, unique and indexed columns, of a kind whose equal values have one canonical text.
   */
  readonly columns: ReadonlyMap<string, ValueKind>;
}

const KINDS: Record<string, ValueKind> = {
  integer: "integer",
  int: "integer",
  int2: "integer",
  int4: "integer",
  int8: "integer",
  smallint: "integer",
  bigint: "integer",
  uuid: "uuid",
  text: "text",
  varchar: "text",
  "character varying": "text",
};

/**
 * The tables of the DataSource's entities (junction tables included), with the columns row
 * precision works with, read from the entity metadata. Tables no entity maps stay table-wide.
 */
export function rowSchema(
  dataSource: DataSource,
  qualify: (path: string) => QualifiedName,
): Map<QualifiedName, TableRows> {
  const out = new Map<QualifiedName, TableRows>();
  for (const metadata of dataSource.entityMetadatas) {
    if (metadata.tableType !== "regular" && metadata.tableType !== "junction") continue;
    const primary = metadata.primaryColumns.map((c) => c.databaseName);
    const keyed = new Set([
      ...primary,
      ...metadata.foreignKeys.flatMap((fk) => fk.columnNames),
      ...metadata.indices.flatMap((index) => index.columns.map((c) => c.databaseName)),
      ...metadata.uniques.flatMap((unique) => unique.columns.map((c) => c.databaseName)),
      ...metadata.columns.filter((c) => c.isPrimary || c.isGenerated).map((c) => c.databaseName),
    ]);
    const columns = new Map<string, ValueKind>();
    for (const column of metadata.columns) {
      // A collation of its own may make distinct texts equal (case-insensitive ICU collations).
      const kind = KINDS[dataSource.driver.normalizeType(column)];
      if (kind && keyed.has(column.databaseName) && !column.isArray && !column.collation)
        columns.set(column.databaseName, kind);
    }
    if (primary.length === 0 || !columns.has(primary[0])) continue;
    out.set(qualify(metadata.tablePath), { identity: primary[0], columns });
  }
  return out;
}

/**
 * The canonical text of a value as PostgreSQL compares it in a column of this kind: null for SQL
 * NULL (equal to nothing), undefined when it cannot be told (then it is treated as unknown).
 */
export function canonical(kind: ValueKind, value: unknown): string | null | undefined {
  if (value === null || value === undefined) return null;
  switch (kind) {
    case "integer":
      if (typeof value === "number") return Number.isSafeInteger(value) ? String(value) : undefined;
      if (typeof value === "bigint") return value.toString();
      if (typeof value === "string" && /^\s*[+-]?\d+\s*$/.test(value))
        return BigInt(value.trim()).toString();
      return undefined;
    case "uuid": {
      if (typeof value !== "string") return undefined;
      const hex = value
        .replace(/^\{|\}$/g, "")
        .replace(/-/g, "")
        .toLowerCase();
      return /^[0-9a-f]{32}$/.test(hex) ? hex : undefined;
    }
    case "text":
      if (typeof value === "string") return value;
      if (typeof value === "number" && Number.isFinite(value)) return String(value);
      return undefined;
  }
}
