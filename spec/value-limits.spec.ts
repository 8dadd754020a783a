import { expect } from "chai";
import type { CacheStats } from "../lib";
import { splitFreshness } from "../lib/serialization/freshness";
import { Post } from "./support/entities";
import { type App, dropNamespace, openApp, selectCount, uniqueNamespace } from "./support/fixture";
import { PostRepository } from "./support/repositories";

const LIMIT = 4000;

describe("maxValueBytes: a result too large to store is returned to its caller, and not stored", () => {
  const ns = uniqueNamespace();
  let app: App;
  let posts: PostRepository;
  let warnings: string[] = [];

  /** What one call returned, and whether it ran SQL. */
  async function call<T>(
    target: App,
    read: () => Promise<T>,
  ): Promise<{ value: T; ranSql: boolean }> {
    const selects = selectCount(target.dataSource);
    const value = await read();
    return { value, ranSql: selectCount(target.dataSource) > selects };
  }

  /** How the counters moved since `before`, once the store has answered the writes of the calls made (after their callers got their values). */
  async function counted(
    target: App,
    before: CacheStats,
  ): Promise<{ skipped: number; sets: number }> {
    await target.cache.settled();
    const now = target.cache.stats();
    return { skipped: now.skipped - before.skipped, sets: now.sets - before.sets };
  }

  /**
   * The serialized result held in Redis by the entry whose text contains `marker` (without the
   * entry's header lines), once the calls made before have stored theirs.
   */
  async function storedValue(marker: string): Promise<string | undefined> {
    await app.cache.settled();
    let cursor = "0";
    do {
      const [next, keys] = await app.redis.scan(cursor, "MATCH", `${ns}:e:*`, "COUNT", 1000);
      cursor = next;
      for (const key of keys) {
        const text = await app.redis.get(key);
        // The serialized result, without the entry's header and freshness line (maxValueBytes bounds the result).
        const value =
          text === null ? undefined : splitFreshness(text.slice(text.indexOf("\n") + 1)).json;
        if (value?.includes(marker)) return value;
      }
    } while (cursor !== "0");
    return undefined;
  }

  before(async () => {
    app = await openApp(ns, { fresh: true, cache: { maxValueBytes: LIMIT } });
    posts = new PostRepository(Post, app.dataSource.manager);
    app.cache.on("warning", (message: string) => warnings.push(message));
    // A table's first entry is refused while its version is created: have the versions exist.
    await posts.save({ title: "warm" });
    for (let i = 0; i < 2; i++) await posts.byTitle({ title: "warm" });
  });
  after(async () => {
    await dropNamespace(app.redis, ns);
    await app.close();
  });
  beforeEach(() => {
    warnings = [];
  });

  it("returns a larger result intact, runs the query again on the next call, counts it skipped and warns once", async () => {
    const title = "oversize";
    await posts.save(
      Array.from({ length: 40 }, (_, i) => ({
        title,
        subtitle: `${i} ${"s".repeat(100)}`,
        likes: "9007199254740993",
      })),
    );
    const fresh = await app.dataSource
      .getRepository(Post)
      .find({ where: { title }, order: { id: "ASC" } });

    const stats = app.cache.stats();
    for (let i = 0; i < 3; i++) {
      const { value, ranSql } = await call(app, () => posts.byTitle({ title }));
      expect(value, `call ${i + 1}: the caller's result`).to.deep.equal(fresh);
      expect(
        value.every((post) => post instanceof Post && post.createdAt instanceof Date),
      ).to.equal(true);
      expect(ranSql, `call ${i + 1} ran the query`).to.equal(true);
    }
    expect(await storedValue(title), "an entry holding the result").to.equal(undefined);
    expect(await counted(app, stats)).to.deep.equal({ skipped: 3, sets: 0 });
    expect(warnings).to.have.lengthOf(1);
    expect(warnings[0])
      .to.match(/^PostRepository\b.*\.byTitle: /)
      .and.to.include(`maxValueBytes (${LIMIT})`);
  });

  it("stores a result of up to maxValueBytes, and not one byte more", async () => {
    const title = "boundary";
    const post = await posts.save({ title, subtitle: "" });
    await posts.byTitle({ title });
    const empty = Buffer.byteLength((await storedValue(title)) ?? "");
    expect(empty, "the serialized size with an empty subtitle").to.be.within(1, LIMIT - 1);

    // Each "y" of the subtitle adds one byte to the serialized result.
    for (const size of [LIMIT - 1, LIMIT]) {
      post.subtitle = "y".repeat(size - empty);
      await posts.save(post);
      const stats = app.cache.stats();
      expect(
        (await call(app, () => posts.byTitle({ title }))).ranSql,
        `the first call of a ${size}-byte result`,
      ).to.equal(true);
      expect(Buffer.byteLength((await storedValue(title)) ?? ""), "the stored size").to.equal(size);
      expect(await counted(app, stats), `the counters after a ${size}-byte result`).to.deep.equal({
        skipped: 0,
        sets: 1,
      });
      const hit = await call(app, () => posts.byTitle({ title }));
      expect(hit.ranSql, `the ${size}-byte result is served from the cache`).to.equal(false);
      expect(hit.value[0].subtitle).to.equal(post.subtitle);
    }

    post.subtitle = "y".repeat(LIMIT + 1 - empty);
    await posts.save(post);
    const stats = app.cache.stats();
    for (let i = 0; i < 2; i++) {
      const { value, ranSql } = await call(app, () => posts.byTitle({ title }));
      expect(value[0].subtitle).to.equal(post.subtitle);
      expect(ranSql, `call ${i + 1} of a ${LIMIT + 1}-byte result ran the query`).to.equal(true);
    }
    expect(
      Buffer.byteLength((await storedValue(title)) ?? ""),
      "the entry left in Redis (outdated, never served) is the last one small enough to be written",
    ).to.equal(LIMIT);
    expect(await counted(app, stats)).to.deep.equal({ skipped: 2, sets: 0 });
  });

  it("measures bytes, not characters", async () => {
    const text = "é".repeat(LIMIT * 0.75);
    let computed = 0;
    const read = () =>
      app.cache.wrap("accents", () => {
        computed++;
        return text;
      });
    for (let i = 0; i < 2; i++) expect(await read()).to.equal(text);
    expect(
      computed,
      "a value of fewer characters than the limit but more bytes is not stored",
    ).to.equal(2);
    expect(warnings.join("\n"))
      .to.include("wrap(accents)")
      .and.to.include(`maxValueBytes (${LIMIT})`);
  });

  it("set() does not store a value larger than maxValueBytes either", async () => {
    const big = "z".repeat(LIMIT + 1);
    const sets = app.cache.stats().sets;
    expect(
      await app.cache.set("too-big", big),
      "set() reports whether it stored the value",
    ).to.equal(false);
    expect(await app.cache.get("too-big")).to.equal(undefined);
    expect(app.cache.stats().sets).to.equal(sets);
  });

  it("keeps a larger result out of the in-process tier too", async () => {
    const tiered = await openApp(ns, {
      cache: { maxValueBytes: LIMIT, local: { maxBytes: 1024 * 1024 } },
    });
    try {
      const tieredPosts = new PostRepository(Post, tiered.dataSource.manager);
      const title = "oversize in the tier";
      await tieredPosts.save(
        Array.from({ length: 40 }, (_, i) => ({ title, subtitle: `${i} ${"s".repeat(100)}` })),
      );
      const stats = tiered.cache.stats();
      for (let i = 0; i < 3; i++) {
        const { value, ranSql } = await call(tiered, () => tieredPosts.byTitle({ title }));
        expect(value).to.have.lengthOf(40);
        expect(ranSql, `call ${i + 1} ran the query`).to.equal(true);
      }
      expect(await counted(tiered, stats)).to.deep.equal({ skipped: 3, sets: 0 });
    } finally {
      await tiered.close();
    }
  });
});
