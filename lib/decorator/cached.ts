import { createHash } from "node:crypto";
import { Repository } from "typeorm";
import { CacheNotFoundError, DataSourceNotInitializedError, InvalidOptionError, UnkeyableArgumentError } from "../errors";
import { argumentsDigest, UnkeyableValue } from "../keys/stable-key";
import { checkTtl, earlyRefreshBeta, type EntryOptions } from "../options";
import { type FetchPlan, QueryCache } from "../query-cache";
import { bypassesCache, findCache } from "./find-cache";

/** What @Cached and cached() take: an entry's options, and how to find the cache and key the call. */
export interface CachedOptions extends EntryOptions {
  /** The cache to use, when it cannot be found through this.manager or this.dataSource. */
  cache?: QueryCache;
  /** Builds the key part from the arguments, for arguments that are not plain data. */
  key?: (...args: never[]) => string | number;
  /** The method's name in keys and warnings; cached() needs it when the function has none. */
  name?: string;
}

/**
 * What @Cached returns. It takes methods that return a Promise (or a thenable) only: a cached call
 * is always asynchronous, so on a synchronous method its declared type would lie, and TypeScript
 * reports the decorator there instead ("Unable to resolve signature of method decorator").
 */
export interface CachedDecorator {
  <T extends (...args: any[]) => PromiseLike<unknown>>(target: object, key: string | symbol, descriptor: TypedPropertyDescriptor<T>): void;
  <T extends (...args: any[]) => PromiseLike<unknown>>(value: T, context: ClassMethodDecoratorContext<unknown, T>): T;
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
  return function (target: unknown, keyOrContext: unknown, descriptor?: PropertyDescriptor): any {
    if (typeof keyOrContext === "object" && keyOrContext !== null && "kind" in keyOrContext) {
      const context = keyOrContext as { kind: string; name: string | symbol };
      if (context.kind !== "method") throw new InvalidOptionError("@Cached goes on methods only.");
      return cached(target as (...args: never[]) => unknown, { name: String(context.name), ...resolved });
    }
    if (!descriptor || typeof descriptor.value !== "function") throw new InvalidOptionError("@Cached goes on methods only.");
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
  if (!name) throw new InvalidOptionError("cached(): the function has no name; pass one with { name }.");
  // The code's digest joins the name in keys: repositories made by Repository.extend() all share
  // one class name, and results computed by an older version of the method are not served.
  const method = `${name}#${codeDigest(fn)}`;
  const beta = earlyRefreshBeta(`cached ${name}`, resolved.earlyRefresh);
  const owners = new WeakMap<object, { owner: string; label: string }>();
  // Not an async function: a hit from the in-process tier costs about a microsecond, and an
  // async wrapper would add a promise and a turn of the microtask queue to it.
  return function (this: unknown, ...args: A): Promise<Awaited<R>> {
    try {
      const cache = resolved.cache ?? findCache(this);
      if (!cache) throw new CacheNotFoundError(`${describeOwner(this)}.${name}`);
      if (!cache.dataSource.isInitialized) throw new DataSourceNotInitializedError();
      if (bypassesCache(cache, this, args)) return Promise.resolve(fn.apply(this, args)) as Promise<Awaited<R>>;
      const { owner, label } = describeCall(owners, this, name);
      const digest = keyOf(label, args, resolved.key);
      const plan: FetchPlan = {
        key: (keys) => keys.method(owner, method, digest),
        label,
        ttl: resolved.ttl,
        dependsOn: resolved.dependsOn,
        earlyRefreshBeta: beta,
      };
      return cache.fetch(plan, () => fn.apply(this, args)) as Promise<Awaited<R>>;
    } catch (error) {
      return Promise.reject(error);
    }
  };
}

/** The owner part of keys and the label of warnings, worked out once per object. */
function describeCall(memo: WeakMap<object, { owner: string; label: string }>, self: unknown, name: string): { owner: string; label: string } {
  if (typeof self !== "object" || self === null) return { owner: "function", label: `function.${name}` };
  let described = memo.get(self);
  if (!described) {
    const owner = ownerName(self);
    memo.set(self, (described = { owner, label: `${owner}.${name}` }));
  }
  return described;
}

function keyOf(label: string, args: readonly unknown[], key: CachedOptions["key"]): string {
  if (key) return `k:${String((key as (...a: unknown[]) => unknown)(...args))}`;
  try {
    return argumentsDigest(args);
  } catch (error) {
    if (error instanceof UnkeyableValue) throw new UnkeyableArgumentError(label, error.message);
    throw error;
  }
}

function className(self: unknown): string {
  if (typeof self !== "object" || self === null) return "function";
  return (self.constructor as { name?: string } | undefined)?.name || "Object";
}

/** The class in keys; a repository also names its entity, since one class may serve several. */
function ownerName(self: unknown): string {
  const type = className(self);
  if (!(self instanceof Repository)) return type;
  return `${type}<${self.metadata.targetName}>`;
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
    throw new InvalidOptionError(`@Cached takes a ttl in seconds or an options object, got ${String(options)}.`);
  }
  if (options.ttl !== undefined) checkTtl("@Cached: ttl", options.ttl);
  if (options.cache !== undefined && !(options.cache instanceof QueryCache)) throw new InvalidOptionError("@Cached: cache must be a QueryCache.");
  if (options.key !== undefined && typeof options.key !== "function") throw new InvalidOptionError("@Cached: key must be a function of the arguments.");
  if (options.dependsOn !== undefined && !Array.isArray(options.dependsOn)) {
    throw new InvalidOptionError("@Cached: dependsOn must be an array of entity classes or table names.");
  }
  return options;
}
