import { expect } from "chai";
import type { DataSource } from "typeorm";
import { UnserializableValueError } from "../../lib";
import { ClassRegistry } from "../../lib/serialization/class-registry";
import { decode, encode } from "../../lib/serialization/codec";
import { expectIndistinguishable } from "../support/result-checks";

class Entity {
  id = 0;
  name?: string;
  child?: Entity | null;
}

class Stranger {
  x = 1;
}

/** The registry a DataSource with one entity class would give (only its entity metadata is read). */
const classes = ClassRegistry.of({
  entityMetadatas: [{ target: Entity, embeddeds: [] }],
} as unknown as DataSource);
const roundTrip = <T>(value: T): T => decode(encode(value, classes), classes) as T;

describe("unit: codec (a cached value comes back as it was)", () => {
  const values: [string, unknown][] = [
    ["plain data", { a: 1, b: "two", c: [true, null], d: { e: [] } }],
    [
      "undefined beside null, and a key holding undefined",
      { gone: undefined, none: null, list: [undefined, null] },
    ],
    [
      "numbers JSON cannot carry",
      [-0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY],
    ],
    ["bigints", [0n, -12345678901234567890n]],
    ["Dates, an invalid one included", [new Date(1700000000123), new Date(Number.NaN)]],
    ["Buffers and byte arrays", [Buffer.from("héllo"), new Uint8Array([0, 255, 7])]],
    [
      "Maps and Sets, in order",
      [
        new Map<unknown, unknown>([
          ["b", 1],
          [2, new Date(5)],
        ]),
        new Set(["z", "a"]),
      ],
    ],
    ["arrays that start with a negative whole number", [[-1, 2], [-10], [[-3]]]],
    ["a key named __proto__", JSON.parse('{"__proto__": {"polluted": true}}')],
  ];
  for (const [what, value] of values) {
    it(`keeps ${what}`, () => expectIndistinguishable(roundTrip(value), value));
  }

  it("keeps entity instances, nested ones and their shared shapes", () => {
    const parent = Object.assign(new Entity(), {
      id: 1,
      name: "parent",
      child: Object.assign(new Entity(), { id: 2, child: null }),
    });
    const back = roundTrip([parent, parent.child]);
    expectIndistinguishable(back, [parent, parent.child]);
    expect(back[0]).to.be.instanceOf(Entity);
  });

  it("refuses what it cannot keep, naming where it is", () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    const cases: [unknown, RegExp][] = [
      [{ f: () => 1 }, /f.*function/],
      [[Symbol("s")], /symbol/],
      [cycle, /cycle/],
      [{ deep: [new Stranger()] }, /Stranger is neither an entity/],
    ];
    for (const [value, message] of cases)
      expect(() => encode(value, classes)).to.throw(UnserializableValueError, message);
  });

  it("refuses to decode text that is not in its format", () => {
    expect(() => decode('{"a":1}', classes)).to.throw(/format/);
  });
});
