import type { Catalog } from "./catalog";

/**
 * The catalog as last read, re-read on demand. Reloads never overlap, and a reload asked for while
 * one runs starts after it, so DDL committed during a reload is never missed; requests that pile
 * up meanwhile share that one.
 */
export class LiveCatalog {
  private running?: Promise<Catalog>;
  private queued?: Promise<Catalog>;

  constructor(
    private latest: Catalog,
    private readonly load: () => Promise<Catalog>,
  ) {}

  get(): Promise<Catalog> {
    return this.queued ?? this.running ?? Promise.resolve(this.latest);
  }

  reload(): Promise<Catalog> {
    if (this.queued) return this.queued;
    if (!this.running) return this.start();
    this.queued = this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        return this.start();
      });
    return this.queued;
  }

  private start(): Promise<Catalog> {
    const run = this.load().then((catalog) => {
      this.latest = catalog;
      return catalog;
    });
    this.running = run.finally(() => {
      if (this.running === tracked) this.running = undefined;
    });
    const tracked = this.running;
    return tracked;
  }
}
