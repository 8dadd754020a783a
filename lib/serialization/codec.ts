import { UnserializableValueError } from "../errors";
import { sameKeys } from "../util/same-keys";
import type { ClassRegistry } from "./class-registry";
import { hiddenStateOf } from "./hidden-state";

/**
 * JSON with positional entities. The text is `[shapes, value]`: each shape names a class and the
 * own keys of its instances, once, and an instance is an array of its field values. Values that
 * JSON cannot carry are arrays that start with a negative marker; a data array that happens to
 * start with a negative whole number is escaped the same way. Plain objects are plain JSON, so
 * no key of theirs is reserved. Compared with tagging every value, this parses half the text and
 * builds each entity once.
 */
const ESCAPED = -1;
const UNDEFINED = -2;
const DATE = -3;
const BIGINT = -4;
const BUFFER = -5;
const BYTES = -6;
const NUMBER = -7;
const MAP = -8;
const SET = -9;
/** Entities are -10 - (their shape's index). */
const SHAPE_BASE = -10;

type Shape = [tag: string, keys: string[]];

/** Deeper values are returned uncached: deeper still, encoding or decoding could overflow the stack. */
const MAX_DEPTH = 1000;

/** Throws UnserializableValueError for any value it cannot store so that it comes back as it went in. */
export function encode(value: unknown, classes: ClassRegistry): string {
  const encoder = new Encoder(classes);
  try {
    return JSON.stringify([encoder.shapes, encoder.value(value)]);
  } catch (error) {
    if (error instanceof UnserializableValueError) throw error;
    // A stack overflow (deeply nested jsonb) or a getter that throws: the caller still gets the value.
    const reason =
      error instanceof RangeError
        ? "it is nested too deeply to encode"
        : `reading it failed (${(error as Error)?.message})`;
    throw encoder.failure(reason);
  }
}

export function decode(text: string, classes: ClassRegistry): unknown {
  const parsed = JSON.parse(text) as [Shape[], unknown];
  if (!Array.isArray(parsed) || parsed.length !== 2 || !Array.isArray(parsed[0]))
    throw new TypeError("stored value is not in this library's format");
  return new Decoder(parsed[0], classes).value(parsed[1]);
}

class Encoder {
  readonly shapes: Shape[] = [];
  private readonly byClass = new Map<unknown, { keys: string[]; index: number }[]>();
  private readonly seen = new Set<object>();
  private readonly path: (string | number)[] = [];

  constructor(private readonly classes: ClassRegistry) {}

  value(value: unknown): unknown {
    switch (typeof value) {
      case "string":
      case "boolean":
        return value;
      case "number":
        if (Object.is(value, -0)) return [NUMBER, "-0"];
        return Number.isFinite(value) ? value : [NUMBER, String(value)];
      case "undefined":
        return [UNDEFINED];
      case "bigint":
        return [BIGINT, value.toString()];
      case "function":
      case "symbol":
        throw this.error(`a ${typeof value} cannot be stored`);
    }
    if (value === null) return null;
    const object = value as object;
    // A fixed bound rather than the stack's: where a stack overflows depends on the caller, and
    // the same value must be refused the same way (one warning), and decodable when stored.
    if (this.path.length >= MAX_DEPTH)
      throw this.error(`it is nested more than ${MAX_DEPTH} levels deep`);
    if (this.seen.has(object)) throw this.error("it refers back to itself (a cycle)");
    this.seen.add(object);
    try {
      return this.object(object);
    } finally {
      this.seen.delete(object);
    }
  }

  // Built-in types are matched by their exact prototype: a subclass of Array, Date, Map or Set
  // would come back as its parent, so it is left to entity(), which refuses classes it does not know.
  private object(object: object): unknown {
    const proto = Object.getPrototypeOf(object);
    if (proto === Array.prototype) {
      const array = object as unknown[];
      const out = new Array(array.length);
      for (let i = 0; i < array.length; i++) out[i] = this.child(i, array[i]);
      return isMarked(out[0]) ? [ESCAPED, ...out] : out;
    }
    if (proto === Object.prototype) {
      this.checkSymbols(object);
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(object))
        define(out, key, this.child(key, (object as Record<string, unknown>)[key]));
      return out;
    }
    if (proto === null)
      throw this.error("an object without a prototype would come back with Object's");
    if (proto === Date.prototype) {
      const time = (object as Date).getTime();
      return [DATE, Number.isNaN(time) ? null : time];
    }
    if (Buffer.isBuffer(object)) return [BUFFER, object.toString("base64")];
    if (proto === Uint8Array.prototype) {
      const bytes = object as Uint8Array;
      return [
        BYTES,
        Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64"),
      ];
    }
    if (proto === Map.prototype) {
      const out: unknown[] = [MAP];
      let i = 0;
      for (const [k, v] of object as Map<unknown, unknown>)
        out.push(this.child(`<key ${i}>`, k), this.child(`<${i++}>`, v));
      return out;
    }
    if (proto === Set.prototype) {
      const out: unknown[] = [SET];
      let i = 0;
      for (const v of object as Set<unknown>) out.push(this.child(`<${i++}>`, v));
      return out;
    }
    return this.entity(object);
  }

  private entity(object: object): unknown[] {
    const type = object.constructor;
    const tag = this.classes.tagOf(type);
    if (tag === undefined) {
      const name = (type as { name?: string } | undefined)?.name || "an unnamed class";
      throw this.error(`${name} is neither an entity nor embedded class of this DataSource`);
    }
    this.checkSymbols(object);
    const keys = Object.keys(object);
    const out: unknown[] = [SHAPE_BASE - this.shapeOf(type, tag, keys)];
    for (const key of keys) out.push(this.child(key, (object as Record<string, unknown>)[key]));
    return out;
  }

  private shapeOf(type: unknown, tag: string, keys: string[]): number {
    let known = this.byClass.get(type);
    if (!known) {
      // Cached instances are rebuilt without their constructor, so state only it could set would be lost.
      const hidden = hiddenStateOf(type as Function);
      if (hidden)
        throw this.error(
          `${hidden}; a cached copy is built without its constructor and would lack them`,
        );
      this.byClass.set(type, (known = []));
    }
    for (const shape of known) if (sameKeys(shape.keys, keys)) return shape.index;
    const index = this.shapes.length;
    this.shapes.push([tag, keys]);
    known.push({ keys, index });
    return index;
  }

  /** Fields under symbol keys are not stored, so an object that has them would come back without. */
  private checkSymbols(object: object): void {
    const symbols = Object.getOwnPropertySymbols(object);
    if (
      symbols.length > 0 &&
      symbols.some((symbol) => Object.prototype.propertyIsEnumerable.call(object, symbol))
    ) {
      throw this.error("it has fields under symbol keys, which would come back without them");
    }
  }

  private child(step: string | number, value: unknown): unknown {
    this.path.push(step);
    const out = this.value(value);
    this.path.pop();
    return out;
  }

  /** The error for the value being encoded when something failed below it; long paths are cut short. */
  failure(reason: string): UnserializableValueError {
    const steps = this.path.length;
    if (steps > 20) this.path.splice(10, steps - 10, `<... ${steps - 10} more levels>`);
    return this.error(reason);
  }

  private error(reason: string): UnserializableValueError {
    const path = this.path
      .map((step) =>
        typeof step === "number" ? `[${step}]` : step.startsWith("<") ? step : `.${step}`,
      )
      .join("");
    return new UnserializableValueError(path, reason);
  }
}

interface DecodedShape {
  readonly proto: object;
  readonly keys: string[];
  readonly plainKeys: boolean;
}

class Decoder {
  private readonly shapes: DecodedShape[];

  constructor(shapes: Shape[], classes: ClassRegistry) {
    this.shapes = shapes.map(([tag, keys]) => {
      const type = classes.classOf(tag);
      if (!type)
        throw new TypeError(
          `stored value names class ${String(tag)}, which this DataSource does not know`,
        );
      return { proto: type.prototype as object, keys, plainKeys: !keys.includes("__proto__") };
    });
  }

  value(json: unknown): unknown {
    if (typeof json !== "object" || json === null) return json;
    if (!Array.isArray(json)) {
      // JSON.parse made "__proto__" an own data property, so assigning to it in place stays safe.
      const record = json as Record<string, unknown>;
      for (const key in record) record[key] = this.value(record[key]);
      return record;
    }
    const first = json[0];
    if (!isMarked(first)) {
      for (let i = 0; i < json.length; i++) json[i] = this.value(json[i]);
      return json;
    }
    const v = json[1];
    switch (first) {
      case ESCAPED: {
        const out = json.slice(1);
        for (let i = 0; i < out.length; i++) out[i] = this.value(out[i]);
        return out;
      }
      case UNDEFINED:
        return undefined;
      case DATE:
        return new Date(v === null ? Number.NaN : (v as number));
      case BIGINT:
        return BigInt(v as string);
      case BUFFER:
        return Buffer.from(v as string, "base64");
      case BYTES:
        return new Uint8Array(Buffer.from(v as string, "base64"));
      case NUMBER:
        return Number(v);
      case MAP: {
        const map = new Map();
        for (let i = 1; i < json.length; i += 2)
          map.set(this.value(json[i]), this.value(json[i + 1]));
        return map;
      }
      case SET: {
        const set = new Set();
        for (let i = 1; i < json.length; i++) set.add(this.value(json[i]));
        return set;
      }
    }
    const shape = this.shapes[SHAPE_BASE - (first as number)];
    if (!shape) throw new TypeError(`stored value has unknown marker ${String(first)}`);
    const instance = Object.create(shape.proto) as Record<string, unknown>;
    const { keys } = shape;
    if (!shape.plainKeys) {
      for (let i = 0; i < keys.length; i++) define(instance, keys[i], this.value(json[i + 1]));
      return instance;
    }
    // Most fields are strings, numbers, booleans or null: they need no call.
    for (let i = 0; i < keys.length; i++) {
      const field = json[i + 1];
      instance[keys[i]] = typeof field === "object" && field !== null ? this.value(field) : field;
    }
    return instance;
  }
}

function isMarked(first: unknown): boolean {
  return typeof first === "number" && first < 0 && Number.isInteger(first);
}

// A plain assignment to "__proto__" would set the prototype instead of a field.
function define(target: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__")
    Object.defineProperty(target, key, {
      value,
      writable: true,
      enumerable: true,
      configurable: true,
    });
  else target[key] = value;
}
