import "reflect-metadata";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import Redis from "ioredis";
import {
  Column,
  DataSource,
  Entity,
  JoinColumn,
  ManyToOne,
  PrimaryGeneratedColumn,
  Repository,
} from "typeorm";
import { getServices, stopServices } from "../example/services";
import { Cached, QueryCache, QueryCacheSubscriber, RedisStore } from "../lib";

/**
 * The precision table of `npm run bench` (also `node dist/bench/precision.js` alone): the same
 * operation sequence run with `precision: "table"`, with `precision: "row"`, and scored by an
 * exact oracle that invalidates a result only when a write changed a row the result holds or
 * would hold (by the row's values before and after). Hit ratios are of the cached reads.
 */

const SCHEMA = "autocache_bench_precision";
const AUTHORS = 40;
const POSTS = 400;
const OPS = Number(process.env.PRECISION_OPS ?? 20_000);

@Entity({ name: "author" })
class PAuthor {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;
}

@Entity({ name: "post" })
class PPost {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  title!: string;

  @Column()
  authorId!: number;

  @ManyToOne(() => PAuthor)
  @JoinColumn({ name: "authorId" })
  author?: PAuthor;
}

@Entity({ name: "comment" })
class PComment {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  body!: string;

  @Column()
  postId!: number;

  @ManyToOne(() => PPost, { onDelete: "CASCADE" })
  @JoinColumn({ name: "postId" })
  post?: PPost;
}

class PostReads extends Repository<PPost> {
  @Cached(600)
  byId(id: number): Promise<PPost | null> {
    return this.findOneBy({ id });
  }

  @Cached(600)
  byAuthor(authorId: number): Promise<PPost[]> {
    return this.find({ where: { authorId }, order: { id: "ASC" } });
  }

  @Cached(600)
  withAuthor(id: number): Promise<PPost[]> {
    return this.find({ where: { id }, relations: { author: true } });
  }

  @Cached(600)
  comments(postId: number): Promise<PComment[]> {
    return this.manager.find(PComment, { where: { postId }, order: { id: "ASC" } });
  }
}

class AuthorReads extends Repository<PAuthor> {
  @Cached(600)
  withPosts(id: number): Promise<PPost[]> {
    return this.manager.find(PPost, {
      where: { author: { id } },
      relations: { author: true },
      order: { id: "ASC" },
    });
  }
}

/** A deterministic generator, so every mode runs the same sequence. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Op =
  | { kind: "read"; read: string; arg: number }
  | { kind: "update"; post: number; title: string }
  | { kind: "save"; post: number; title: string; author?: number }
  | { kind: "comment"; post: number }
  | { kind: "rename"; author: number };

interface Workload {
  readonly name: string;
  readonly ops: Op[];
}

function singleRowWorkload(): Workload {
  const random = rng(9);
  const pick = (n: number) => 1 + Math.floor(random() * n);
  const ops: Op[] = [];
  for (let i = 0; i < OPS; i++) {
    const r = random();
    if (r < 0.45) ops.push({ kind: "read", read: "byId", arg: pick(POSTS) });
    else if (r < 0.9) ops.push({ kind: "read", read: "byAuthor", arg: pick(AUTHORS) });
    else if (r < 0.95) ops.push({ kind: "update", post: pick(POSTS), title: `u${i}` });
    // A fifth of the saves move the post to another author.
    else
      ops.push({
        kind: "save",
        post: pick(POSTS),
        title: `s${i}`,
        author: random() < 0.2 ? pick(AUTHORS) : undefined,
      });
  }
  return {
    name: "single-row writes: findOneBy({ id }) and one author's posts; update({ id }) and save()",
    ops,
  };
}

function joinWorkload(): Workload {
  const random = rng(17);
  const pick = (n: number) => 1 + Math.floor(random() * n);
  const ops: Op[] = [];
  for (let i = 0; i < OPS; i++) {
    const r = random();
    if (r < 0.3) ops.push({ kind: "read", read: "withAuthor", arg: pick(POSTS) });
    else if (r < 0.6) ops.push({ kind: "read", read: "withPosts", arg: pick(AUTHORS) });
    else if (r < 0.9) ops.push({ kind: "read", read: "comments", arg: pick(POSTS) });
    else if (r < 0.94) ops.push({ kind: "comment", post: pick(POSTS) });
    else if (r < 0.97) ops.push({ kind: "update", post: pick(POSTS), title: `u${i}` });
    else if (r < 0.99)
      ops.push({ kind: "save", post: pick(POSTS), title: `s${i}`, author: pick(AUTHORS) });
    else ops.push({ kind: "rename", author: pick(AUTHORS) });
  }
  return {
    name: "joins and lists: a post with its author, an author with posts, a post's comments; comments, updates, moves, renames",
    ops,
  };
}

/**
 * The exact oracle: a read is a hit when its key was computed before and no write since changed
 * a row its result holds or would hold. Rows are followed by value: a post's author before and after.
 */
function oracle(ops: readonly Op[]): number {
  const authorOf = new Map<number, number>();
  for (let p = 1; p <= POSTS; p++) authorOf.set(p, 1 + ((p - 1) % AUTHORS));
  const valid = new Set<string>();
  let hits = 0;
  let reads = 0;
  const drop = (key: string) => valid.delete(key);
  for (const op of ops) {
    if (op.kind === "read") {
      reads++;
      const key = `${op.read}:${op.arg}`;
      if (valid.has(key)) hits++;
      else valid.add(key);
      continue;
    }
    if (op.kind === "rename") {
      for (const [post, author] of authorOf) if (author === op.author) drop(`withAuthor:${post}`);
      drop(`withPosts:${op.author}`);
      continue;
    }
    if (op.kind === "comment") {
      drop(`comments:${op.post}`);
      continue;
    }
    const before = authorOf.get(op.post) as number;
    const after = op.kind === "save" && op.author !== undefined ? op.author : before;
    authorOf.set(op.post, after);
    for (const key of [
      `byId:${op.post}`,
      `withAuthor:${op.post}`,
      `byAuthor:${before}`,
      `byAuthor:${after}`,
      `withPosts:${before}`,
      `withPosts:${after}`,
    ])
      drop(key);
  }
  return hits / reads;
}

async function seed(dataSource: DataSource): Promise<void> {
  await dataSource.query(
    `TRUNCATE "${SCHEMA}"."comment", "${SCHEMA}"."post", "${SCHEMA}"."author" RESTART IDENTITY CASCADE`,
  );
  await dataSource
    .getRepository(PAuthor)
    .insert(Array.from({ length: AUTHORS }, (_, i) => ({ name: `author ${i + 1}` })));
  await dataSource.getRepository(PPost).insert(
    Array.from({ length: POSTS }, (_, i) => ({
      title: `post ${i + 1}`,
      authorId: 1 + (i % AUTHORS),
    })),
  );
}

/** Runs the sequence through a QueryCache of this precision; the hit ratio of its reads. */
async function measure(
  dataSource: DataSource,
  redisUrl: string,
  precision: "row" | "table",
  ops: readonly Op[],
): Promise<number> {
  await seed(dataSource);
  const redis = new Redis(redisUrl);
  const namespace = `bench-precision-${precision}-${process.pid}`;
  const cache = new QueryCache({ dataSource, store: new RedisStore(redis), namespace, precision });
  try {
    const posts = new PostReads(PPost, dataSource.manager);
    const authors = new AuthorReads(PAuthor, dataSource.manager);
    const repo = dataSource.getRepository(PPost);
    let hits = 0;
    let reads = 0;
    for (const op of ops) {
      switch (op.kind) {
        case "read": {
          const before = cache.stats().hits;
          if (op.read === "byId") await posts.byId(op.arg);
          else if (op.read === "byAuthor") await posts.byAuthor(op.arg);
          else if (op.read === "withAuthor") await posts.withAuthor(op.arg);
          else if (op.read === "comments") await posts.comments(op.arg);
          else await authors.withPosts(op.arg);
          reads++;
          if (cache.stats().hits > before) hits++;
          break;
        }
        case "update":
          await repo.update({ id: op.post }, { title: op.title });
          break;
        case "save": {
          const loaded = (await repo.findOneBy({ id: op.post })) as PPost;
          loaded.title = op.title;
          if (op.author !== undefined) loaded.authorId = op.author;
          await repo.save(loaded);
          break;
        }
        case "comment":
          await dataSource.getRepository(PComment).insert({ body: "c", postId: op.post });
          break;
        case "rename":
          await dataSource
            .getRepository(PAuthor)
            .update({ id: op.author }, { name: `renamed ${Math.random()}` });
          break;
      }
    }
    // Let the last entries land before the namespace goes.
    await cache.close();
    return hits / reads;
  } finally {
    await cache.clear().catch(() => undefined);
    redis.disconnect();
  }
}

export interface PrecisionRow {
  readonly workload: string;
  readonly table: number;
  readonly row: number;
  readonly oracle: number;
}

/** Runs both workloads in every mode; resolves the rows of the table. */
export async function runPrecision(
  pgUrl: string,
  redisUrl: string,
  say: (line: string) => void = () => undefined,
): Promise<PrecisionRow[]> {
  const setup = new DataSource({ type: "postgres", url: pgUrl });
  await setup.initialize();
  await setup.query(`CREATE SCHEMA IF NOT EXISTS "${SCHEMA}"`);
  await setup.destroy();
  const dataSource = new DataSource({
    type: "postgres",
    url: pgUrl,
    schema: SCHEMA,
    entities: [PAuthor, PPost, PComment],
    subscribers: [QueryCacheSubscriber],
    synchronize: true,
    dropSchema: true,
    logging: false,
  });
  await dataSource.initialize();
  try {
    const rows: PrecisionRow[] = [];
    for (const workload of [singleRowWorkload(), joinWorkload()]) {
      say(`  precision: ${workload.name} (${workload.ops.length.toLocaleString("en-US")} ops)`);
      const table = await measure(dataSource, redisUrl, "table", workload.ops);
      const row = await measure(dataSource, redisUrl, "row", workload.ops);
      rows.push({ workload: workload.name, table, row, oracle: oracle(workload.ops) });
    }
    return rows;
  } finally {
    await dataSource.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`).catch(() => undefined);
    await dataSource.destroy();
  }
}

export function precisionMarkdown(rows: readonly PrecisionRow[]): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  return [
    `### Precision: hit ratio of cached reads (${AUTHORS} authors, ${POSTS} posts, ${OPS.toLocaleString("en-US")} operations, 90% reads)`,
    "",
    "| workload | table | row | exact oracle | row / oracle |",
    "| --- | ---: | ---: | ---: | ---: |",
    ...rows.map(
      (r) =>
        `| ${r.workload} | ${pct(r.table)} | ${pct(r.row)} | ${pct(r.oracle)} | ${pct(r.row / r.oracle)} |`,
    ),
    "",
  ].join("\n");
}

if (require.main === module) {
  (async () => {
    const { pgUrl, redisUrl } = await getServices();
    try {
      const rows = await runPrecision(pgUrl, redisUrl, console.log);
      const report = precisionMarkdown(rows);
      console.log(`\n${report}`);
      writeFileSync(join(__dirname, "..", "..", "bench", "results", "precision.md"), report);
    } finally {
      await stopServices();
    }
  })().catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
}
