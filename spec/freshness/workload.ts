import type { Cluster, Redis } from "ioredis";
import { QueryFailedError } from "typeorm";
import type { App } from "../support/fixture";
import type { ReadRecord, WriteRecord } from "./history";
import { Random } from "./random";
import { type AccountReads, planRead } from "./reads";
import { planWrite, runWrite } from "./writes";

/** The shape of a run: how many rows writers fight over, and what share of operations read. */
export interface Profile {
  readonly readShare: number;
  /** Account ids are drawn from 1..accounts, groups from 0..groups-1, and so on. */
  readonly accounts: number;
  readonly groups: number;
  readonly items: number;
  readonly labels: number;
  /** Weight of slowGroup among the reads (the others weigh 1 to 3). */
  readonly slowReads: number;
  /** How long slowGroup waits between its query and its write to the cache. */
  readonly slowMs: number;
  /** Share of explicit transactions that roll back. */
  readonly rollbacks: number;
}

export const DEFAULT_PROFILE: Profile = {
  readShare: 0.7,
  accounts: 24,
  groups: 4,
  items: 48,
  labels: 8,
  slowReads: 1,
  slowMs: 25,
  rollbacks: 0.25,
};

/** One application instance of the run (see App), with the workload's reads over its own schema. */
export type FreshApp = Pick<App<Redis | Cluster>, "dataSource" | "redis" | "cache"> & {
  readonly reads: AccountReads;
  readonly schema: string;
};

export interface Progress {
  readonly done: number;
  readonly total: number;
  readonly reads: number;
  readonly writes: number;
  readonly hits: number;
  readonly misses: number;
}

/** Times every operation on one clock (ms since the recorder was made) and keeps their records. */
export class Recorder {
  private readonly origin = process.hrtime.bigint();
  readonly writes: WriteRecord[] = [];
  readonly reads: ReadRecord[] = [];
  /** Reads that threw something other than a database error: the cache's fault (invariant 6). */
  readonly readErrors: string[] = [];
  /** Reads the database refused, as it would have without the cache (a deadlock victim, say). */
  readonly readDatabaseErrors: string[] = [];

  now(): number {
    return Number(process.hrtime.bigint() - this.origin) / 1e6;
  }
}

export interface WorkloadOptions {
  /** How many operations to run at most. */
  readonly ops: number;
  /** Ends the run early: checked before each operation starts. */
  readonly stop?: () => boolean;
  readonly seed: number;
  readonly workers: number;
  readonly profile: Profile;
  readonly onProgress?: (progress: Progress) => void;
  readonly progressEveryMs?: number;
}

/**
 * Runs `ops` operations (fewer when `stop` says so first), and resolves how many it ran on `workers` concurrent workers over the application instances. Operation
 * i is drawn from its own generator, so a seed always produces the same operations; only their
 * interleaving, which real concurrency decides, differs from run to run.
 */
export async function runWorkload(
  apps: readonly FreshApp[],
  recorder: Recorder,
  options: WorkloadOptions,
): Promise<number> {
  let next = 0;
  let done = 0;
  const progress = (): Progress => {
    const stats = apps.map((a) => a.cache.stats());
    return {
      done,
      total: options.ops,
      reads: recorder.reads.length,
      writes: recorder.writes.length,
      hits: stats.reduce((n, s) => n + s.hits, 0),
      misses: stats.reduce((n, s) => n + s.misses, 0),
    };
  };
  const timer =
    options.onProgress &&
    setInterval(() => options.onProgress!(progress()), options.progressEveryMs ?? 3000);
  const worker = async () => {
    for (let index = next++; index < options.ops && !options.stop?.(); index = next++) {
      const rng = Random.forOperation(options.seed, index);
      const id = String(index + 1);
      if (rng.chance(options.profile.readShare))
        await read(apps, recorder, rng, options.profile, id);
      else
        recorder.writes.push(
          await runWrite(planWrite(rng, options.profile), apps, id, () => recorder.now()),
        );
      done++;
    }
  };
  try {
    await Promise.all(Array.from({ length: options.workers }, worker));
    return done;
  } finally {
    if (timer) clearInterval(timer);
  }
}

async function read(
  apps: readonly FreshApp[],
  recorder: Recorder,
  rng: Random,
  profile: Profile,
  id: string,
): Promise<void> {
  const app = rng.int(0, apps.length - 1);
  const planned = planRead(rng, profile);
  const label = `app${app + 1} ${planned.label}`;
  const start = recorder.now();
  let result: unknown;
  try {
    result = await planned.call(apps[app].reads);
  } catch (error) {
    const errors =
      error instanceof QueryFailedError ? recorder.readDatabaseErrors : recorder.readErrors;
    errors.push(`${label}: ${(error as Error).message}`);
    return;
  }
  recorder.reads.push({
    id,
    label,
    start,
    end: recorder.now(),
    observations: planned.observe(result),
  });
}
