import Redis, { type Cluster } from "ioredis";
import { getServices } from "../../example/services";
import type { CacheStore } from "../../lib";
import { QueryCache, RedisStore } from "../../lib";
import type { QueryCacheOptions } from "../../lib/options";
import { dropNamespace, openRedis, uniqueNamespace } from "../support/fixture";
import { Account, TABLES } from "./entities";
import { checkHistory, type LogEntry, type Violation } from "./history";
import { AccountReads } from "./reads";
import { dropSchema, openFreshnessDataSource, readLog, sessionOptions } from "./schema";
import {
  DEFAULT_PROFILE,
  type FreshApp,
  type Profile,
  type Progress,
  Recorder,
  runWorkload,
} from "./workload";
import { WRITE_PATHS } from "./writes";

/** A store for a run; drain() lets work it deferred finish before the run is torn down. */
export type StoreFactory = (redis: Redis) => CacheStore & { drain?(): Promise<void> };

export interface EnvironmentOptions {
  store?: StoreFactory;
  profile?: Profile;
  /**
   * Opens each instance's own client to a Redis other than the shared test one (a throwaway
   * server or a cluster), for a RedisStore; `store` is then ignored.
   */
  connect?: () => Promise<Redis | Cluster>;
  cache?: Partial<Omit<QueryCacheOptions, "dataSource" | "store" | "namespace">>;
  /** A PostgreSQL other than the shared test one (one with wal_level=logical, say). */
  pgUrl?: string;
}

/**
 * Two application instances (separate DataSources, Redis clients and QueryCaches) over one
 * PostgreSQL schema and one Redis namespace, with the workload's tables, triggers and seed rows.
 */
export class Environment {
  readonly recorder = new Recorder();
  /** What the caches warned about, once per message. */
  readonly warnings = new Set<string>();

  private constructor(
    readonly namespace: string,
    private readonly pgUrl: string,
    readonly apps: readonly FreshApp[],
    private readonly stores: ReturnType<StoreFactory>[],
  ) {}

  static async open(options: EnvironmentOptions = {}): Promise<Environment> {
    const pgUrl = options.pgUrl ?? (await getServices()).pgUrl;
    const namespace = uniqueNamespace();
    const apps: FreshApp[] = [];
    const stores: ReturnType<StoreFactory>[] = [];
    const session = await sessionOptions(pgUrl);
    try {
      for (const create of [true, false]) {
        const dataSource = await openFreshnessDataSource(pgUrl, namespace, create, session);
        let store: ReturnType<StoreFactory>;
        let redis: Redis | Cluster;
        if (options.connect) {
          redis = await options.connect();
          store = new RedisStore(redis);
        } else {
          const shared = await openRedis();
          redis = shared;
          store = (options.store ?? ((r) => new RedisStore(r)))(shared);
        }
        stores.push(store);
        const cache = new QueryCache({ ...options.cache, dataSource, store, namespace });
        apps.push({
          dataSource,
          redis,
          cache,
          reads: new AccountReads(Account, dataSource.manager),
          schema: namespace,
        });
      }
    } catch (error) {
      await closeApps(apps, namespace);
      await dropSchema(pgUrl, namespace);
      throw error;
    }
    const env = new Environment(namespace, pgUrl, apps, stores);
    for (const app of apps)
      app.cache.on("warning", (message: string) =>
        env.warnings.add(message.replace(namespace, "<schema>")),
      );
    try {
      await env.seed(options.profile ?? DEFAULT_PROFILE);
    } catch (error) {
      await env.close();
      throw error;
    }
    return env;
  }

  /** Fills the tables (two thirds of the accounts, half the items, every label) as one recorded write. */
  private async seed(p: Profile): Promise<void> {
    const { dataSource, schema } = this.apps[0];
    const t = (name: string) => `"${schema}"."${name}"`;
    const accounts = Math.ceil((p.accounts * 2) / 3);
    const start = this.recorder.now();
    const runner = dataSource.createQueryRunner();
    try {
      await runner.query(`SELECT set_config('fr.op', 'seed', false)`);
      await runner.query(
        `INSERT INTO ${t(TABLES.account)} (id, grp) SELECT i, i % ${p.groups} FROM generate_series(1, ${accounts}) i`,
      );
      await runner.query(
        `INSERT INTO ${t(TABLES.item)} (id, account_id, qty) SELECT i, 1 + i % ${accounts}, 1 FROM generate_series(1, ${Math.ceil(p.items / 2)}) i`,
      );
      await runner.query(
        `INSERT INTO ${t(TABLES.label)} (id, name) SELECT i, 'l' || i FROM generate_series(1, ${p.labels}) i`,
      );
      await runner.query(
        `INSERT INTO ${t(TABLES.accountLabel)} (account_id, label_id)
           SELECT a, 1 + (a * 7 + k) % ${p.labels} FROM generate_series(1, ${accounts}) a, generate_series(0, 1) k`,
      );
      await runner.query(`SELECT set_config('fr.op', '', false)`);
    } finally {
      await runner.release();
    }
    this.recorder.writes.push({
      id: "seed",
      label: "seed",
      start,
      commitFrom: start,
      end: this.recorder.now(),
      outcome: "committed",
    });
  }

  async log(): Promise<LogEntry[]> {
    return readLog(this.apps[0].dataSource, this.namespace);
  }

  /** Judges everything recorded so far against the committed writes. */
  async verdict(log?: readonly LogEntry[]) {
    return checkHistory(this.recorder.writes, this.recorder.reads, log ?? (await this.log()));
  }

  hits(): { hits: number; misses: number; errors: number } {
    const stats = this.apps.map((a) => a.cache.stats());
    return {
      hits: stats.reduce((n, s) => n + s.hits, 0),
      misses: stats.reduce((n, s) => n + s.misses, 0),
      errors: stats.reduce((n, s) => n + s.errors, 0),
    };
  }

  async close(): Promise<void> {
    for (const store of this.stores) await store.drain?.();
    await closeApps(this.apps, this.namespace);
    await dropSchema(this.pgUrl, this.namespace);
  }
}

async function closeApps(apps: readonly FreshApp[], namespace: string): Promise<void> {
  for (const app of apps) await app.cache.close();
  // Throwaway servers and clusters go with their keys; only the shared Redis needs cleaning.
  if (apps.length > 0 && apps[0].redis instanceof Redis)
    await dropNamespace(apps[0].redis, namespace);
  for (const app of apps) {
    await app.dataSource.destroy();
    app.redis.disconnect();
  }
}

export interface FreshnessOptions {
  /** Operations to run; with `during`, at most this many (the run ends when `during` has). */
  readonly ops: number;
  readonly seed: number;
  readonly workers?: number;
  readonly profile?: Partial<Profile>;
  /** Wraps each instance's Redis in a store other than RedisStore, e.g. a deliberately broken one. */
  readonly store?: StoreFactory;
  readonly onProgress?: (progress: Progress) => void;
  readonly progressEveryMs?: number;
  readonly connect?: EnvironmentOptions["connect"];
  readonly cache?: EnvironmentOptions["cache"];
  readonly pgUrl?: string;
  /**
   * Runs beside the workload (a fault injected mid-run, say, in phases that wait for counts of
   * operations rather than for time). Once it resolves, the workload stops starting operations.
   */
  readonly during?: (env: Environment) => Promise<void>;
}

export interface FreshnessReport {
  readonly ops: number;
  readonly reads: number;
  readonly writes: number;
  readonly rolledBack: number;
  /** Per write path, the committed operations that ran it and changed at least one row. */
  readonly paths: ReadonlyMap<string, number>;
  /** Writes that failed (a key already taken, a row gone), counted by their first error line. */
  readonly failures: ReadonlyMap<string, number>;
  readonly readErrors: readonly string[];
  readonly readDatabaseErrors: readonly string[];
  readonly hits: number;
  readonly misses: number;
  readonly hitRatio: number;
  readonly storeErrors: number;
  readonly warnings: readonly string[];
  readonly stale: readonly Violation[];
  readonly dirty: readonly Violation[];
  readonly unattributed: readonly LogEntry[];
  readonly seconds: number;
}

/** Opens an environment, runs the workload on it, checks the history and tears it all down. */
export async function runFreshness(options: FreshnessOptions): Promise<FreshnessReport> {
  const profile = { ...DEFAULT_PROFILE, ...options.profile };
  const began = Date.now();
  const env = await Environment.open({
    store: options.store,
    profile,
    connect: options.connect,
    cache: options.cache,
    pgUrl: options.pgUrl,
  });
  try {
    // Both settle before anything is torn down, whichever fails first.
    let duringEnded = false;
    const outcomes = await Promise.allSettled([
      runWorkload(env.apps, env.recorder, {
        ops: options.ops,
        stop: options.during && (() => duringEnded),
        seed: options.seed,
        workers: options.workers ?? 8,
        profile,
        onProgress: options.onProgress,
        progressEveryMs: options.progressEveryMs,
      }),
      options.during?.(env).finally(() => {
        duringEnded = true;
      }),
    ]);
    for (const outcome of outcomes) if (outcome.status === "rejected") throw outcome.reason;
    const ops = (outcomes[0] as PromiseFulfilledResult<number>).value;
    const log = await env.log();
    const verdict = await env.verdict(log);
    const wrote = new Set(log.map((e) => e.op));
    const paths = new Map(WRITE_PATHS.map((p) => [p, 0]));
    for (const w of env.recorder.writes) {
      if (w.outcome !== "committed" || !wrote.has(w.id)) continue;
      for (const step of new Set(w.steps)) paths.set(step, (paths.get(step) ?? 0) + 1);
    }
    const { hits, misses, errors } = env.hits();
    const failures = new Map<string, number>();
    for (const w of env.recorder.writes) {
      if (w.outcome === "failed")
        failures.set(w.error ?? "?", (failures.get(w.error ?? "?") ?? 0) + 1);
    }
    return {
      ops,
      reads: env.recorder.reads.length,
      writes: env.recorder.writes.length - 1,
      rolledBack: env.recorder.writes.filter((w) => w.outcome === "rolled back").length,
      paths,
      failures,
      readErrors: env.recorder.readErrors,
      readDatabaseErrors: env.recorder.readDatabaseErrors,
      hits,
      misses,
      hitRatio: hits + misses === 0 ? 0 : hits / (hits + misses),
      storeErrors: errors,
      warnings: [...env.warnings],
      stale: verdict.stale,
      dirty: verdict.dirty,
      unattributed: verdict.unattributed,
      seconds: (Date.now() - began) / 1000,
    };
  } finally {
    await env.close();
  }
}
