import "reflect-metadata";
import { Redis } from "ioredis";
import { type CacheStore, MemoryStore, QueryCache, RedisStore } from "../lib";
import { openDatabase, SCHEMA } from "./database";
import { Comment, Post } from "./entities";
import { type PopularPost, PostRepository, postListQuery } from "./post-repository";
import { count, describeRead, medianMs, ms, type Observation, observe, wasHit } from "./probe";
import { seedBlog } from "./seed";
import { fallbackNotice, getServices, stopServices, where } from "./services";

/**
 * A small blog on typeorm-autocache: a post list and a "popular posts" list read through the
 * cache, a miss, a hit, a write, and the fresh read after it. Every outcome printed is measured
 * (cache counters, SQL statements seen, wall-clock time), and the fresh reads are checked at the
 * end, so a run that exits 0 also says the cache did its job.
 */

const NAMESPACE = "example";
const TIMED_READS = 200;
const NEW_TITLE = "New post";

class ChecksFailed extends Error {}

const failures: string[] = [];
function check(ok: boolean, what: string): void {
  if (!ok) failures.push(what);
}

async function main(): Promise<void> {
  const closers: (() => Promise<unknown>)[] = [stopServices];
  try {
    const services = await getServices();
    const notice = fallbackNotice(services, "the in-memory store (MemoryStore)");
    if (notice) console.log(`${notice}\n`);

    const dataSource = await openDatabase(services.pgUrl);
    closers.push(() => dataSource.destroy());

    let store: CacheStore = new MemoryStore();
    if (services.hasRedis) {
      const redis = new Redis(services.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
      closers.push(async () => {
        if (redis.status === "ready") await redis.quit();
        else redis.disconnect();
      });
      await redis.connect();
      store = new RedisStore(redis);
    }

    const cache = new QueryCache({ dataSource, store, namespace: NAMESPACE, defaultTtl: 300 });
    cache.on("warning", (message: string) => console.log(`   (cache warning: ${message})`));
    cache.on("storeError", (error: Error) =>
      console.log(`   (Redis error, the database answered instead: ${error.message})`),
    );
    closers.push(async () => {
      await cache.clear();
      await cache.close();
    });

    // An earlier run that stopped halfway may have left entries behind: start from none.
    await cache.clear();
    await seedBlog(dataSource);

    console.log("typeorm-autocache example: a small blog");
    console.log(
      `  PostgreSQL ${where(services.pgUrl)}, schema "${SCHEMA}" (rebuilt for this run: 2 authors, 3 posts, 5 comments)`,
    );
    console.log(
      services.hasRedis
        ? `  Redis ${where(services.redisUrl)}, namespace "${NAMESPACE}"`
        : `  No Redis: MemoryStore, the in-memory store, stands in for it wherever this tour says Redis`,
    );
    console.log();

    await tour(cache, new PostRepository(Post, dataSource.manager));

    const totals = cache.stats();
    console.log(
      `Cache counters for this run (seeding included): ${count(totals.hits, "hit", "hits")}, ${count(totals.misses, "miss", "misses")}, ` +
        `${count(totals.sets, "entry", "entries")} stored, ${totals.skipped} not stored, ` +
        `${count(totals.invalidations, "version", "versions")} bumped, ${count(totals.errors, "store error", "store errors")}.`,
    );
  } finally {
    await closeAll(closers.reverse());
  }
  if (failures.length > 0)
    throw new ChecksFailed(`The example's checks failed:\n  - ${failures.join("\n  - ")}`);
  console.log(
    `All checks passed: the reads after each write returned the new data. Cleared namespace "${NAMESPACE}" and closed everything.`,
  );
}

async function tour(cache: QueryCache, posts: PostRepository): Promise<void> {
  // 1. A miss: the method runs, its SQL goes to PostgreSQL, the result goes to Redis.
  let first = await observe(cache, () => posts.list());
  console.log(`1. First read of the post list: ${describeRead(first)}`);
  console.log(`     ${titles(first.value)}`);
  if (first.cache.misses > 0 && first.cache.sets === 0) {
    console.log(
      "     It was not stored: Redis had no version yet for a table this read depends on, and an entry",
    );
    console.log(
      "     is only stored once every version it relies on exists (this happens once, on a fresh Redis).",
    );
    first = await observe(cache, () => posts.list());
    console.log(`     Reading again: ${describeRead(first)}`);
  }
  console.log();

  // 2. A hit: one Redis round trip, no SQL. Timed over many reads, beside the same query uncached.
  const second = await observe(cache, () => posts.list());
  console.log(`2. Second read of the post list: ${describeRead(second)}`);
  console.log(
    `     It returned real entities: posts[0] instanceof Post is ${second.value[0] instanceof Post}, its author is ${second.value[0]?.author?.name}.`,
  );
  const hitRun = await observe(cache, () => medianMs(TIMED_READS, () => posts.list()));
  const plainPosts = posts.manager.getRepository(Post);
  const dbMedian = await medianMs(TIMED_READS, () => plainPosts.find(postListQuery));
  const hitMedian = hitRun.value;
  const allHits = hitRun.cache.misses === 0 && hitRun.sql.length === 0;
  console.log(
    `     Median of ${TIMED_READS} reads: ${ms(hitMedian)} from the cache (${allHits ? "all hits, 0 SQL queries" : `${hitRun.cache.misses} misses, ${hitRun.sql.length} SQL queries`})`,
  );
  console.log(
    `     against ${ms(dbMedian)} for the same query straight from PostgreSQL: ${(dbMedian / hitMedian).toFixed(1)}x faster.`,
  );
  check(
    wasHit(second) && allHits,
    "the repeated post list reads were served from Redis without SQL",
  );
  console.log();

  // 3. A write: the subscriber sees the INSERT and bumps post's version in Redis at COMMIT.
  const ada = first.value.find((p) => p.author.name === "Ada")?.author;
  const save = await observe(cache, () =>
    posts.save(posts.create({ title: NEW_TITLE, author: ada })),
  );
  console.log(`3. Saving a new post, '${NEW_TITLE}' by Ada: ${describeWrite(save)}`);
  console.log(
    "     QueryCacheSubscriber saw the INSERT into post; when the transaction committed, the cache bumped",
  );
  console.log(
    "     post's version in Redis, so every cached result that read post (the list, too) is outdated.",
  );
  console.log();

  // 4. The fresh read: the outdated entry is a miss, the method runs again and sees the new post.
  const fresh = await observe(cache, () => posts.list());
  const hasNew = fresh.value.some((p) => p.title === NEW_TITLE);
  console.log(`4. Read after the save: ${describeRead(fresh)}`);
  console.log(`     ${hasNew ? "fresh" : "STALE"}: ${titles(fresh.value)}`);
  check(
    fresh.value.length === 4 && hasNew,
    `the post list read after the save has 4 posts including '${NEW_TITLE}'`,
  );
  console.log();

  // 5. The popular list: its SQL reads post and author; comment_count() reads comment, named by dependsOn.
  const popular = await observe(cache, () => posts.popular(3));
  console.log(`5. Popular posts (top 3 by comments): ${describeRead(popular)}`);
  printPopular(popular.value);
  const popularAgain = await observe(cache, () => posts.popular(3));
  console.log(`   Read again: ${describeRead(popularAgain)}`);
  console.log();

  // 6. A write to comment, a table popular() depends on only through dependsOn.
  const newPost = fresh.value.find((p) => p.title === NEW_TITLE);
  const comment = await observe(cache, () =>
    posts.manager.getRepository(Comment).save({ body: "First!", post: newPost }),
  );
  console.log(`6. Adding a comment to '${NEW_TITLE}': ${describeWrite(comment)}`);
  console.log(
    "     This bumped comment's version. popular() named Comment in dependsOn, so its entry is outdated;",
  );
  console.log("     the post list never read comment, so its entry is not.");
  console.log();

  // 7. The popular list is fresh: the new post now has a comment and climbs into the top 3.
  const popularFresh = await observe(cache, () => posts.popular(3));
  const ranked = popularFresh.value.find((p) => p.title === NEW_TITLE);
  console.log(`7. Popular posts after the comment: ${describeRead(popularFresh)}`);
  printPopular(popularFresh.value);
  console.log(
    `     ${ranked ? `fresh: '${NEW_TITLE}' is in the top 3 with ${count(ranked.comments, "comment", "comments")}` : `STALE: '${NEW_TITLE}' is missing`}`,
  );
  check(
    ranked?.comments === 1,
    `the popular list read after the comment shows '${NEW_TITLE}' with 1 comment`,
  );
  console.log();

  // 8. The post list was not touched by the comment.
  const listAfterComment = await observe(cache, () => posts.list());
  console.log(`8. Post list after the comment: ${describeRead(listAfterComment)}`);
  console.log(
    wasHit(listAfterComment)
      ? "     Still cached: a comment changes neither post nor author, the tables the list reads."
      : "     Read again from PostgreSQL.",
  );
  check(listAfterComment.value.length === 4, "the post list after the comment still has 4 posts");
  console.log();
}

/** Runs every closer even when one fails, so no handle keeps the process alive; then throws the first failure. */
async function closeAll(closers: (() => Promise<unknown>)[]): Promise<void> {
  const errors: unknown[] = [];
  for (const close of closers) await close().catch((error: unknown) => errors.push(error));
  if (errors.length > 0) throw errors[0];
}

function describeWrite(o: Observation<unknown>): string {
  const verbs = o.sql.map(
    (sql) => /^\s*(START TRANSACTION|\w+)/i.exec(sql)?.[1].toUpperCase() ?? "?",
  );
  return (
    `${count(o.sql.length, "SQL statement", "SQL statements")} (${verbs.join(", ")}), ${ms(o.ms)}, ` +
    `${count(o.cache.invalidations, "version", "versions")} bumped in Redis`
  );
}

function titles(list: Post[]): string {
  return `${count(list.length, "post", "posts")}: ${list.map((p) => `'${p.title}'`).join(", ")}`;
}

function printPopular(list: PopularPost[]): void {
  for (const [i, p] of list.entries()) {
    console.log(
      `     #${i + 1} '${p.title}' by ${p.author}, ${count(p.comments, "comment", "comments")}`,
    );
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof ChecksFailed ? error.message : error);
  process.exitCode = 1;
});
