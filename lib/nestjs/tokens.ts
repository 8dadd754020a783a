import { Inject } from "@nestjs/common";
import { QueryCache } from "../query-cache";

/** The injection token of the QueryCache of a connection: the QueryCache class for the default one. */
export function getQueryCacheToken(dataSource?: string): typeof QueryCache | string {
  return dataSource === undefined || dataSource === "default"
    ? QueryCache
    : `${dataSource}QueryCache`;
}

/** Injects the QueryCache of a named connection (the default one needs no decorator: its type is its token). */
export function InjectQueryCache(dataSource?: string): ParameterDecorator & PropertyDecorator {
  return Inject(getQueryCacheToken(dataSource));
}

/** @internal */
export const MODULE_OPTIONS = Symbol("QueryCacheModuleOptions");
/** @internal */
export const MODULE_HANDLE = Symbol("QueryCacheModuleHandle");
