import { inspect } from "node:util";

/** A page number kept where only the class can read it: keys built from own fields see nothing. */
export class HiddenPage {
  readonly #number: number;

  constructor(number: number) {
    this.#number = number;
  }

  get number(): number {
    return this.#number;
  }

  describe(): string {
    return `HiddenPage(${this.#number})`;
  }
}

/** The same, with toJSON(): the class says what identifies an instance. */
export class Page {
  readonly #number: number;

  constructor(number: number) {
    this.#number = number;
  }

  get number(): number {
    return this.#number;
  }

  toJSON(): { number: number } {
    return { number: this.#number };
  }

  describe(): string {
    return `Page(${this.#number})`;
  }
}

/** Public fields beside a private one: the public ones alone would collapse two cursors. */
export class Cursor {
  readonly #offset: number;

  constructor(
    readonly limit: number,
    offset: number,
  ) {
    this.#offset = offset;
  }

  describe(): string {
    return `Cursor(${this.limit}, ${this.#offset})`;
  }
}

class Paging {
  #size = 10;

  resize(size: number): this {
    this.#size = size;
    return this;
  }

  get size(): number {
    return this.#size;
  }
}

/** Its own fields look complete, but its parent keeps state in a #private field. */
export class TitlePaging extends Paging {
  constructor(readonly title: string) {
    super();
  }

  describe(): string {
    return `TitlePaging(${this.title}, ${this.size})`;
  }
}

/** A DTO as NestJS and class-validator users write them: its state is its public fields. */
export class TitleFilter {
  constructor(
    readonly title: string,
    readonly published?: boolean,
  ) {}
}

/** What a method receiving `value` can observe of it, to tell two calls' results apart. */
export function show(value: unknown): string {
  const describe = (value as { describe?: unknown } | null)?.describe;
  if (typeof describe === "function") return describe.call(value);
  return inspect(value, { depth: 8, getters: true, showHidden: false, sorted: false });
}
