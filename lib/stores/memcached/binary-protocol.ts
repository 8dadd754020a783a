import { createHash } from "node:crypto";

/**
 * The part of a memjs Client this store uses: its connections (one per server, with SASL,
 * timeouts and retries) and its choice of server per key. memjs's own commands lack CAS and
 * multi-get and read only 32 bits of an increment, so requests are built here and sent through
 * `perform`, memjs's generic "send one request, get its reply" path.
 */
export interface MemjsClient {
  seq: number;
  perform(
    key: string,
    request: Buffer,
    seq: number,
    callback: (error: Error | null, response: MemjsResponse | null) => void,
  ): void;
  readonly options: { failover?: boolean };
  quit(): void;
}

interface MemjsResponse {
  header: { status: number; cas: Buffer };
  val: Buffer;
}

const OP = { get: 0x00, set: 0x01, add: 0x02, delete: 0x04, increment: 0x05 } as const;
const STATUS = { ok: 0x00, notFound: 0x01, exists: 0x02, tooLarge: 0x03, notStored: 0x05 } as const;
const MAX_KEY_BYTES = 250;
/** Memcached reads an expiry above 30 days as a Unix time rather than a number of seconds. */
const MAX_RELATIVE_EXPIRY = 60 * 60 * 24 * 30;

/** Memcached answered a request with an error status. */
export class MemcachedError extends Error {
  constructor(what: string, status: number) {
    super(`Memcached refused ${what} (status 0x${status.toString(16).padStart(4, "0")})`);
    this.name = "MemcachedError";
  }
}

export interface Item {
  readonly value: string;
  /** The item's CAS token, for a store that succeeds only if nobody changed it since. */
  readonly cas: Buffer;
}

/** What a conditional store did: stored, or lost a race (the key exists, or is gone for a CAS). */
export type StoreOutcome = "stored" | "conflict" | "tooLarge";

/**
 * Memcached's binary protocol over a memjs client. Requests issued in the same turn of the event
 * loop go out back to back on each server's connection, so reading several keys with
 * Promise.all costs one round trip, as a multi-get does (neither is atomic in Memcached).
 */
export class BinaryProtocol {
  constructor(readonly client: MemjsClient) {}

  async get(key: string): Promise<Item | null> {
    const reply = await this.send(key, OP.get, EMPTY, EMPTY);
    if (reply.header.status === STATUS.notFound) return null;
    if (reply.header.status !== STATUS.ok)
      throw new MemcachedError(`GET ${key}`, reply.header.status);
    return { value: reply.val.toString("utf8"), cas: Buffer.from(reply.header.cas) };
  }

  getAll(keys: readonly string[]): Promise<(Item | null)[]> {
    return Promise.all(keys.map((key) => this.get(key)));
  }

  /** SET (with `cas`: only if the item is unchanged since it was read) or ADD (only if absent). */
  async store(
    op: "set" | "add",
    key: string,
    value: string,
    expirySeconds: number,
    cas?: Buffer,
  ): Promise<StoreOutcome> {
    const extras = Buffer.alloc(8);
    extras.writeUInt32BE(expiry(expirySeconds), 4);
    const reply = await this.send(key, OP[op], extras, Buffer.from(value, "utf8"), cas);
    switch (reply.header.status) {
      case STATUS.ok:
        return "stored";
      case STATUS.exists:
      case STATUS.notStored:
      case STATUS.notFound:
        return "conflict";
      case STATUS.tooLarge:
        return "tooLarge";
      default:
        throw new MemcachedError(`${op.toUpperCase()} ${key}`, reply.header.status);
    }
  }

  /** Adds `amount` atomically, creating the counter at `initial` when it is absent; returns the new value. */
  async increment(key: string, amount: bigint, initial: bigint): Promise<bigint> {
    const extras = Buffer.alloc(20);
    extras.writeBigUInt64BE(amount, 0);
    extras.writeBigUInt64BE(initial, 8);
    extras.writeUInt32BE(0, 16);
    const reply = await this.send(key, OP.increment, extras, EMPTY);
    if (reply.header.status !== STATUS.ok)
      throw new MemcachedError(`INCREMENT ${key}`, reply.header.status);
    return reply.val.readBigUInt64BE(0);
  }

  async delete(key: string): Promise<void> {
    const reply = await this.send(key, OP.delete, EMPTY, EMPTY);
    if (reply.header.status !== STATUS.ok && reply.header.status !== STATUS.notFound)
      throw new MemcachedError(`DELETE ${key}`, reply.header.status);
  }

  /**
   * The request's opaque number, which memjs matches replies by. memjs's own incrSeq wraps it to a
   * signed 32-bit value, which the header cannot hold after 2^31 requests; this stays in 1..2^31-1.
   */
  private nextSeq(): number {
    const seq = (this.client.seq % 0x7fffffff) + 1;
    this.client.seq = seq;
    return seq;
  }

  private send(
    key: string,
    opcode: number,
    extras: Buffer,
    value: Buffer,
    cas?: Buffer,
  ): Promise<MemjsResponse> {
    const wire = wireKey(key);
    const seq = this.nextSeq();
    const request = Buffer.alloc(24 + extras.length + wire.length + value.length);
    request.writeUInt8(0x80, 0);
    request.writeUInt8(opcode, 1);
    request.writeUInt16BE(wire.length, 2);
    request.writeUInt8(extras.length, 4);
    request.writeUInt32BE(extras.length + wire.length + value.length, 8);
    request.writeUInt32BE(seq, 12);
    cas?.copy(request, 16);
    extras.copy(request, 24);
    wire.copy(request, 24 + extras.length);
    value.copy(request, 24 + extras.length + wire.length);
    return new Promise((resolve, reject) => {
      this.client.perform(wire.toString("latin1"), request, seq, (error, response) => {
        if (error || !response)
          reject(
            error instanceof Error ? error : new Error(`Memcached: ${String(error ?? "no reply")}`),
          );
        else resolve(response);
      });
    });
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * Keys longer than Memcached's 250 bytes are replaced by their SHA-256, so two long keys never
 * share an item (invariant 8). The server is chosen from the same bytes by every instance.
 */
function wireKey(key: string): Buffer {
  const bytes = Buffer.from(key, "utf8");
  if (bytes.length <= MAX_KEY_BYTES) return bytes;
  return Buffer.from(`#${createHash("sha256").update(bytes).digest("hex")}`, "latin1");
}

function expiry(seconds: number): number {
  if (seconds <= MAX_RELATIVE_EXPIRY) return seconds;
  return Math.floor(Date.now() / 1000) + seconds;
}
