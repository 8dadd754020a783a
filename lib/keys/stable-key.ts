import { createHash } from "node:crypto";
import { type DataSource, Repository } from "typeorm";
import { hiddenStateOf } from "../serialization/hidden-state";

/** Why a value has no stable key; the caller turns it into an UnkeyableArgumentError. */
export class UnkeyableValue extends Error {}

/** What a key needs from outside the value: how to name a DataSource reached through an argument. */
export interface KeyContext {
  /** The key part of a DataSource (passed itself, or through a manager, repository or query runner). */
  connection(dataSource: DataSource): string;
}

/** For keys made of plain data only (a request's URL and headers): a DataSource there is a bug. */
export const PLAIN_DATA: KeyContext = {
  connection() {
    throw new UnkeyableValue("a DataSource, where only plain data is expected");
  },
};

// Short argument lists stay readable in keys (and skip hashing); longer ones are digested.
const VERBATIM_LIMIT = 64;

/**
 * A key part for the arguments that is equal exactly when they are equal as data: object keys
 * are sorted, so {a: 1, b: 2} and {b: 2, a: 1} share it, and types are kept apart, so 1 and "1"
 * do not. `scope`, when given, is keyed beside them (what the instance the method runs on adds).
 */
export function argumentsDigest(
  args: readonly unknown[],
  context: KeyContext,
  scope?: { value: unknown },
): string {
  if (args.length === 0 && !scope) return "j[]";
  let text = canonicalText(args, context);
  if (scope) text = `@${canonicalText(scope.value, context)}${text}`;
  return text.length <= VERBATIM_LIMIT
    ? `j${text}`
    : `h${createHash("sha1").update(text).digest("base64url")}`;
}

function canonicalText(value: unknown, context: KeyContext): string {
  try {
    return new Canonical(context).of(value);
  } catch (error) {
    if (error instanceof RangeError)
      throw new UnkeyableValue("a structure nested too deeply to key");
    throw error;
  }
}

/**
 * One canonical text per distinct value. Every kind of object is keyed by everything that can
 * change what a method does with it, or refused: nothing is keyed by its class name alone.
 */
class Canonical {
  private readonly seen = new Set<object>();

  constructor(private readonly context: KeyContext) {}

  of(value: unknown): string {
    switch (typeof value) {
      case "string":
      case "boolean":
        return JSON.stringify(value);
      case "number":
        return Number.isFinite(value) && !Object.is(value, -0)
          ? String(value)
          : `n:${String(value)}`;
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
    if (this.seen.has(object)) throw new UnkeyableValue("a circular structure");
    this.seen.add(object);
    try {
      return this.object(object);
    } finally {
      this.seen.delete(object);
    }
  }

  private object(object: object): string {
    const proto = Object.getPrototypeOf(object);
    if (proto === Array.prototype)
      return `[${(object as unknown[]).map((v) => this.of(v)).join(",")}]`;
    if (proto === Object.prototype || proto === null)
      return `{${this.fields(object, "an object")}}`;
    if (!BUILT_IN_PROTOTYPES.has(proto) && isBuiltIn(object))
      return this.builtInSubclass(object, proto);
    const typeorm = typeormKind(object);
    if (typeorm) return this.typeorm(typeorm, object);
    if (object instanceof Repository) {
      const { targetName, tablePath } = object.metadata;
      return `repo:${JSON.stringify(`${targetName}:${tablePath}`)}@${this.context.connection(object.manager.connection)}`;
    }
    if (isQueryRunner(object))
      throw new UnkeyableValue(
        "a QueryRunner, whose session state (search_path, settings) cannot be keyed",
      );
    if (object instanceof Date) return `d:${object.getTime()}`;
    if (object instanceof RegExp)
      return `r:${JSON.stringify(object.source)}/${object.flags}@${object.lastIndex}`;
    if (ArrayBuffer.isView(object))
      return `${object.constructor.name}:${bytes(object.buffer, object.byteOffset, object.byteLength)}`;
    if (object instanceof ArrayBuffer || object instanceof SharedArrayBuffer)
      return `${object.constructor.name}:${bytes(object, 0, object.byteLength)}`;
    // Insertion order is what a method iterating them sees, so it is part of their value.
    if (object instanceof Map)
      return `m:[${[...object].map(([k, v]) => `${this.of(k)}=${this.of(v)}`).join(",")}]`;
    if (object instanceof Set) return `s:[${[...object].map((v) => this.of(v)).join(",")}]`;
    if (object instanceof URL) return `url:${JSON.stringify(object.href)}`;
    if (object instanceof URLSearchParams) return `usp:${JSON.stringify(object.toString())}`;
    if (
      object instanceof Number ||
      object instanceof String ||
      object instanceof Boolean ||
      object instanceof BigInt
    ) {
      return `box:${this.of(object.valueOf())}`;
    }
    if (object instanceof Promise) throw new UnkeyableValue("a Promise");
    return this.instance(object, proto);
  }

  /**
   * A subclass of a built-in value type (a Date that carries a zone, an Array with methods):
   * keyed by its own toJSON(), else refused, since what it adds is not in the built-in's value.
   */
  private builtInSubclass(object: object, proto: object): string {
    const name =
      (proto as { constructor?: { name?: string } }).constructor?.name || "an unnamed class";
    const toJSON = (object as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === "function" && !BUILT_IN_TO_JSON.has(toJSON))
      return `${name}(${this.of(toJSON.call(object, ""))})`;
    throw new UnkeyableValue(
      `an instance of ${name}, a subclass of a built-in type whose added state the key cannot see; give ${name} a toJSON()`,
    );
  }

  private instance(object: object, proto: object): string {
    const type = (proto as { constructor?: unknown }).constructor;
    const name = typeof type === "function" ? type.name : "";
    if (type === Object)
      throw new UnkeyableValue(
        "an object whose prototype is another object, whose fields the key would not hold",
      );
    if (!name) throw new UnkeyableValue("an object of an unnamed class");
    // The class's own word on what identifies an instance (Luxon, Day.js, Decimal.js and most value classes).
    const toJSON = (object as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === "function") return `${name}(${this.of(toJSON.call(object, ""))})`;
    const hidden = hiddenStateOf(type as Function);
    if (hidden)
      throw new UnkeyableValue(
        `an instance of ${name}: ${hidden}; give ${name} a toJSON() that returns what identifies an instance`,
      );
    return `${name}{${this.fields(object, `an instance of ${name}`)}}`;
  }

  /** Own enumerable fields, sorted; own getters are read like fields. State kept elsewhere on the object is refused. */
  private fields(object: object, what: string): string {
    const keys = Object.keys(object);
    if (Object.getOwnPropertyNames(object).length !== keys.length) {
      const hidden = Object.getOwnPropertyNames(object).find(
        (k) => !Object.prototype.propertyIsEnumerable.call(object, k),
      );
      throw new UnkeyableValue(
        `${what} with the non-enumerable property ${JSON.stringify(hidden)}`,
      );
    }
    if (
      Object.getOwnPropertySymbols(object).some((s) =>
        Object.prototype.propertyIsEnumerable.call(object, s),
      )
    ) {
      throw new UnkeyableValue(`${what} with symbol keys`);
    }
    return keys
      .sort()
      .map((k) => `${JSON.stringify(k)}:${this.of((object as Record<string, unknown>)[k])}`)
      .join(",");
  }

  /**
   * TypeORM's own objects, recognized by the tag TypeORM gives them (so any copy of TypeORM
   * counts). Find operators are keyed by their kind and operands, nested ones included; a manager or
   * DataSource by the database and schema it reaches.
   */
  private typeorm(kind: string, object: object): string {
    const o = object as Record<string, unknown>;
    switch (kind) {
      case "FindOperator":
      case "EqualOperator":
        if (typeof o._getSql === "function")
          throw new UnkeyableValue(
            `a Raw() find operator built by a function, whose SQL cannot be read`,
          );
        return `op:${String(o._type)}(${this.of(o._value)},${o._useParameter},${o._multipleParameters},${this.of(o._objectLiteralParameters)})`;
      case "EntityManager":
        return `em:${this.context.connection(o.connection as DataSource)}`;
      case "DataSource":
        return `ds:${this.context.connection(object as DataSource)}`;
    }
    throw new UnkeyableValue(`a TypeORM ${kind}`);
  }
}

const TYPED_ARRAYS = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
];

/** The built-in value types keyed by their value, matched by exact prototype. */
const BUILT_IN_PROTOTYPES = new Set<object>(
  [
    Array,
    Date,
    RegExp,
    Map,
    Set,
    URL,
    URLSearchParams,
    Number,
    String,
    Boolean,
    BigInt,
    Promise,
    ArrayBuffer,
    SharedArrayBuffer,
    DataView,
    Buffer,
    ...TYPED_ARRAYS,
  ].map((type) => type.prototype),
);

const BUILT_IN_TO_JSON = new Set<unknown>([
  Date.prototype.toJSON,
  URL.prototype.toJSON,
  Buffer.prototype.toJSON,
]);

function isBuiltIn(object: object): boolean {
  return (
    Array.isArray(object) ||
    ArrayBuffer.isView(object) ||
    object instanceof Date ||
    object instanceof RegExp ||
    object instanceof Map ||
    object instanceof Set ||
    object instanceof URL ||
    object instanceof URLSearchParams ||
    object instanceof ArrayBuffer ||
    object instanceof SharedArrayBuffer ||
    object instanceof Number ||
    object instanceof String ||
    object instanceof Boolean ||
    object instanceof BigInt ||
    object instanceof Promise
  );
}

/** The name TypeORM tags its objects with ("FindOperator", "EntityManager"...), or undefined. */
function typeormKind(object: object): string | undefined {
  const tag = (object as { "@instanceof"?: unknown })["@instanceof"];
  return typeof tag === "symbol" ? Symbol.keyFor(tag) : undefined;
}

function isQueryRunner(object: object): boolean {
  const o = object as { query?: unknown; connection?: object; isTransactionActive?: unknown };
  return (
    typeof o.query === "function" &&
    typeof o.isTransactionActive === "boolean" &&
    typeof o.connection === "object" &&
    o.connection !== null &&
    typeormKind(o.connection) === "DataSource"
  );
}

function bytes(buffer: ArrayBufferLike, offset: number, length: number): string {
  return Buffer.from(buffer, offset, length).toString("base64");
}
