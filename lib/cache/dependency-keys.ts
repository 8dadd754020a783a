import type { DataSource, EntityTarget } from "typeorm";
import { parseRelationName } from "../catalog/qualified-name";
import { UnknownTableError } from "../errors";
import type { KeyLayout } from "../keys/key-layout";
import type { Dependency } from "../options";
import type { Setup } from "./setup";

/** Version keys of the named tables; for "write", with what a write to them changes besides. @internal */
export async function dependencyKeys(
  dataSource: DataSource,
  setup: Setup,
  targets: readonly Dependency[] | undefined,
  use: "read" | "write",
): Promise<string[]> {
  if (!targets?.length) return [];
  let catalog = await setup.catalog.get();
  const schema = (dataSource.options as { schema?: string }).schema;
  const keys: string[] = [];
  for (const target of targets) {
    const path =
      typeof target === "string"
        ? target
        : dataSource.getMetadata(target as EntityTarget<unknown>).tablePath;
    const ref = parseRelationName(path);
    // A bare name means what TypeORM would write for it: a table of the DataSource's schema first.
    const schemas = schema ? [schema, ...catalog.searchPath] : undefined;
    // A misspelled name would never be invalidated: it is an error, unless the catalog could not be read to tell.
    if (!catalog.knows(ref, schemas)) catalog = await setup.catalog.reload();
    if (!catalog.knows(ref, schemas) && !setup.catalog.failed)
      throw new UnknownTableError(use === "read" ? "dependsOn" : "invalidate()", path);
    const table = catalog.qualify(ref, schemas);
    const tables =
      use === "read" ? catalog.readDependencies(table) : catalog.writeDependencies(table, "merge");
    for (const t of tables)
      keys.push(...(use === "read" ? [setup.keys.version(t)] : setup.keys.tableWide(t)));
  }
  return keys;
}

/** The version of a key of the low-level API, moved when set() or delete() replaces its entry. @internal */
export function keyVersion(keys: KeyLayout, key: string): string {
  return keys.version(`k:${key}`);
}
