import { expect } from "chai";
import { InvalidOptionError } from "../../lib";
import { CircuitBreaker } from "../../lib/stores/circuit-breaker";

/** Runs fn with Date.now() reading a clock the spec moves, so cool-downs pass without waiting. */
function withClock(fn: (advance: (ms: number) => void) => void): void {
  const real = Date.now;
  let now = real();
  Date.now = () => now;
  try {
    fn((ms) => {
      now += ms;
    });
  } finally {
    Date.now = real;
  }
}

describe("unit: circuit breaker (a store that keeps failing is skipped, then tried once)", () => {
  it("opens after failureThreshold consecutive failures; a success in between starts the count again", () => {
    const breaker = new CircuitBreaker({ failureThreshold: 3, coolDownMs: 1000 });
    breaker.failed();
    breaker.failed();
    breaker.succeeded();
    breaker.failed();
    breaker.failed();
    expect(breaker.isOpen).to.equal(false);
    expect(breaker.admit()).to.equal(true);
    breaker.failed();
    expect(breaker.isOpen).to.equal(true);
    expect(breaker.admit()).to.equal(false);
  });

  it("lets exactly one trial through once the cool-down has passed; its success closes it", () => {
    withClock((advance) => {
      const breaker = new CircuitBreaker({ failureThreshold: 1, coolDownMs: 1000 });
      breaker.failed();
      advance(999);
      expect(breaker.admit(), "before the cool-down ends").to.equal(false);
      advance(1);
      expect(breaker.admit(), "the trial").to.equal(true);
      expect(breaker.admit(), "a second call while the trial is out").to.equal(false);
      breaker.succeeded();
      expect(breaker.isOpen).to.equal(false);
      expect(breaker.admit()).to.equal(true);
    });
  });

  it("opens for another cool-down when the trial fails", () => {
    withClock((advance) => {
      const breaker = new CircuitBreaker({ failureThreshold: 5, coolDownMs: 100 });
      for (let i = 0; i < 5; i++) breaker.failed();
      advance(100);
      expect(breaker.admit()).to.equal(true);
      breaker.failed();
      expect(breaker.admit(), "right after the failed trial").to.equal(false);
      advance(100);
      expect(breaker.admit(), "after the next cool-down").to.equal(true);
    });
  });

  it("defaults to 5 failures and 1 s, and refuses options it cannot use", () => {
    const breaker = new CircuitBreaker();
    expect([breaker.failureThreshold, breaker.coolDownMs]).to.deep.equal([5, 1000]);
    for (const options of [
      { failureThreshold: 0 },
      { failureThreshold: 2.5 },
      { coolDownMs: 0 },
      { coolDownMs: Number.POSITIVE_INFINITY },
    ]) {
      expect(() => new CircuitBreaker(options), JSON.stringify(options)).to.throw(
        InvalidOptionError,
      );
    }
  });
});
