import "reflect-metadata";
import { stopServices } from "../../example/services";
import { type FreshnessReport, runFreshness } from "./harness";

/**
 * npm run soak -- --ops N --seed S [--workers W]
 *
 * Runs the freshness workload against the local PostgreSQL and Redis (or PG_URL and REDIS_URL),
 * prints progress every few seconds, any violation found, and ends with one line:
 * "soak: <N> ops, hit ratio <R>, stale reads <S>, dirty reads <D>". Exits 1 unless both are 0 and
 * the run itself was sound (every logged write attributed, no cached read threw a non-database error).
 */
async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const ops = args.ops ?? 20000;
  const seed = args.seed ?? Math.floor(Math.random() * 2 ** 31);
  const workers = args.workers ?? 8;
  console.log(
    `soak: ${ops} ops, seed ${seed}, ${workers} workers (rerun with --ops ${ops} --seed ${seed})`,
  );
  const started = Date.now();
  let report: FreshnessReport;
  try {
    report = await runFreshness({
      ops,
      seed,
      workers,
      progressEveryMs: 3000,
      onProgress: (p) => {
        const seconds = (Date.now() - started) / 1000;
        const ratio = p.hits + p.misses === 0 ? 0 : p.hits / (p.hits + p.misses);
        console.log(
          `soak: ${p.done}/${p.total} ops (${p.reads} reads, ${p.writes} writes), hit ratio ${ratio.toFixed(3)}, ${(p.done / seconds).toFixed(0)} ops/s`,
        );
      },
    });
  } finally {
    await stopServices();
  }
  console.log(
    `soak: checked ${report.reads} reads against ${report.writes} writes in ${report.seconds.toFixed(1)} s`,
  );
  console.log(
    `soak: ${report.rolledBack} writes rolled back on purpose; ${[...report.failures.values()].reduce((a, b) => a + b, 0)} failed:`,
  );
  for (const [error, count] of [...report.failures].sort((a, b) => b[1] - a[1]).slice(0, 8))
    console.log(`  ${count} × ${error}`);
  const unused = [...report.paths].filter(([, n]) => n === 0).map(([p]) => p);
  console.log(
    `soak: ${report.paths.size - unused.length}/${report.paths.size} write paths changed rows${unused.length ? `; never: ${unused.join(", ")}` : ""}`,
  );
  for (const warning of report.warnings) console.log(`soak: cache warning: ${warning}`);
  if (report.storeErrors > 0)
    console.log(
      `soak: ${report.storeErrors} store calls failed or timed out (the caches failed open)`,
    );
  for (const error of report.readErrors.slice(0, 10)) console.log(`soak: read error: ${error}`);
  for (const error of report.readDatabaseErrors.slice(0, 10))
    console.log(`soak: read refused by the database: ${error}`);
  if (report.unattributed.length > 0)
    console.log(
      `soak: harness fault: ${report.unattributed.length} logged writes no operation claims`,
    );
  for (const v of [...report.stale.slice(0, 20), ...report.dirty.slice(0, 20)]) {
    console.log(`${v.kind.toUpperCase()} ${v.read}:`);
    for (const detail of v.details) console.log(`  ${detail}`);
  }
  console.log(
    `soak: ${report.ops} ops, hit ratio ${report.hitRatio.toFixed(3)}, stale reads ${report.stale.length}, dirty reads ${report.dirty.length}`,
  );
  const clean =
    report.stale.length === 0 &&
    report.dirty.length === 0 &&
    report.unattributed.length === 0 &&
    report.readErrors.length === 0;
  return clean ? 0 : 1;
}

function parseArgs(argv: string[]): { ops?: number; seed?: number; workers?: number } {
  const out: Record<string, number> = {};
  for (let i = 0; i < argv.length; i++) {
    const match = /^--(ops|seed|workers)(?:=(.*))?$/.exec(argv[i]);
    if (!match) throw new Error(`unknown argument ${argv[i]}; use --ops N --seed S [--workers W]`);
    const value = Number(match[2] ?? argv[++i]);
    if (!Number.isInteger(value) || value < 0)
      throw new Error(`--${match[1]} takes a whole number`);
    out[match[1]] = value;
  }
  return out;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    console.error(error);
    process.exitCode = 2;
  },
);
