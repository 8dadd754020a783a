import { createHash } from "node:crypto";
import { EntityManager } from "typeorm";

/** Why an argument list has no stable key; the caller turns it into an UnkeyableArgumentError. */
export class UnkeyableValue extends Error {}

// Short argument lists stay readable in keys (and skip hashing); longer ones are digested.
const VERBATIM_LIMIT = 64;

/**
 * A key part for the arguments that is equal exactly when they are equal as data: object keys
 * are sorted, so {a: 1, b: 2} and {b: 2, a: 1} share it, and types are kept apart, so 1 and "1"
 * do not.
 */
export function argumentsDigest(args: readonly unknown[]): string {
  if (args.length === 0) return "j[]";
  const text = canonical(args, new Set());
  return text.length <= VERBATIM_LIMIT ? `j${text}` : `h${createHash("sha1").update(text).digest("base64url")}`;
}

function canonical(value: unknown, seen: Set<object>): string {
  switch (typeof value) {
    case "string":
    case "boolean":
      return JSON.stringify(value);
    case "number":
      return Number.isFinite(value) && !Object.is(value, -0) ? String(value) : `n:${String(value)}`;
    case "bigint":
      return `i:${value}`;
    case "undefined":
      return "u";
    case "function":
      throw new UnkeyableValue("a function");
    case "symbol":
      throw new UnkeyableValue("a symbol");
  }
  if (value === null) return "null";
  const object = value as object;
  // A manager passed along picks the connection, not the data: key it by kind. Transactional
  // managers never get here, since calls given one bypass the cache.
  if (object instanceof EntityManager) return "EntityManager";
  if (seen.has(object)) throw new UnkeyableValue("a circular structure");
  seen.add(object);
  try {
    if (Array.isArray(object)) return `[${object.map((v) => canonical(v, seen)).join(",")}]`;
    if (object instanceof Date) return `d:${object.getTime()}`;
    if (Buffer.isBuffer(object) || object instanceof Uint8Array) return `b:${Buffer.from(object).toString("base64")}`;
    if (object instanceof Map) return `m:[${[...object].map(([k, v]) => `${canonical(k, seen)}=${canonical(v, seen)}`).sort().join(",")}]`;
    if (object instanceof Set) return `s:[${[...object].map((v) => canonical(v, seen)).sort().join(",")}]`;
    const proto = Object.getPrototypeOf(object);
    const type = proto === Object.prototype || proto === null ? "" : (object.constructor as { name?: string })?.name;
    if (type === undefined || type === "Object") throw new UnkeyableValue("an object of an unnamed class");
    if (type === "Promise") throw new UnkeyableValue("a Promise");
    const fields = Object.keys(object)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((object as Record<string, unknown>)[k], seen)}`);
    return `${type}{${fields.join(",")}}`;
  } finally {
    seen.delete(object);
  }
}
