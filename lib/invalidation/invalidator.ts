import type { StoreGuard } from "../stores/store-guard";

const RETRY_FIRST_MS = 50;
// Short enough that an invalidation held up by an outage lands soon after the store is back.
const RETRY_MAX_MS = 1000;

/**
 * Delivers invalidations to the store. One that cannot be delivered is kept and retried with
 * backoff; until it lands, this process serves and stores no entry that depends on it.
 */
export class Invalidator {
  private readonly pending = new Set<string>();
  private retryDelay = RETRY_FIRST_MS;
  private retryTimer?: NodeJS.Timeout;

  constructor(
    private readonly guard: StoreGuard,
    private readonly clockKey: string,
    /** Where bumps are announced to other processes' in-process tiers; undefined when none listens. */
    private readonly channel: string | undefined,
    private readonly hooks: {
      /**
       * Runs before delivery and again once it is delivered: this process's own copies go first,
       * and whatever was read back from the store while delivery was under way goes too.
       */
      settle(keys: readonly string[]): void;
      delivered(keys: readonly string[]): void;
      failed(error: Error): void;
    },
  ) {}

  /** Resolves whether the invalidation was delivered; if not, it is kept and retried. */
  async invalidate(deps: Iterable<string>): Promise<boolean> {
    const keys = [...deps];
    if (keys.length === 0) return true;
    this.hooks.settle(keys);
    if (await this.deliver(keys)) return true;
    for (const key of keys) this.pending.add(key);
    this.scheduleRetry();
    return false;
  }

  /** Whether an undelivered invalidation touches any of these dependencies. */
  blocks(deps: Iterable<string>): boolean {
    if (this.pending.size === 0) return false;
    for (const dep of deps) if (this.pending.has(dep)) return true;
    return false;
  }

  get undelivered(): number {
    return this.pending.size;
  }

  /** Tries the undelivered invalidations now; resolves whether none is left. */
  async flush(): Promise<boolean> {
    if (this.pending.size === 0) return true;
    const keys = [...this.pending];
    if (!(await this.deliver(keys))) return false;
    for (const key of keys) this.pending.delete(key);
    this.retryDelay = RETRY_FIRST_MS;
    return this.pending.size === 0;
  }

  stop(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  /** Bumps the keys in the store; once they landed, whatever was read back meanwhile is settled too. */
  private async deliver(keys: string[]): Promise<boolean> {
    try {
      await this.guard.strict((store) => store.bump(keys, this.clockKey, this.channel));
    } catch (error) {
      this.hooks.failed(error as Error);
      return false;
    }
    this.hooks.settle(keys);
    this.hooks.delivered(keys);
    return true;
  }

  private scheduleRetry(): void {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(async () => {
      this.retryTimer = undefined;
      if (await this.flush()) return;
      this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_MS);
      this.scheduleRetry();
    }, this.retryDelay);
    this.retryTimer.unref();
  }
}
