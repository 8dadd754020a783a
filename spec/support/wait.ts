/**
 * Waiting in specs. Phases are driven by conditions (counts, events, states), never by how much
 * gets done in a fixed time; the bounds here only turn a hang into a failure, so they are
 * generous: the machine may be busy with other work.
 */

/** A generous bound for anything that should happen "soon" on an idle machine. */
export const PATIENCE_MS = 30_000;

export const sleep = (ms: number) =>
  new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** Polls `condition` until it holds; fails, naming `what`, once `timeoutMs` have passed. */
export async function until(
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs = PATIENCE_MS,
  everyMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await sleep(everyMs);
  }
}

/** Runs fn and measures it, for reports and for bounds that only catch hangs. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - start };
}

/**
 * A point where code under test stops until the spec lets it go, so that a spec orders events
 * ("the read ran its query", then "the write committed", then "the read stores") without sleeps.
 */
export class Gate {
  private opened = false;
  private arrivals = 0;
  private readonly waiters: (() => void)[] = [];
  private readonly watchers: { count: number; resolve: () => void }[] = [];

  /** Called by the code under test: counts the arrival and waits until the gate is open. */
  pass(): Promise<void> {
    this.arrivals++;
    for (const watcher of this.watchers.filter((w) => this.arrivals >= w.count)) {
      this.watchers.splice(this.watchers.indexOf(watcher), 1);
      watcher.resolve();
    }
    if (this.opened) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Resolves once `count` calls in all have arrived at the gate. */
  arrived(count = 1): Promise<void> {
    if (this.arrivals >= count) return Promise.resolve();
    return new Promise((resolve) => this.watchers.push({ count, resolve }));
  }

  open(): void {
    this.opened = true;
    for (const resolve of this.waiters.splice(0)) resolve();
  }
}

/**
 * Lets the event loop run its I/O phase a few times. Bytes already written to a loopback socket
 * by this same process (a proxy in the spec) have been read and handled by then: this orders
 * events, it does not wait for time, so a busy machine does not change the outcome.
 */
export async function ioTurns(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}
