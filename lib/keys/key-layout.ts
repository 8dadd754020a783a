import type { QualifiedName } from "../catalog/catalog";
import type { DatabaseIdentity } from "../catalog/database-identity";
import type { KeySpace } from "../stores/store";

/**
 * Every key of one namespace starts with "<namespace>:", so a Redis ACL such as ~blog:* covers
 * them. Version keys and the clock share the hash tag {<namespace>:v} (one Redis Cluster slot, so
 * scripts may touch them together); entries spread across slots.
 *
 * A table has one version that every write to it bumps ("<table>"), and finer ones
 * ("<table>#..."), each bumped together with "<table>", which is their guard (invariant 2 for a
 * finer version that does not exist yet rests on it; see admit.lua):
 * - "#*": a write whose rows are unknown;
 * - "#<col>=<value>": a write changed rows whose <col> was or became <value> (expires);
 * - "#<col>": a write changed rows whose <col> value is unknown;
 * - "#<col>!": ... and whose identity is unknown too, or whose new <col> value is unknown;
 * - "#<col>~": a write set <col> on rows of the table.
 * Names and values are percent-encoded, so no key holds a space, "#", "=", "!" or "~" of its own.
 */
export class KeyLayout implements KeySpace {
  readonly clockKey: string;
  readonly entryPrefix: string;
  readonly versionPrefix: string;
  readonly channel: string;
  private readonly entryScope: string;
  private readonly versionScope: string;

  constructor(
    readonly namespace: string,
    identity: DatabaseIdentity,
  ) {
    this.versionPrefix = versionPrefix(namespace);
    this.clockKey = KeyLayout.clockKey(namespace);
    this.channel = KeyLayout.channel(namespace);
    this.entryPrefix = `${namespace}:e:`;
    this.entryScope = `${this.entryPrefix}${identity.scope}:`;
    this.versionScope = `${this.versionPrefix}${escapeName(identity.database)}:`;
  }

  /** The pub/sub channel bumps are announced on, for other processes' in-process tiers. */
  static channel(namespace: string): string {
    return `${namespace}:invalidations`;
  }

  static clockKey(namespace: string): string {
    return `${versionPrefix(namespace)}clock`;
  }

  /** The version of one table, bumped by every write to it: what table-wide readers depend on. */
  version(table: QualifiedName): string {
    return `${this.versionScope}${escapeName(table)}`;
  }

  /** What a write to rows of the table that are not known bumps: every reader depends on one of these. */
  tableWide(table: QualifiedName): string[] {
    return [this.version(table), this.rowsUnknown(table)];
  }

  /** Bumped by writes whose rows are unknown; every reader bounded by conditions depends on it. */
  rowsUnknown(table: QualifiedName): string {
    return `${this.version(table)}#*`;
  }

  /** Rows of the table whose `column` was or became `value` (canonical text) changed. */
  rowValue(table: QualifiedName, column: string, value: string): string {
    return `${this.version(table)}#${encode(column)}=${encode(value)}`;
  }

  /**
   * Column versions: "unknown" (rows changed whose value of the column is unknown), "moved"
   * (and their identity is unknown too, or the new value is), "set" (a write set the column).
   */
  column(table: QualifiedName, column: string, kind: "unknown" | "moved" | "set"): string {
    return `${this.version(table)}#${encode(column)}${kind === "unknown" ? "" : kind === "moved" ? "!" : "~"}`;
  }

  /** The version every entry of this database depends on, bumped by writes the library cannot see into. */
  get everything(): string {
    return `${this.versionScope}*`;
  }

  /** The entry of one call of a cached method. */
  method(owner: string, method: string, digest: string): string {
    return `${this.entryScope}m:${owner}.${method}:${digest}`;
  }

  /** The entry of a key given to the low-level API. */
  user(key: string): string {
    return `${this.entryScope}k:${key}`;
  }
}

/** The table version that guards a finer version key, or undefined for a table-level key. */
export function guardOf(key: string): string | undefined {
  const at = key.indexOf("#");
  return at < 0 ? undefined : key.slice(0, at);
}

/**
 * The name a version key versions, for metrics and traces: the table ("public.post") for a table
 * key and its finer keys alike, "*" for the everything version. Keys are
 * "<namespace>:{<namespace>:v}:<database>:<name>", and neither a namespace nor a database digest
 * holds a ":".
 */
export function versionedName(key: string): string {
  const table = guardOf(key) ?? key;
  let at = -1;
  for (let i = 0; i < 4; i++) {
    at = table.indexOf(":", at + 1);
    if (at < 0) return table;
  }
  return decodeURIComponent(table.slice(at + 1));
}

/** Whether the key is a row version, the only kind that expires. */
export function isRowVersion(key: string): boolean {
  const at = key.indexOf("#");
  return at >= 0 && key.indexOf("=", at) >= 0;
}

// A "#" in a key separates a table from its finer versions (scripts find guards by it), and a
// space separates keys in entries and announcements.
function escapeName(name: string): string {
  return name.replace(/[% #]/g, encodeURIComponent);
}

function encode(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*~]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function versionPrefix(namespace: string): string {
  return `${namespace}:{${namespace}:v}:`;
}
