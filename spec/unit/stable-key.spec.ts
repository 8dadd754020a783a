import { expect } from "chai";
import { argumentsDigest, PLAIN_DATA, UnkeyableValue } from "../../lib/keys/stable-key";

const digest = (args: readonly unknown[]) => argumentsDigest(args, PLAIN_DATA);

class Filter {
  constructor(
    readonly status: string,
    readonly page: number,
  ) {}
}

describe("unit: stable key (equal arguments share a key, different ones never do)", () => {
  it("is the same for equal data however it was built", () => {
    expect(digest([{ a: 1, b: 2 }])).to.equal(digest([{ b: 2, a: 1 }]));
    expect(digest([new Date(5)])).to.equal(digest([new Date(5)]));
    expect(digest([new Filter("open", 2)])).to.equal(digest([new Filter("open", 2)]));
  });

  it("tells apart values that differ in type or content", () => {
    const distinct: unknown[][] = [
      [],
      [1],
      ["1"],
      [1n],
      [true],
      ["true"],
      [null],
      [undefined],
      [Number.NaN],
      [-0],
      [0],
      [[1, 2]],
      [[2, 1]],
      [{ a: 1 }],
      [{ a: "1" }],
      [new Date(1)],
      [new Date(2)],
      [Buffer.from("a")],
      [new Map([["a", 1]])],
      [new Set(["a"])],
      [{ a: undefined }],
      [{}],
      // A method iterating a Map or Set sees its order, so the order is part of the key.
      [
        new Map([
          ["x", 1],
          ["y", 2],
        ]),
      ],
      [
        new Map([
          ["y", 2],
          ["x", 1],
        ]),
      ],
      [new Set([1, 2])],
      [new Set([2, 1])],
      [new Filter("open", 1)],
      [new Filter("open", 2)],
      [{ status: "open", page: 1 }],
      [1, 2],
      [[1], 2],
      ["a,b"],
      ["a", "b"],
    ];
    const keys = distinct.map((args) => digest(args));
    expect(new Set(keys).size, keys.join("\n")).to.equal(distinct.length);
  });

  it("keeps short argument lists readable and digests long ones to a bounded length", () => {
    expect(digest([7, "x"])).to.contain("7");
    const long = digest(["x".repeat(10_000)]);
    expect(long.length).to.be.below(64);
    expect(long).to.not.equal(digest(["x".repeat(10_001)]));
  });

  it("refuses arguments it cannot key stably", () => {
    const cycle: unknown[] = [];
    cycle.push(cycle);
    for (const args of [[() => 1], [Symbol("s")], [cycle], [Promise.resolve(1)]]) {
      expect(() => digest(args), String(args[0])).to.throw(UnkeyableValue);
    }
  });
});
