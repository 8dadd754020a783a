import { EventEmitter } from "node:events";
import { Client } from "pg";
import type { LogicalReplicationService, Pgoutput } from "pg-logical-replication";
import { ChangeFeedSetupError } from "../errors";
import type { RowChange as InvalidatedRow } from "../invalidation/row-precision";
import { Backlog, type Batch } from "./backlog";
import {
  type ChangeFeedOptions,
  type ResolvedFeedOptions,
  resolveFeedOptions,
} from "./feed-options";
import { formatLsn, parseLsn } from "./lsn";
import {
  dropSlot,
  isSlotInUse,
  lacksReplication,
  prepareSlot,
  readLag,
  type SlotLag,
} from "./slot-setup";
import { TransactionAssembler } from "./transactions";

/** What one delivery invalidated, for the "delivered" event. */
export interface Delivery {
  /** Committed transactions it covered. */
  readonly transactions: number;
  /** Their transaction ids (the first maxRowsPerDelivery of them). */
  readonly xids: readonly number[];
  /** The tables invalidated, "schema.table". */
  readonly tables: readonly string[];
  /** The slot's position once this delivery is confirmed. */
  readonly lsn: string;
  /** Milliseconds from the earliest commit it covers (the server's clock) to its delivery. */
  readonly sinceCommitMs: number;
}

export interface ChangeFeedEvents {
  /** This instance holds the slot and follows the stream. */
  active: [];
  /** Another connection holds the slot; this instance tries again every retryInterval. */
  standby: [];
  /** Invalidations reached the store, and the slot may move past them. */
  delivered: [Delivery];
  /** The server keeps more WAL for the slot than lagWarningBytes. */
  lag: [SlotLag];
  /** Something failed (the connection, the store); the feed retries and confirms nothing it did not deliver. */
  feedError: [Error];
}

// Below PostgreSQL's default wal_sender_timeout (60 s), so an idle feed is never cut off.
const STATUS_INTERVAL_MS = 10_000;
// A stream silent for this long, although every status asked for a reply, is taken for dead.
const SILENCE_LIMIT_MS = 3 * STATUS_INTERVAL_MS;
const DELIVERY_RETRY_FIRST_MS = 50;
const DELIVERY_RETRY_MAX_MS = 1000;

type ReplicationModule = typeof import("pg-logical-replication");

/**
 * Follows PostgreSQL's logical replication stream (pgoutput) and turns every committed
 * transaction into the invalidations a write through the DataSource makes, so that writes from
 * anywhere (psql, another service, COPY, another namespace) invalidate too.
 *
 * Nothing is lost: the slot is confirmed only up to transactions whose invalidations reached the
 * store, so after a crash, a broken connection or a store outage the server sends the rest again.
 * One instance consumes a slot at a time; the others stand by and take it over when it is free.
 */
export class ChangeFeed extends EventEmitter<ChangeFeedEvents> {
  private readonly options: ResolvedFeedOptions;
  private readonly assembler = new TransactionAssembler();
  private readonly backlog: Backlog;
  private replication?: ReplicationModule;
  private service?: LogicalReplicationService;
  private adminClient?: Promise<Client>;
  private loop?: Promise<void>;
  private delivering?: Promise<void>;
  /** A batch taken from the backlog and not delivered yet. */
  private inFlight = false;
  /** Where the slot is confirmed (or may be): every transaction before it is delivered. */
  private confirmed = 0n;
  /** Whether `confirmed` is known to be at least the slot's own, so statuses never move it back. */
  private statusReady = false;
  private lastHeard = 0;
  private stopped = true;
  private standingBy = false;
  private firstOutcome?: { resolve(): void; reject(error: Error): void };
  private starting?: Promise<void>;
  private wake?: () => void;
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(options: ChangeFeedOptions) {
    super();
    this.options = resolveFeedOptions(options);
    this.backlog = new Backlog(this.options.maxRowsPerDelivery);
  }

  /** Whether this instance holds the slot now. */
  get isActive(): boolean {
    return this.statusReady;
  }

  /**
   * Checks the server, creates the publication and the slot if allowed, and starts following the
   * slot, or standing by while another instance holds it. Rejects with ChangeFeedSetupError when
   * the server or the role cannot feed it (the message says the SQL that fixes it); once started,
   * it retries on its own whatever breaks, until stop().
   */
  start(): Promise<void> {
    this.starting ??= this.begin().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async begin(): Promise<void> {
    if (!this.stopped) return;
    try {
      this.replication = await import("pg-logical-replication");
    } catch {
      throw new ChangeFeedSetupError(
        "the package pg-logical-replication is not installed",
        "npm install pg-logical-replication",
      );
    }
    try {
      await prepareSlot(await this.admin(), this.options, this.options.create);
      this.stopped = false;
      const first = new Promise<void>(
        (resolve, reject) => (this.firstOutcome = { resolve, reject }),
      );
      this.loop = this.run();
      await first;
    } catch (error) {
      await this.closeAdmin();
      throw error;
    }
    if (this.stopped) return;
    this.every(STATUS_INTERVAL_MS, () => this.keepAlive());
    this.every(this.options.lagCheckInterval, () => this.checkLag());
  }

  /**
   * Stops following the slot, after the delivery under way (if any) is confirmed. What was not
   * delivered stays in the slot for the next start, here or in another instance.
   */
  async stop(): Promise<void> {
    // A start under way settles first (as active, standing by, or failed), so it cannot outlive this stop.
    await this.starting?.catch(() => undefined);
    if (this.stopped) return;
    this.stopped = true;
    for (const timer of this.timers.splice(0)) clearInterval(timer);
    this.wake?.();
    await this.delivering;
    this.sendStatus(false);
    await this.service?.stop();
    await this.loop;
    await this.closeAdmin();
  }

  /** How far the slot is behind the server, or undefined when the slot does not exist. */
  async lag(): Promise<SlotLag | undefined> {
    return readLag(await this.admin(), this.options.slot);
  }

  /**
   * Stops the feed and drops its slot, so the server keeps no WAL for it any more. Call it when
   * the feed is retired for good: a later start() creates a new slot, which does not see what was
   * committed in between (clear the cache then).
   */
  async dropSlot(): Promise<void> {
    await this.stop();
    const admin = new Client(this.options.connection);
    await admin.connect();
    try {
      await dropSlot(admin, this.options.slot);
    } finally {
      await admin.end();
    }
  }

  /** Sessions one after another: each ends when the connection breaks or the slot is held elsewhere. */
  private async run(): Promise<void> {
    while (!this.stopped) {
      // Streaming more than can be delivered would only grow the backlog.
      await this.delivering;
      if (this.stopped) break;
      const failure = await this.session();
      if (this.stopped) break;
      if (failure && isSlotInUse(failure)) {
        if (!this.standingBy) this.emit("standby");
        this.standingBy = true;
        this.settleFirst();
      } else if (failure && this.firstOutcome) {
        this.stopped = true;
        this.settleFirst(
          lacksReplication(failure)
            ? replicationRefused(this.options.connection.user, failure)
            : failure,
        );
        break;
      } else if (failure) {
        this.emit("feedError", failure);
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, this.options.retryInterval).unref();
      });
    }
  }

  /** One replication connection, from START_REPLICATION to its end; resolves with why it ended. */
  private async session(): Promise<Error | undefined> {
    const { LogicalReplicationService, PgoutputPlugin } = this.replication as ReplicationModule;
    // Never acknowledged by the client itself: it would confirm what was received, not delivered.
    const service = new LogicalReplicationService(this.options.connection, {
      acknowledge: { auto: false, timeoutSeconds: 0 },
    });
    this.service = service;
    service.on("data", (_lsn: string, message: Pgoutput.Message) => this.accept(message));
    service.on("heartbeat", (lsn: string, _time: number, respond: boolean) =>
      this.heartbeat(lsn, respond),
    );
    service.on("start", () => void this.becomeActive(service));
    service.on("error", () => undefined); // the subscribe promise carries it
    const plugin = new PgoutputPlugin({
      protoVersion: 1,
      publicationNames: [this.options.publication],
    });
    try {
      // From 0/0, that is from the slot's confirmed position: the client's own memory of what it
      // received must not skip what was never delivered.
      await service.subscribe(plugin, this.options.slot, "0/0");
      return undefined;
    } catch (error) {
      return error as Error;
    } finally {
      this.statusReady = false;
      this.service = undefined;
      this.assembler.reset();
      await service.destroy().catch(() => undefined);
    }
  }

  private async becomeActive(service: LogicalReplicationService): Promise<void> {
    this.lastHeard = Date.now();
    try {
      const { rows } = await (await this.admin()).query(
        `SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`,
        [this.options.slot],
      );
      if (rows[0]?.lsn) this.confirmed = maxLsn(this.confirmed, parseLsn(rows[0].lsn));
    } catch (error) {
      this.emit("feedError", error as Error);
      await service.stop();
      return;
    }
    if (this.service !== service) return;
    this.statusReady = true;
    this.standingBy = false;
    this.sendStatus(false);
    this.settleFirst();
    this.emit("active");
  }

  private accept(message: Pgoutput.Message): void {
    this.lastHeard = Date.now();
    const committed = this.assembler.accept(message);
    if (!committed) return;
    this.backlog.add(committed);
    this.delivering ??= this.deliver().finally(() => {
      this.delivering = undefined;
    });
  }

  /**
   * A keepalive carries the server's position. With no transaction open or undelivered, nothing
   * before it remains to deliver, so the slot may move there: the server then frees the WAL of
   * writes the publication does not cover.
   */
  private heartbeat(lsn: string, respond: boolean): void {
    this.lastHeard = Date.now();
    if (
      this.statusReady &&
      !this.assembler.inTransaction &&
      this.backlog.isEmpty &&
      !this.inFlight
    ) {
      this.confirmed = maxLsn(this.confirmed, parseLsn(lsn));
    }
    if (respond) this.sendStatus(false);
  }

  /** Delivers what the backlog holds, merged, until it is empty; retries while the store is down. */
  private async deliver(): Promise<void> {
    let retryIn = DELIVERY_RETRY_FIRST_MS;
    while (!this.stopped) {
      const batch = this.backlog.take();
      if (!batch) return;
      this.inFlight = true;
      let delivered = false;
      try {
        delivered = await this.invalidate(batch);
      } catch (error) {
        this.emit("feedError", error as Error);
      } finally {
        this.inFlight = false;
      }
      if (!delivered) {
        if (retryIn === DELIVERY_RETRY_FIRST_MS) {
          this.emit(
            "feedError",
            new Error(
              `ChangeFeed: the invalidations of ${batch.transactions} transaction(s) did not reach the store; retrying, with the stream paused and the slot not confirmed past them.`,
            ),
          );
          // A server shutting down waits for its logical consumers to confirm all it sent, and a
          // delivery may wait on that server (the catalog): letting go of the stream ends the wait
          // on both sides. The slot keeps everything; another instance may take it meanwhile.
          void this.service?.stop();
        }
        this.backlog.putBack(batch);
        await new Promise((resolve) => setTimeout(resolve, retryIn).unref());
        retryIn = Math.min(retryIn * 2, DELIVERY_RETRY_MAX_MS);
        continue;
      }
      retryIn = DELIVERY_RETRY_FIRST_MS;
      this.confirmed = maxLsn(this.confirmed, batch.endLsn);
      this.sendStatus(false);
      this.emit("delivered", {
        transactions: batch.transactions,
        xids: batch.xids,
        tables: [...batch.tables.keys()],
        lsn: formatLsn(batch.endLsn),
        sinceCommitMs: Date.now() - batch.firstCommitTime,
      });
    }
  }

  /**
   * The invalidations of a batch: each table it wrote by the rows it changed (row precision),
   * their inheritance and partition relatives whole, and whole the tables it truncated, or all of
   * them once the rows passed the bound (`batch.rows` undefined).
   */
  private invalidate(batch: Batch): Promise<boolean> {
    if (batch.tables.size === 0) return Promise.resolve(true);
    const rows: InvalidatedRow[] = [];
    for (const change of batch.rows ?? []) {
      const table = `${change.table.schema}.${change.table.name}`;
      if (!batch.truncated.has(table))
        rows.push({ table, before: change.before, after: change.after });
    }
    return this.options.cache.invalidateTables(
      [...batch.tables.values()],
      batch.relationsChanged,
      rows,
    );
  }

  /**
   * Reports the confirmed position. The client adds one to what it is given, and the server
   * skips, on a restart, every transaction whose commit starts before the reported position: so
   * it gets exactly the end of the last delivered commit.
   */
  private sendStatus(ping: boolean): void {
    if (!this.statusReady || this.confirmed === 0n) return;
    void this.service?.acknowledge(formatLsn(this.confirmed - 1n), ping).catch(() => undefined);
  }

  private keepAlive(): void {
    if (!this.statusReady) return;
    if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
      this.emit(
        "feedError",
        new Error(
          `ChangeFeed: the replication stream was silent for ${SILENCE_LIMIT_MS} ms; reconnecting.`,
        ),
      );
      void this.service?.stop();
      return;
    }
    this.sendStatus(true);
  }

  private async checkLag(): Promise<void> {
    try {
      const lag = await this.lag();
      if (lag && lag.bytes > this.options.lagWarningBytes) this.emit("lag", lag);
    } catch (error) {
      this.emit("feedError", error as Error);
    }
  }

  /** A connection for setup, lag and the slot's position, opened again after it broke. */
  private admin(): Promise<Client> {
    if (!this.adminClient) {
      const client = new Client(this.options.connection);
      const opening = client.connect().then(() => client);
      this.adminClient = opening;
      const forget = () => {
        if (this.adminClient === opening) this.adminClient = undefined;
      };
      client.on("error", forget);
      client.on("end", forget);
      opening.catch(forget);
    }
    return this.adminClient;
  }

  private async closeAdmin(): Promise<void> {
    const admin = this.adminClient;
    this.adminClient = undefined;
    await admin?.then((client) => client.end()).catch(() => undefined);
  }

  private every(ms: number, task: () => unknown): void {
    const timer = setInterval(task, ms);
    timer.unref();
    this.timers.push(timer);
  }

  private settleFirst(error?: Error): void {
    const first = this.firstOutcome;
    this.firstOutcome = undefined;
    if (error) first?.reject(error);
    else first?.resolve();
  }
}

function maxLsn(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

function replicationRefused(user: string | undefined, cause: Error): ChangeFeedSetupError {
  return new ChangeFeedSetupError(
    `the role may not open a replication connection (${cause.message})`,
    `ALTER ROLE ${user ? `"${user}"` : "<role>"} WITH REPLICATION;  -- on RDS/Aurora: GRANT rds_replication TO <role>;`,
  );
}
