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
    super("The DataSource is not initialized yet: await dataSource.initialize() before using the cache.");
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
 * The change feed cannot run against this server as it is set up: wal_level is not logical, or
 * the publication or slot is missing and this role may not create it. `sql` is what to run (or
 * set) to fix it, also printed in the message.
 */
export class ChangeFeedSetupError extends AutocacheError {
  constructor(
    problem: string,
    readonly sql: string,
  ) {
    super(`ChangeFeed: ${problem}. Fix it with:\n  ${sql}\n(see README, "Writes from outside the application").`);
  }
}
