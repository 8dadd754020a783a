import { expect } from "chai";
import {
  AutocacheError,
  type CachedOptions,
  CircuitOpenError,
  type EntryOptions,
  type FollowHandlers,
  NotReplicatedError,
  type QueryCache,
  type QueryCacheEvents,
  type SetOptions,
  StoreTimeoutError,
  StoreUnavailableError,
} from "../../lib";

describe("unit: public API edges", () => {
  it("every error the library reports is an AutocacheError that says what to do", () => {
    const errors: [AutocacheError, string, RegExp][] = [
      [
        new StoreTimeoutError(250),
        "StoreTimeoutError",
        /within 250 ms.*raise the QueryCache's storeTimeout/,
      ],
      [
        new StoreUnavailableError(),
        "StoreUnavailableError",
        /not connected.*Check that the Redis client/,
      ],
      [
        new CircuitOpenError(5, 1000),
        "CircuitOpenError",
        /failed 5 times.*skipped for 1000 ms.*circuitBreaker option/,
      ],
      [new NotReplicatedError(0, 1, 100), "NotReplicatedError", /0 of 1 replicas.*replicaTimeout/],
    ];
    for (const [error, name, message] of errors) {
      expect(error, name).to.be.instanceOf(AutocacheError).and.instanceOf(Error);
      expect(error.name).to.equal(name);
      expect(error.message).to.match(message);
    }
    expect(
      new NotReplicatedError(0, 1, 100).storeAnswered,
      "a replica's lag does not trip the breaker",
    ).to.equal(true);
  });

  it("types the events, the options and what a store implements (checked by the compiler)", () => {
    const listen = (cache: QueryCache) => {
      cache.on("storeError", (error) => error.message);
      cache.on("hit", (key) => key.length);
      // @ts-expect-error a warning carries a message, not an Error
      cache.on("warning", (message: Error) => message);
      // @ts-expect-error there is no such event
      cache.on("stored", () => undefined);
    };
    const events: (keyof QueryCacheEvents)[] = ["hit", "miss", "storeError", "warning"];
    const handlers: FollowHandlers = { invalidated: () => undefined, state: () => undefined };
    const cached: CachedOptions = { ttl: 1, dependsOn: ["post"], earlyRefresh: true, name: "m" };
    const entry: EntryOptions = cached;
    // @ts-expect-error set() stores a value: there is nothing to refresh early
    const set: SetOptions = { earlyRefresh: true };
    expect([typeof listen, events.length, typeof handlers.state, entry.ttl, set]).to.deep.equal([
      "function",
      4,
      "function",
      1,
      { earlyRefresh: true },
    ]);
  });
});
