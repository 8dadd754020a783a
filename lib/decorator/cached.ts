import { createHash } from "node:crypto";
import { Repository } from "typeorm";
import {
  CacheNotFoundError,
  DataSourceNotInitializedError,
  InvalidOptionError,
  UnkeyableArgumentError,
} from "../errors";
import { argumentsDigest, type KeyContext, UnkeyableValue } from "../keys/stable-key";
import { checkTtl, type EntryOptions, earlyRefreshBeta } from "../options";
import { type FetchPlan, QueryCache } from "../query-cache";
import { registry } from "../typeorm/registry";
import { bypassesCache, findCache } from "./find-cache";

/** What @Cached and cached() take: an entry's options, and how to find the cache and key the call. */
export interface CachedOptions extends EntryOptions {
  /** The cache to use, when it cannot be found through this.manager or this.dataSource. */
  cache?: QueryCache;
  /**
   * Builds the key part from the arguments, for arguments that are not plain data. What it
   * returns is keyed by value like an argument (a string, a number, an object of them...).
   */
  key?: (...args: never[]) => unknown;
  /**
   * What the instance the method runs on adds to the key, for objects of one class that differ by
   * state: `@Cached({ scope: (self: ReportService) => self.tenant })`. Keyed by value like an
   * argument. By default the instance adds only its class (and a repository's entity and table).
   */
  scope?: (self: any) => unknown;
  /**
   * Stores the result even when a query of the computation failed (a method that catches a
   * database error and returns a fallback). Off by default: a fallback is not cached.
   */
  cacheFallback?: boolean;
  /** The method's name in keys and warnings; cached() needs it when the function has none. */
  name?: string;
}

/**
 * What @Cached returns. It takes methods that return a Promise (or a thenable) only: a cached call
 * is always asynchronous, so on a synchronous method its declared type would lie, and TypeScript
 * reports the decorator there instead ("Unable to resolve signature of method decorator").
 */
export interface CachedDecorator {
  <T extends (...args: any[]) => PromiseLike<unknown>>(
    target: object,
    key: string | symbol,
    descriptor: TypedPropertyDescriptor<T>,
  ): void;
  <T extends (...args: any[]) => PromiseLike<unknown>>(
    value: T,
    context: ClassMethodDecoratorContext<unknown, T>,
  ): T;
}

/**
 * Caches the method's result per arguments. The method runs with its own `this`, so a repository
 * method keeps using this.find and the QueryBuilder as before; the result comes back as a Promise.
 *
 *     @Cached(60) findPublished() { return this.find({ where: { published: true } }); }
 *     @Cached({ ttl: 600, dependsOn: [Comment] }) popular(limit: number) { ... }
 */
export function Cached(options?: number | CachedOptions): CachedDecorator {
  const resolved = normalize(options);
  // Both decorator proposals: TypeScript's experimentalDecorators (which TypeORM uses) and TC39's.
  return (target: unknown, keyOrContext: unknown, descriptor?: PropertyDescriptor): any => {
    if (typeof keyOrContext === "object" && keyOrContext !== null && "kind" in keyOrContext) {
      const context = keyOrContext as { kind: string; name: string | symbol };
      if (context.kind !== "method") throw new InvalidOptionError("@Cached goes on methods only.");
      return cached(target as (...args: never[]) => unknown, {
        name: String(context.name),
        ...resolved,
      });
    }
    if (!descriptor || typeof descriptor.value !== "function")
      throw new InvalidOptionError("@Cached goes on methods only.");
    descriptor.value = cached(descriptor.value, { name: String(keyOrContext), ...resolved });
    return descriptor;
  };
}

/**
 * The function form of @Cached, for objects a decorator cannot reach, such as
 * Repository.extend({ findPublished: cached(function () { ... }, { ttl: 60, name: "findPublished" }) }).
 */
export function cached<A extends unknown[], R>(
  fn: (this: any, ...args: A) => R | Promise<R>,
  options?: number | CachedOptions,
): (this: any, ...args: A) => Promise<Awaited<R>> {
  const resolved = normalize(options);
  const name = resolved.name ?? fn.name;
  if (!name)
    throw new InvalidOptionError("cached(): the function has no name; pass one with { name }.");
  // The code's digest joins the name in keys: repositories made by Repository.extend() all share
  // one class name, and results computed by an older version of the method are not served.
  const method = `${name}#${codeDigest(fn)}`;
  const beta = earlyRefreshBeta(`cached ${name}`, resolved.earlyRefresh);
  const owners = new WeakMap<object, { owner: string; label: string }>();
  // Not an async function: a hit from the in-process tier costs about a microsecond, and an
  // async wrapper would add a promise and a turn of the microtask queue to it.
  return function call(this: unknown, ...args: A): Promise<Awaited<R>> {
    try {
      const cache = resolved.cache ?? findCache(this);
      if (!cache) throw new CacheNotFoundError(`${describeOwner(this)}.${name}`);
      if (!cache.dataSource.isInitialized) throw new DataSourceNotInitializedError();
      if (bypassesCache(cache, this, args))
        return Promise.resolve(fn.apply(this, args)) as Promise<Awaited<R>>;
      const { owner, label } = describeCall(owners, this, name);
      const digest = keyOf(label, cache, this, args, resolved);
      const plan: FetchPlan = {
        key: (keys) => keys.method(owner, method, digest),
        label,
        ttl: resolved.ttl,
        dependsOn: resolved.dependsOn,
        earlyRefreshBeta: beta,
        cacheFallback: resolved.cacheFallback === true,
        requiresReads: true,
      };
      return cache.fetch(plan, () => fn.apply(this, args)) as Promise<Awaited<R>>;
    } catch (error) {
      // An argument names another DataSource whose cache has not read its identity yet.
      if (error instanceof IdentityPending)
        return error.cache.whenReady().then(() => call.apply(this, args));
      return Promise.reject(error);
    }
  };
}

/** Thrown while keying when another DataSource's identity is still being read; the call waits for it. */
class IdentityPending extends Error {
  constructor(readonly cache: QueryCache) {
    super("the identity of another DataSource is not known yet");
  }
}

/** The owner part of keys and the label of warnings, worked out once per object. */
function describeCall(
  memo: WeakMap<object, { owner: string; label: string }>,
  self: unknown,
  name: string,
): { owner: string; label: string } {
  if (typeof self === "function") {
    // A static method: its class is the owner, as an instance's class is for a method.
    const type = self.name || "anonymous class";
    return { owner: `static ${type}`, label: `${type}.${name}` };
  }
  if (typeof self !== "object" || self === null)
    return { owner: "function", label: `function.${name}` };
  let described = memo.get(self);
  if (!described) {
    memo.set(self, (described = { owner: ownerKey(self), label: `${ownerName(self)}.${name}` }));
  }
  return described;
}

function keyOf(
  label: string,
  cache: QueryCache,
  self: unknown,
  args: readonly unknown[],
  options: CachedOptions,
): string {
  const context = keyContext(cache);
  try {
    const scope = options.scope ? { value: options.scope(self) } : undefined;
    if (options.key)
      return `k${argumentsDigest([(options.key as (...a: unknown[]) => unknown)(...args)], context, scope)}`;
    return argumentsDigest(args, context, scope);
  } catch (error) {
    if (error instanceof UnkeyableValue) throw new UnkeyableArgumentError(label, error.message);
    throw error;
  }
}

/**
 * A DataSource reached through an argument is keyed by the database and schema it reaches: this
 * cache's own adds nothing (its identity starts every key), another one's adds its identity, read
 * by its own QueryCache. One without a QueryCache is refused: the queries made through it could
 * not be tracked, so no result of them could be kept fresh.
 */
function keyContext(cache: QueryCache): KeyContext {
  return {
    connection(dataSource) {
      if (dataSource === cache.dataSource) return "self";
      const other = registry.cacheOf(dataSource);
      if (!(other instanceof QueryCache)) {
        throw new UnkeyableValue(
          "a manager or DataSource of another DataSource that has no QueryCache, so the queries made through it " +
            "could not be tracked; create a QueryCache for that DataSource with this store and namespace",
        );
      }
      const scope = other.databaseScope();
      if (scope === undefined) throw new IdentityPending(other);
      return JSON.stringify(scope);
    },
  };
}

function className(self: unknown): string {
  if (typeof self === "function") return self.name || "function";
  if (typeof self !== "object" || self === null) return "function";
  return (self.constructor as { name?: string } | undefined)?.name || "Object";
}

/** The class in labels; a repository also names its entity, since one class may serve several. */
function ownerName(self: unknown): string {
  const type = className(self);
  if (!(self instanceof Repository)) return type;
  return `${type}<${self.metadata.targetName}>`;
}

/**
 * The class in keys. A repository names its entity's table too: two entities may share a class
 * name (in two schemas, say), and a generic repository class serves both.
 */
function ownerKey(self: unknown): string {
  if (!(self instanceof Repository)) return className(self);
  return `${className(self)}<${self.metadata.targetName}@${self.metadata.tablePath}>`;
}

// Before initialize() a repository has no metadata yet, and asking for it throws.
function describeOwner(self: unknown): string {
  try {
    return ownerName(self);
  } catch {
    return className(self);
  }
}

function codeDigest(fn: Function): string {
  return createHash("sha1").update(fn.toString()).digest("base64url").slice(0, 8);
}

function normalize(options: number | CachedOptions | undefined): CachedOptions {
  if (options === undefined) return {};
  if (typeof options === "number") return { ttl: checkTtl("@Cached: ttl", options) };
  if (typeof options !== "object" || options === null) {
    throw new InvalidOptionError(
      `@Cached takes a ttl in seconds or an options object, got ${String(options)}.`,
    );
  }
  if (options.ttl !== undefined) checkTtl("@Cached: ttl", options.ttl);
  if (options.cache !== undefined && !(options.cache instanceof QueryCache))
    throw new InvalidOptionError("@Cached: cache must be a QueryCache.");
  if (options.key !== undefined && typeof options.key !== "function")
    throw new InvalidOptionError("@Cached: key must be a function of the arguments.");
  if (options.scope !== undefined && typeof options.scope !== "function")
    throw new InvalidOptionError(
      "@Cached: scope must be a function of the instance, (self) => what tells instances apart.",
    );
  if (options.cacheFallback !== undefined && typeof options.cacheFallback !== "boolean")
    throw new InvalidOptionError("@Cached: cacheFallback must be a boolean.");
  if (options.dependsOn !== undefined && !Array.isArray(options.dependsOn)) {
    throw new InvalidOptionError(
      "@Cached: dependsOn must be an array of entity classes or table names.",
    );
  }
  return options;
}
