/** Base class of every error this library throws, so callers can catch them as one family. */
export class AutocacheError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** An option passed to QueryCache or @Cached is missing or has the wrong type or range. */
export class InvalidOptionError extends AutocacheError {}

/** @Cached or cached() was called on an object from which no QueryCache can be found. */
export class CacheNotFoundError extends AutocacheError {
  constructor(where: string) {
    super(
      `${where}: no QueryCache found. Create one with new QueryCache({ dataSource, ... }) for the ` +
        `DataSource this object uses (found through this.manager or this.dataSource), or name it ` +
        `explicitly with @Cached({ cache }).`,
    );
  }
}

/** The DataSource has no QueryCacheSubscriber, so writes could not invalidate anything. */
export class SubscriberMissingError extends AutocacheError {
  constructor() {
    super(
      "The DataSource has no QueryCacheSubscriber registered, so writes would not invalidate cached " +
        "results. Add it to the DataSource options: subscribers: [QueryCacheSubscriber].",
    );
  }
}

/** A cached call was made before its DataSource was initialized. */
export class DataSourceNotInitializedError extends AutocacheError {
  constructor() {
    super(
      "The DataSource is not initialized yet: await dataSource.initialize() before using the cache.",
    );
  }
}

/**
 * A store call that did not answer within the QueryCache's storeTimeout. The caller got fresh data
 * from the database instead; it reaches you only through the "storeError" event.
 */
export class StoreTimeoutError extends AutocacheError {
  constructor(readonly ms: number) {
    super(
      `the cache store did not answer within ${ms} ms, so the database answered instead. If Redis is ` +
        `reachable but slow, raise the QueryCache's storeTimeout; otherwise check its latency.`,
    );
  }
}

/** A store that reports itself disconnected, skipped without waiting (reported through "storeError"). */
export class StoreUnavailableError extends AutocacheError {
  constructor() {
    super(
      "the cache store is not connected, so the database answered instead. Check that the Redis client " +
        "can reach its server; the cache uses the store again by itself once it is connected.",
    );
  }
}

/**
 * A store call refused without trying, because the store failed repeatedly just before (the
 * circuit breaker is open). Reported through "storeError"; the caller got fresh data.
 */
export class CircuitOpenError extends AutocacheError {
  constructor(
    readonly failures: number,
    readonly coolDownMs: number,
  ) {
    super(
      `the cache store failed ${failures} times in a row, so it is skipped for ${coolDownMs} ms before ` +
        `it is tried again, and the database answers meanwhile. Check that Redis is reachable; tune ` +
        `this with the QueryCache's circuitBreaker option.`,
    );
  }
}

/**
 * An invalidation reached a Redis Cluster master, but not all of its replicas in time. It is kept
 * and retried, so a failover cannot lose it; reported through "storeError".
 */
export class NotReplicatedError extends AutocacheError {
  /** The store is up (its master took the write): this is no reason to trip the circuit breaker. */
  readonly storeAnswered = true;

  constructor(
    readonly acknowledged: number,
    readonly replicas: number,
    readonly ms: number,
  ) {
    super(
      `${acknowledged} of ${replicas} replicas acknowledged the invalidation within ${ms} ms; it is retried ` +
        `so that a failover cannot lose it. Check the replicas' link to their master, or raise RedisStore's ` +
        `replicaTimeout (keeping it below storeTimeout).`,
    );
  }
}

/** A second QueryCache was created for a DataSource that already has one. */
export class DuplicateCacheError extends AutocacheError {
  constructor() {
    super(
      "This DataSource already has a QueryCache. Create one QueryCache per DataSource and share it, " +
        "or close() the old one first.",
    );
  }
}

/** A method's arguments cannot be turned into a stable cache key. */
export class UnkeyableArgumentError extends AutocacheError {
  constructor(
    readonly method: string,
    readonly reason: string,
  ) {
    super(
      `${method}: its arguments cannot be used as a cache key (${reason}). Pass a key function, ` +
        `@Cached({ key: (...args) => string }), that builds the key from what identifies the result.`,
    );
  }
}

/** A value cannot be stored without losing something (a function, a cycle, an unknown class...). */
export class UnserializableValueError extends AutocacheError {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(
      `the value at ${path || "the top level"} cannot be cached faithfully: ${reason}. Return plain data, ` +
        `entities of this DataSource, Dates, Buffers, bigints, Maps or Sets, or do not cache this method.`,
    );
  }
}

/**
 * The library could not read the database catalog on its own connection (the server refused or
 * dropped it, or it did not answer in time). Callers never see it: their queries still run, and
 * the cache degrades (reads are not cached, writes invalidate everything) with a warning.
 */
export class CatalogUnavailableError extends AutocacheError {
  constructor(reason: string) {
    super(
      `the cache could not read the database catalog on its own connection (${reason}). It needs one ` +
        `connection of its own per DataSource, outside the pool: check the server's max_connections and ` +
        `the role's CONNECTION LIMIT.`,
    );
  }
}

/** dependsOn, or invalidate(), names a table the database does not have. */
export class UnknownTableError extends AutocacheError {
  constructor(
    readonly where: string,
    readonly table: string,
  ) {
    super(
      `${where}: the table "${table}" does not exist (looked up on the search path${table.includes(".") ? "" : " of the database"}), ` +
        `so no write could ever invalidate it. Check its spelling, qualify it as "schema.table", or pass the entity class.`,
    );
  }
}

/** RedisStore was given something that is not an ioredis client. */
export class InvalidStoreClientError extends AutocacheError {
  constructor(got: string) {
    super(
      `RedisStore needs an ioredis client: new RedisStore(new Redis(url)) or new RedisStore(new Cluster(nodes)) ` +
        `from the "ioredis" package; got ${got}. node-redis clients and option objects are not supported.`,
    );
  }
}

/**
 * The change feed cannot run against this server as it is set up: wal_level is not logical, or
 * the publication or slot is missing and this role may not create it. `sql` is what to run (or
 * set) to fix it, also printed in the message.
 */
export class ChangeFeedSetupError extends AutocacheError {
  constructor(
    problem: string,
    readonly sql: string,
  ) {
    super(
      `ChangeFeed: ${problem}. Fix it with:\n  ${sql}\n(see README, "Writes from outside the application").`,
    );
  }
}
