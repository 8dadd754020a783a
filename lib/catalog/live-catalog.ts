import type { Catalog } from "./catalog";

/**
 * The catalog as last read, re-read on demand and whenever its fingerprint shows that DDL
 * committed (by any process). Reloads never overlap, and a reload asked for while one runs starts
 * after it, so DDL committed during a reload is never missed; requests that pile up meanwhile share
 * that one. A failed reload reports its error and keeps the last catalog, marked unsure until a
 * reload succeeds: the application's queries, which wait on it inside TypeORM's afterQuery, must
 * not fail for it, and what the catalog cannot answer is then treated conservatively.
 */
export class LiveCatalog {
  private running?: Promise<Catalog>;
  private queued?: Promise<Catalog>;
  private watcher?: NodeJS.Timeout;
  /** Why the last reload failed, until one succeeds. */
  private failure?: Error;

  constructor(
    private latest: Catalog,
    private readonly load: () => Promise<Catalog>,
    private readonly onError: (error: Error) => void,
  ) {}

  get(): Promise<Catalog> {
    return this.queued ?? this.running ?? Promise.resolve(this.latest);
  }

  /** Why the last reload failed, if it did: the catalog may then lack what DDL made since. */
  get failed(): Error | undefined {
    return this.failure;
  }

  reload(): Promise<Catalog> {
    if (this.queued) return this.queued;
    if (!this.running) return this.start();
    this.queued = this.running.then(() => {
      this.queued = undefined;
      return this.start();
    });
    return this.queued;
  }

  /**
   * Compares the fingerprint every `intervalMs` and reloads when it changed: DDL run by another
   * process (a migration) is seen within that time, with no event trigger to install. `changed`
   * runs once the new catalog is in place, with the one it replaced.
   */
  watch(
    intervalMs: number,
    fingerprint: () => Promise<string>,
    changed: (earlier: Catalog, now: Catalog) => Promise<unknown>,
  ): void {
    const tick = async () => {
      try {
        const earlier = await this.get();
        // A reload that failed is tried again here too: until one succeeds, every write invalidates everything.
        if (this.failure || (await fingerprint()) !== earlier.fingerprint) {
          const now = await this.reload();
          if (!this.failure) await changed(earlier, now);
        }
      } catch (error) {
        this.onError(error as Error);
      } finally {
        if (this.watcher) this.watcher = setTimeout(tick, intervalMs).unref();
      }
    };
    this.watcher = setTimeout(tick, intervalMs).unref();
  }

  stop(): void {
    clearTimeout(this.watcher);
    this.watcher = undefined;
  }

  private start(): Promise<Catalog> {
    const run: Promise<Catalog> = this.load()
      .then(
        (catalog) => {
          this.failure = undefined;
          return (this.latest = catalog);
        },
        (error: Error) => {
          this.failure = error;
          this.onError(error);
          return this.latest;
        },
      )
      .finally(() => {
        if (this.running === run) this.running = undefined;
      });
    this.running = run;
    return run;
  }
}
