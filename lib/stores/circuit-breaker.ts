import { InvalidOptionError } from "../errors";

/** How the QueryCache stops calling a store that keeps failing (QueryCacheOptions.circuitBreaker). */
export interface CircuitBreakerOptions {
  /** Consecutive failed store calls (errors or timeouts) that open the breaker. Default 5. */
  failureThreshold?: number;
  /** Milliseconds the breaker stays open before it lets one trial call through. Default 1000. */
  coolDownMs?: number;
}

/**
 * Stops calling a store that keeps failing, so callers stop paying its timeout: after
 * `failureThreshold` consecutive failures it opens for `coolDownMs`, then lets one trial call
 * through (half-open). The trial's success closes it; its failure opens it for another cool-down.
 */
export class CircuitBreaker {
  readonly failureThreshold: number;
  readonly coolDownMs: number;
  private failures = 0;
  /** When the breaker may let a trial through; 0 while closed. */
  private openUntil = 0;
  private trialInFlight = false;

  constructor(options: CircuitBreakerOptions = {}) {
    this.failureThreshold = options.failureThreshold ?? 5;
    this.coolDownMs = options.coolDownMs ?? 1000;
    if (!Number.isSafeInteger(this.failureThreshold) || this.failureThreshold < 1) {
      throw new InvalidOptionError(
        `QueryCache: circuitBreaker.failureThreshold must be a whole number of failures, at least 1, got ${String(this.failureThreshold)}.`,
      );
    }
    if (
      typeof this.coolDownMs !== "number" ||
      !Number.isFinite(this.coolDownMs) ||
      this.coolDownMs <= 0
    ) {
      throw new InvalidOptionError(
        `QueryCache: circuitBreaker.coolDownMs must be a positive number of milliseconds, got ${String(this.coolDownMs)}.`,
      );
    }
  }

  get isOpen(): boolean {
    return this.openUntil !== 0;
  }

  /**
   * Whether a call may go to the store now. While open, none may; once the cool-down has passed,
   * exactly one trial may, and its outcome must be reported with succeeded() or failed().
   */
  admit(): boolean {
    if (this.openUntil === 0) return true;
    if (this.trialInFlight || Date.now() < this.openUntil) return false;
    this.trialInFlight = true;
    return true;
  }

  // Any success closes the breaker, even one from a call that started before it opened: the
  // store answered, so there is no reason to keep skipping it.
  succeeded(): void {
    this.failures = 0;
    this.openUntil = 0;
    this.trialInFlight = false;
  }

  failed(): void {
    this.failures++;
    if (this.trialInFlight || this.failures >= this.failureThreshold) {
      this.trialInFlight = false;
      this.openUntil = Date.now() + this.coolDownMs;
    }
  }
}
