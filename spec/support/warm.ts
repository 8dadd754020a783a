import { expect } from "chai";
import { type App, selectCount } from "./fixture";

/**
 * Calls a cached read until the cache serves it, and proves that hit ran no SQL. (A table's very
 * first entry may be refused while its version is created, so the first read can stay a miss.)
 */
export async function warm<T>(app: App, read: () => Promise<T>, tries = 3, why = ""): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const hits = app.cache.stats().hits;
    const selects = selectCount(app.dataSource);
    const value = await read();
    if (app.cache.stats().hits > hits) {
      expect(selectCount(app.dataSource), "a hit runs no SQL").to.equal(selects);
      return value;
    }
  }
  throw new Error(`the read was not served from the cache in ${tries} calls${why ? `: ${why}` : ""}`);
}
