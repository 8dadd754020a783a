import type { QualifiedName } from "../catalog/catalog";
import type { DatabaseIdentity } from "../catalog/database-identity";
import type { KeySpace } from "../stores/store";

/**
 * Every key of one namespace starts with "<namespace>:", so a Redis ACL such as ~blog:* covers
 * them. Version keys and the clock share the hash tag {<namespace>:v} (one Redis Cluster slot, so
 * scripts may touch them together); entries spread across slots.
 */
export class KeyLayout implements KeySpace {
  readonly clockKey: string;
  readonly entryPrefix: string;
  readonly versionPrefix: string;
  readonly channel: string;
  private readonly entryScope: string;
  private readonly versionScope: string;

  constructor(
    readonly namespace: string,
    identity: DatabaseIdentity,
  ) {
    this.versionPrefix = versionPrefix(namespace);
    this.clockKey = KeyLayout.clockKey(namespace);
    this.channel = KeyLayout.channel(namespace);
    this.entryPrefix = `${namespace}:e:`;
    this.entryScope = `${this.entryPrefix}${identity.scope}:`;
    this.versionScope = `${this.versionPrefix}${identity.database}:`;
  }

  /** The pub/sub channel bumps are announced on, for other processes' in-process tiers. */
  static channel(namespace: string): string {
    return `${namespace}:invalidations`;
  }

  static clockKey(namespace: string): string {
    return `${versionPrefix(namespace)}clock`;
  }

  /** The version of one table. */
  version(table: QualifiedName): string {
    return `${this.versionScope}${table}`;
  }

  /** The version every entry of this database depends on, bumped by writes the library cannot see into. */
  get everything(): string {
    return `${this.versionScope}*`;
  }

  /** The entry of one call of a cached method. */
  method(owner: string, method: string, digest: string): string {
    return `${this.entryScope}m:${owner}.${method}:${digest}`;
  }

  /** The entry of a key given to the low-level API. */
  user(key: string): string {
    return `${this.entryScope}k:${key}`;
  }
}

function versionPrefix(namespace: string): string {
  return `${namespace}:{${namespace}:v}:`;
}
