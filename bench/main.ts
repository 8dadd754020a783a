import "reflect-metadata";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { buildRoster } from "./contenders";
import { benchChangeFeed } from "./feed";
import { fillDependents, memory, profileHits, propagation, stampede } from "./figures";
import { benchPages } from "./page";
import { precisionMarkdown, runPrecision } from "./precision";
import { markdown, type Results, svg } from "./report";
import { runRounds } from "./rounds";
import {
  type Bench,
  DEPENDENT_COUNTS,
  LOCAL_MAX_BYTES,
  NAMESPACE,
  openBench,
  SCHEMA,
} from "./setup";
import { benchStores } from "./stores";

/**
 * `npm run bench`: sets up its own data, runs every contender interleaved in rounds in this one
 * process, prints the table and writes it to bench/results/latest.md with a chart beside it.
 * ROUNDS in the environment changes the number of counted rounds (default 20).
 */

const ROUNDS = Number(process.env.ROUNDS ?? 20);
const WARMUP = 2;
const RESULTS = join(__dirname, "..", "..", "bench", "results");
/** Other processes on the machine skew every figure; the report says how busy it was. */
const loadAtStart = loadavg()[0];

function say(line: string): void {
  console.log(line);
}

async function main(): Promise<void> {
  const started = performance.now();
  const elapsed = () => `${((performance.now() - started) / 1000).toFixed(0)} s`;
  say("typeorm-autocache benchmark");
  const bench = await openBench(say);
  try {
    say(`  Redis: namespace "${NAMESPACE}"`);
    say(
      bench.localCache
        ? `  In-process tier: on (local.maxBytes ${LOCAL_MAX_BYTES / 1024 / 1024} MiB), on a second DataSource sharing the namespace`
        : `  In-process tier: not available (${bench.localUnavailable}); contender 5 reads n/a`,
    );

    const fills = [];
    for (const count of DEPENDENT_COUNTS) {
      const fill = await fillDependents(bench, count, (done) =>
        progress(
          `  storing ${count.toLocaleString("en-US")} entries that depend on dep_${count}: ${done.toLocaleString("en-US")}`,
        ),
      );
      endProgress();
      say(
        `  stored ${fill.stored.toLocaleString("en-US")} entries depending on dep_${count} in ${fill.seconds.toFixed(1)} s`,
      );
      fills.push({ count, ...fill });
    }

    const roster = await buildRoster(bench);
    say(
      `  ${roster.contenders.length} contenders, ${WARMUP} warm-up + ${ROUNDS} rounds (${elapsed()} so far)`,
    );
    const roundsStarted = performance.now();
    const figures = await runRounds(roster.contenders, {
      rounds: ROUNDS,
      warmup: WARMUP,
      onRound: (done, total) => {
        const perRound = (performance.now() - roundsStarted) / done;
        progress(
          `  round ${done}/${total}${done <= WARMUP ? " (warm-up)" : ""}, about ${(((total - done) * perRound) / 1000).toFixed(0)} s left`,
        );
      },
    });
    endProgress();

    say("  1,000 concurrent misses on one key...");
    const herd = await stampede(bench);
    say("  memory per entry...");
    const mem = await memory(bench, roster.entryKey);
    say(
      bench.localCache
        ? "  in-process tier staleness after a write..."
        : "  in-process tier staleness: n/a",
    );
    const stale = await propagation(bench);
    say("  CPU profile of Redis hits...");
    const profile = await profileHits(bench);
    await benchStores(bench.pgUrl, bench.redisUrl, say);
    const changeFeed = await benchChangeFeed(say);
    const pages = await benchPages(bench);

    const results: Results = {
      environment: await environment(bench),
      rounds: ROUNDS,
      warmup: WARMUP,
      seconds: (performance.now() - started) / 1000,
      figures,
      checks: roster.checks,
      mixes: roster.mixes,
      roundTrips: roster.roundTrips,
      sizes: roster.sizes,
      fills,
      stampede: herd,
      memory: mem,
      propagation: stale,
      profile,
      localUnavailable: bench.localUnavailable,
      cacheErrors: bench.cacheErrors,
    };
    const report = markdown(results) + changeFeed;
    mkdirSync(RESULTS, { recursive: true });
    writeFileSync(join(RESULTS, "latest.md"), report);
    writeFileSync(join(RESULTS, "latest.svg"), svg(results));
    say("");
    say(report);
    say(`Written to bench/results/latest.md and latest.svg (${elapsed()}).`);
    const precision = precisionMarkdown(await runPrecision(bench.pgUrl, bench.redisUrl, say));
    writeFileSync(join(RESULTS, "precision.md"), precision);
    say(`\n${precision}`);
    say(`Written to bench/results/precision.md (${elapsed()}).`);
    for (const line of pages) say(line);
  } finally {
    say(`Removing schema "${SCHEMA}" and the keys under "${NAMESPACE}:"...`);
    await bench.close();
  }
}

async function environment(bench: Bench): Promise<string> {
  const redisVersion =
    /redis_version:(\S+)/.exec(String(await bench.redis.info("server")))?.[1] ?? "?";
  const [{ server_version: pgVersion }] = (await bench.plain.query("SHOW server_version")) as {
    server_version: string;
  }[];
  const cpu = cpus();
  return (
    `Node ${process.version}, ${cpu.length} × ${cpu[0]?.model.trim() ?? "?"}, PostgreSQL ${pgVersion}, Redis ${redisVersion}, ` +
    `${new Date().toISOString().slice(0, 16)}Z, load average ${loadAtStart.toFixed(1)} at start and ${loadavg()[0].toFixed(1)} at end`
  );
}

/** Progress on one line that rewrites itself on a terminal, or a line per update in a log. */
function progress(line: string): void {
  if (process.stdout.isTTY) process.stdout.write(`\r${line}\x1b[K`);
  else console.log(line);
}

function endProgress(): void {
  if (process.stdout.isTTY) process.stdout.write("\n");
}

main().then(
  () => exitWhenIdle(),
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
    exitWhenIdle();
  },
);

/** Everything is closed by now; if some handle still holds the process open, name it and leave anyway. */
function exitWhenIdle(): void {
  setTimeout(() => {
    console.error(
      `bench: still open after closing everything: ${process.getActiveResourcesInfo().join(", ")}; exiting.`,
    );
    process.exit();
  }, 3000).unref();
}
