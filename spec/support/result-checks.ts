import { expect } from "chai";
import { type App, selectCount } from "./fixture";

/**
 * Calls `read` until one call is served from the cache, and proves that call ran no SQL.
 * Returns the last computed result (`fresh`) and the cached one (`hit`). The namespace's entries
 * are cleared first, so the first call always computes. A store may refuse the first write for a
 * table whose version key does not exist yet, so a few calls may compute before one is stored.
 */
export async function freshAndHit<T>(
  app: App,
  read: () => Promise<T>,
  options: { clear?: boolean } = {},
): Promise<{ fresh: T; hit: T }> {
  if (options.clear !== false) await app.cache.clear();
  let computed: { value: T } | undefined;
  for (let i = 0; i < 4; i++) {
    const hits = app.cache.stats().hits;
    const selects = selectCount(app.dataSource);
    const value = await read();
    if (app.cache.stats().hits > hits) {
      expect(selectCount(app.dataSource), "a hit runs no SQL").to.equal(selects);
      if (!computed)
        throw new Error("the first call was already a hit; nothing fresh to compare with");
      return { fresh: computed.value, hit: value };
    }
    computed = { value };
  }
  throw new Error("the read was never served from the cache");
}

function describeValue(value: unknown): string {
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value !== "object" || value === null)
    return Object.is(value, -0) ? "-0" : String(value);
  const proto = Object.getPrototypeOf(value);
  return proto === null
    ? "[null prototype]"
    : `[${(proto.constructor as { name?: string })?.name ?? "?"}]`;
}

/**
 * Asserts that `actual` cannot be told apart from `expected`: same primitive values (Object.is, so
 * NaN and -0 count), same prototype at every level, same own enumerable keys (a key holding
 * undefined included), equal Date times, equal bytes, equal Map and Set contents in order.
 */
export function expectIndistinguishable(actual: unknown, expected: unknown, path = "value"): void {
  if (typeof expected !== "object" || expected === null) {
    expect(
      Object.is(actual, expected),
      `${path}: got ${describeValue(actual)} (${typeof actual}), expected ${describeValue(expected)} (${typeof expected})`,
    ).to.equal(true);
    return;
  }
  expect(
    typeof actual === "object" && actual !== null,
    `${path}: got ${describeValue(actual)}, expected an object ${describeValue(expected)}`,
  ).to.equal(true);
  const a = actual as object;
  expect(
    Object.getPrototypeOf(a) === Object.getPrototypeOf(expected),
    `${path}: prototype ${describeValue(a)} instead of ${describeValue(expected)}`,
  ).to.equal(true);
  if (expected instanceof Date) {
    expect(
      Object.is((a as Date).getTime(), expected.getTime()),
      `${path}: date ${(a as Date).getTime()} vs ${expected.getTime()}`,
    ).to.equal(true);
    return;
  }
  if (expected instanceof Uint8Array) {
    expect(
      Buffer.from(a as Uint8Array).equals(Buffer.from(expected)),
      `${path}: bytes differ`,
    ).to.equal(true);
    return;
  }
  if (expected instanceof Map) {
    expectIndistinguishable(
      [...(a as Map<unknown, unknown>)],
      [...expected],
      `${path}<map entries>`,
    );
    return;
  }
  if (expected instanceof Set) {
    expectIndistinguishable([...(a as Set<unknown>)], [...expected], `${path}<set values>`);
    return;
  }
  const keys = Object.keys(expected).sort();
  expect(Object.keys(a).sort(), `${path}: own keys`).to.deep.equal(keys);
  for (const key of keys) {
    const descriptor = Object.getOwnPropertyDescriptor(expected, key);
    const other = Object.getOwnPropertyDescriptor(a, key);
    expectIndistinguishable(other?.value, descriptor?.value, `${path}.${key}`);
  }
}
