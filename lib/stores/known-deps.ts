/** How many keys' version lists a store remembers for one-round-trip hits. */
const REMEMBERED_KEYS = 10_000;

/**
 * The version keys each recently read or written entry named, so that a lookup can read them in
 * the same round trip as the entry; should the entry name others, a second read fetches those.
 */
export class KnownDeps {
  private readonly deps = new Map<string, readonly string[]>();

  get(key: string): readonly string[] {
    return this.deps.get(key) ?? [];
  }

  remember(key: string, deps: readonly string[]): void {
    if (this.deps.size >= REMEMBERED_KEYS && !this.deps.has(key)) this.deps.clear();
    this.deps.set(key, deps);
  }
}
