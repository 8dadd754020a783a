import type { TransactionControl } from "../sql/statement-effects";

interface Frame {
  readonly savepoint?: string;
  readonly deps: Set<string>;
}

/**
 * Holds the invalidations of one connection's open transaction until it ends: a savepoint gets a
 * frame of its own, RELEASE folds it into the one below, ROLLBACK TO empties it, and only the
 * outermost COMMIT hands everything over.
 */
export class TransactionBuffer {
  private readonly frames = new WeakMap<object, Frame[]>();

  isOpen(connection: object): boolean {
    return this.frames.has(connection);
  }

  /** Records deps written inside the open transaction; false when there is none. */
  hold(connection: object, deps: Iterable<string>): boolean {
    const frames = this.frames.get(connection);
    if (!frames) return false;
    const top = frames[frames.length - 1].deps;
    for (const dep of deps) top.add(dep);
    return true;
  }

  /** Applies a control statement; returns what a COMMIT makes due for invalidation. */
  apply(connection: object, control: TransactionControl, succeeded: boolean): Set<string> | undefined {
    const frames = this.frames.get(connection);
    if (control.kind === "begin") {
      if (succeeded && !frames) this.frames.set(connection, [{ deps: new Set() }]);
      return undefined;
    }
    if (!frames) return undefined;
    switch (control.kind) {
      case "commit":
        this.frames.delete(connection);
        return succeeded ? union(frames) : undefined;
      case "rollback":
        this.frames.delete(connection);
        return undefined;
      case "savepoint":
        if (succeeded) frames.push({ savepoint: control.name, deps: new Set() });
        return undefined;
      case "release": {
        const at = findSavepoint(frames, control.name);
        if (succeeded && at > 0) frames.splice(at - 1, frames.length, { savepoint: frames[at - 1].savepoint, deps: union(frames.slice(at - 1)) });
        return undefined;
      }
      case "rollback-to": {
        const at = findSavepoint(frames, control.name);
        if (succeeded && at > 0) frames.splice(at, frames.length, { savepoint: control.name, deps: new Set() });
        return undefined;
      }
    }
  }
}

function findSavepoint(frames: Frame[], name: string): number {
  for (let i = frames.length - 1; i > 0; i--) if (frames[i].savepoint === name) return i;
  return -1;
}

function union(frames: readonly Frame[]): Set<string> {
  const out = new Set<string>();
  for (const frame of frames) for (const dep of frame.deps) out.add(dep);
  return out;
}
