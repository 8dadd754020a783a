import { UnserializableValueError } from "../errors";
import type { ClassRegistry } from "./class-registry";

/**
 * JSON with type tags. Values JSON cannot carry become {"$t": tag, "v": ...}; a plain object that
 * has its own "$t" key is wrapped as tag "o", so no stored data can pass for a tag.
 */
const TAG = "$t";

export function encode(value: unknown, classes: ClassRegistry): string {
  return JSON.stringify(toJson(value, classes, new Set(), ""));
}

export function decode(text: string, classes: ClassRegistry): unknown {
  return fromJson(JSON.parse(text), classes);
}

function tagged(tag: string, v: unknown): object {
  return { [TAG]: tag, v };
}

function toJson(value: unknown, classes: ClassRegistry, seen: Set<object>, path: string): unknown {
  switch (typeof value) {
    case "string":
    case "boolean":
      return value;
    case "number":
      if (Object.is(value, -0)) return tagged("n", "-0");
      return Number.isFinite(value) ? value : tagged("n", String(value));
    case "undefined":
      return tagged("u", 0);
    case "bigint":
      return tagged("i", value.toString());
    case "function":
    case "symbol":
      throw new UnserializableValueError(path, `a ${typeof value} cannot be stored`);
  }
  if (value === null) return null;
  const object = value as object;
  if (seen.has(object)) throw new UnserializableValueError(path, "it refers back to itself (a cycle)");
  seen.add(object);
  try {
    return objectToJson(object, classes, seen, path);
  } finally {
    seen.delete(object);
  }
}

function objectToJson(object: object, classes: ClassRegistry, seen: Set<object>, path: string): unknown {
  if (Array.isArray(object)) {
    const out = new Array(object.length);
    for (let i = 0; i < object.length; i++) out[i] = toJson(object[i], classes, seen, `${path}[${i}]`);
    return out;
  }
  const proto = Object.getPrototypeOf(object);
  if (proto === Object.prototype || proto === null) {
    const fields = fieldsToJson(object, classes, seen, path);
    return TAG in object ? tagged("o", fields) : fields;
  }
  if (object instanceof Date) return tagged("d", Number.isNaN(object.getTime()) ? null : object.toISOString());
  if (Buffer.isBuffer(object)) return tagged("b", object.toString("base64"));
  if (object instanceof Uint8Array) return tagged("u8", Buffer.from(object.buffer, object.byteOffset, object.byteLength).toString("base64"));
  if (object instanceof Map) {
    return tagged("m", [...object].map(([k, v], i) => [toJson(k, classes, seen, `${path}<key ${i}>`), toJson(v, classes, seen, `${path}<${i}>`)]));
  }
  if (object instanceof Set) return tagged("s", [...object].map((v, i) => toJson(v, classes, seen, `${path}<${i}>`)));
  const tag = classes.tagOf(object.constructor);
  if (tag === undefined) {
    const name = (object.constructor as { name?: string } | undefined)?.name || "an unnamed class";
    throw new UnserializableValueError(path, `${name} is neither an entity nor embedded class of this DataSource`);
  }
  return { [TAG]: "e", c: tag, v: fieldsToJson(object, classes, seen, path) };
}

function fieldsToJson(object: object, classes: ClassRegistry, seen: Set<object>, path: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(object)) {
    define(out, key, toJson((object as Record<string, unknown>)[key], classes, seen, `${path}.${key}`));
  }
  return out;
}

function fromJson(json: unknown, classes: ClassRegistry): unknown {
  if (typeof json !== "object" || json === null) return json;
  if (Array.isArray(json)) {
    for (let i = 0; i < json.length; i++) json[i] = fromJson(json[i], classes);
    return json;
  }
  const record = json as Record<string, unknown>;
  const tag = record[TAG];
  if (tag === undefined) return decodeFields(record, classes);
  const v = record.v;
  switch (tag) {
    case "n":
      return Number(v);
    case "u":
      return undefined;
    case "i":
      return BigInt(v as string);
    case "d":
      return new Date(v === null ? Number.NaN : (v as string));
    case "b":
      return Buffer.from(v as string, "base64");
    case "u8":
      return new Uint8Array(Buffer.from(v as string, "base64"));
    case "m":
      return new Map((v as [unknown, unknown][]).map(([k, x]) => [fromJson(k, classes), fromJson(x, classes)]));
    case "s":
      return new Set((v as unknown[]).map((x) => fromJson(x, classes)));
    case "o":
      return decodeFields(v as Record<string, unknown>, classes);
    case "e": {
      const type = classes.classOf(record.c as string);
      if (!type) throw new TypeError(`stored value names class ${String(record.c)}, which this DataSource does not know`);
      const fields = decodeFields(v as Record<string, unknown>, classes);
      const instance = Object.create(type.prototype) as Record<string, unknown>;
      for (const key of Object.keys(fields)) define(instance, key, fields[key]);
      return instance;
    }
    default:
      throw new TypeError(`stored value has unknown tag ${String(tag)}`);
  }
}

// JSON.parse makes "__proto__" an own data property, so assigning to it in place stays safe.
function decodeFields(record: Record<string, unknown>, classes: ClassRegistry): Record<string, unknown> {
  for (const key of Object.keys(record)) record[key] = fromJson(record[key], classes);
  return record;
}

// A plain assignment to "__proto__" would set the prototype instead of a field.
function define(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
  else target[key] = value;
}
