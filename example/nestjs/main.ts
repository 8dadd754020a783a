import "reflect-metadata";
import { NestFactory } from "@nestjs/core";
import { getDataSourceToken } from "@nestjs/typeorm";
import { Client } from "pg";
import type { DataSource } from "typeorm";
import { QueryCache } from "../../lib";
import { seedBlog } from "../seed";
import { getServices, stopServices } from "../services";
import { sqlMark, sqlSince } from "../sql-counter";
import { blogModule, NEST_SCHEMA } from "./blog.module";

/**
 * `npm run example:nestjs`: the blog as a NestJS application. It serves GET /posts (a cached
 * page) and POST /posts/by/:author, then walks through a miss, a hit, a 304, a write and the fresh
 * page after it over HTTP, checks each step, and closes the app: the process exits by itself.
 * With `-- --serve`, it keeps serving on PORT (default 3000) until Ctrl-C.
 */
async function main(): Promise<void> {
  const serve = process.argv.includes("--serve");
  const { pgUrl, redisUrl } = await getServices();
  await createSchema(pgUrl);
  const app = await NestFactory.create(blogModule({ pgUrl, redisUrl }), {
    logger: ["error", "warn"],
  });
  app.enableShutdownHooks();
  const cache = app.get(QueryCache);
  cache.on("warning", (message: string) => console.log(`   (cache warning: ${message})`));
  await cache.clear();
  await seedBlog(app.get<DataSource>(getDataSourceToken()));
  await app.listen(serve ? Number(process.env.PORT ?? 3000) : 0, "127.0.0.1");
  const url = (await app.getUrl()).replace("[::1]", "127.0.0.1");
  console.log(`typeorm-autocache NestJS example: ${url}/posts (schema "${NEST_SCHEMA}")`);
  if (serve) {
    console.log(
      "Serving; Ctrl-C closes the app (the cache flushes and quits its Redis connection).",
    );
    return;
  }
  const failures: string[] = [];
  try {
    await tour(url, failures);
    const stats = cache.stats({ byMethod: true });
    console.log(
      `Cache counters: ${stats.hits} hits, ${stats.misses} misses, ${stats.sets} stored, ${stats.invalidations} versions bumped.`,
    );
    for (const [method, m] of Object.entries(stats.byMethod))
      console.log(`  ${method}: ${m.hits} hits, ${m.misses} misses`);
    await cache.clear();
  } finally {
    await app.close();
    await stopServices();
  }
  if (failures.length > 0)
    throw new Error(`The example's checks failed:\n  - ${failures.join("\n  - ")}`);
  console.log("All checks passed; the app is closed and the process exits by itself.");
}

async function tour(url: string, failures: string[]): Promise<void> {
  const check = (ok: boolean, what: string) => void (ok || failures.push(what));
  const get = async (headers: Record<string, string> = {}) => {
    const mark = sqlMark();
    const started = performance.now();
    const response = await fetch(`${url}/posts`, { headers });
    const text = await response.text();
    return {
      response,
      text,
      ms: performance.now() - started,
      sql: sqlSince(mark).filter((q) => /^\s*select/i.test(q)).length,
    };
  };
  const say = (step: string, r: { response: Response; ms: number; sql: number }) =>
    console.log(
      `${step}: ${r.response.status}, ${r.sql} SQL ${r.sql === 1 ? "query" : "queries"}, ${r.ms.toFixed(1)} ms, Cache-Control: ${r.response.headers.get("cache-control")}`,
    );

  const page = await get();
  say("1. GET /posts (miss: the handler runs)", page);
  // A namespace's first entry for a table is refused while its version is created: one more miss.
  let hit = await get();
  for (let i = 0; i < 2 && hit.sql > 0; i++) hit = await get();
  say("2. GET /posts again (hit: the stored response)", hit);
  check(
    hit.sql === 0 && hit.text === page.text,
    "the second GET is served from the cache, with no SQL",
  );
  const etag = hit.response.headers.get("etag") ?? "";
  const revalidated = await get({ "if-none-match": etag });
  say(`3. GET /posts with If-None-Match: ${etag}`, revalidated);
  check(
    revalidated.response.status === 304 && revalidated.sql === 0,
    "If-None-Match gets 304 from the cache",
  );
  const posted = await fetch(`${url}/posts/by/1`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ title: "Caching whole pages" }),
  });
  console.log(`4. POST /posts/by/1 "Caching whole pages": ${posted.status}`);
  const fresh = await get();
  say("5. GET /posts after the write (fresh: the page read post)", fresh);
  check(
    fresh.sql > 0 && fresh.text.includes("Caching whole pages"),
    "the GET after the write shows the new post",
  );
  console.log(
    `   ${(JSON.parse(fresh.text) as { posts: { title: string }[] }).posts.map((p) => p.title).join(" | ")}`,
  );
}

async function createSchema(pgUrl: string): Promise<void> {
  const client = new Client({ connectionString: pgUrl });
  await client.connect();
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS "${NEST_SCHEMA}"`);
  } finally {
    await client.end();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
