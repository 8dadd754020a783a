import type { Catalog } from "./catalog";

/**
 * The catalog as last read, re-read on demand. Reloads never overlap, and a reload asked for while
 * one runs starts after it, so DDL committed during a reload is never missed; requests that pile
 * up meanwhile share that one. A failed reload reports its error and keeps the last catalog: the
 * application's queries, which wait on it inside TypeORM's afterQuery, must not fail for it.
 */
export class LiveCatalog {
  private running?: Promise<Catalog>;
  private queued?: Promise<Catalog>;

  constructor(
    private latest: Catalog,
    private readonly load: () => Promise<Catalog>,
    private readonly onError: (error: Error) => void,
  ) {}

  get(): Promise<Catalog> {
    return this.queued ?? this.running ?? Promise.resolve(this.latest);
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

  private start(): Promise<Catalog> {
    const run: Promise<Catalog> = this.load()
      .then(
        (catalog) => (this.latest = catalog),
        (error: Error) => {
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
