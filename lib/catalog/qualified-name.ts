import type { RelationName } from "../sql/statement-effects";

/** A relation by schema-qualified name, "schema.table", as used in dependency keys. */
export type QualifiedName = string;

/** The one way a schema and a relation name become a QualifiedName. */
export function qualifiedName(schema: string, name: string): QualifiedName {
  return `${schema}.${name}`;
}

/**
 * A name as users write it ("post" or "blog.post", in dependsOn, invalidate() and TypeORM's
 * tablePath) as a RelationName: the schema is absent when the name is bare.
 */
export function parseRelationName(text: string): RelationName {
  const dot = text.indexOf(".");
  return dot < 0 ? { name: text } : { schema: text.slice(0, dot), name: text.slice(dot + 1) };
}
