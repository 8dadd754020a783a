import { splitFreshness } from "../serialization/freshness";
import type { StoreEntry } from "../stores/store";
import type { StoreGuard } from "../stores/store-guard";
import type { Counters } from "./counters";

/**
 * Writes computed entries to the store, counting each as a set or a skip, and keeps the writes
 * still under way: a cached call returns its value before the store has answered.
 * @internal
 */
export class EntryWriter {
  /** Entries being stored after their callers got their values. */
  private readonly writes = new Set<Promise<void>>();

  constructor(
    private readonly guard: StoreGuard,
    private readonly counters: Counters,
    private readonly maxValueBytes: number,
    private readonly warn: (message: string) => void,
  ) {}

  /**
   * Resolves whether the store took the entry, or undefined when it could not be asked. Entries
   * whose result is over maxValueBytes are not offered: the limit is on the serialized result, not
   * on the bookkeeping around it, whose length varies with the computation's duration.
   */
  async put(label: string, entry: StoreEntry, clockKey: string): Promise<boolean | undefined> {
    const tooLarge = Buffer.byteLength(splitFreshness(entry.value).json) > this.maxValueBytes;
    if (tooLarge)
      this.warn(
        `${label}: result not cached because it is larger than maxValueBytes (${this.maxValueBytes}).`,
      );
    const stored = tooLarge ? false : await this.guard.call((store) => store.set(entry, clockKey));
    this.counters.stored(label, stored === true);
    return stored;
  }

  /** Keeps a write going on behind its caller, for settled() and close() to wait on. */
  behind(write: Promise<void>): void {
    this.writes.add(write);
    void write.finally(() => this.writes.delete(write));
  }

  /** Resolves once every write so far has been answered (or refused), those it started included. */
  async settled(): Promise<void> {
    while (this.writes.size > 0) await Promise.allSettled(this.writes);
  }

  /** Waits for the writes under way; rejects as the first failing one does. */
  async drain(): Promise<void> {
    await Promise.all(this.writes);
  }
}
