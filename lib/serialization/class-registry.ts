import type { DataSource, EntityMetadata } from "typeorm";
import type { EmbeddedMetadata } from "typeorm/metadata/EmbeddedMetadata";

type Constructor = abstract new (...args: never[]) => unknown;

/**
 * The classes whose instances a cached value may hold: the DataSource's entities and the classes of
 * their embedded columns. Each has a tag, its name (numbered when two share one), that is the same
 * in every process built from the same code.
 */
export class ClassRegistry {
  private readonly tags = new Map<Constructor, string>();
  private readonly classes = new Map<string, Constructor>();

  static of(dataSource: DataSource): ClassRegistry {
    const registry = new ClassRegistry();
    const visitEmbedded = (embedded: EmbeddedMetadata): void => {
      registry.add(embedded.type as Constructor);
      embedded.embeddeds.forEach(visitEmbedded);
    };
    dataSource.entityMetadatas.forEach((metadata: EntityMetadata) => {
      if (typeof metadata.target === "function") registry.add(metadata.target as Constructor);
      metadata.embeddeds.forEach(visitEmbedded);
    });
    return registry;
  }

  tagOf(type: unknown): string | undefined {
    return this.tags.get(type as Constructor);
  }

  classOf(tag: string): Constructor | undefined {
    return this.classes.get(tag);
  }

  private add(type: Constructor): void {
    if (typeof type !== "function" || this.tags.has(type)) return;
    let tag = type.name || "Anonymous";
    for (let n = 2; this.classes.has(tag); n++) tag = `${type.name}#${n}`;
    this.tags.set(type, tag);
    this.classes.set(tag, type);
  }
}
