import net from "node:net";

/** One client connection through a RedisProxy: what the server sends it can be held back. */
export class ProxiedConnection {
  /** Everything the client sent, in RESP, to tell connections apart (a subscriber sends SUBSCRIBE). */
  sent = "";
  private held?: Buffer[];
  private waiting: (() => void)[] = [];

  constructor(
    private readonly client: net.Socket,
    server: net.Socket,
  ) {
    client.on("data", (chunk: Buffer) => {
      this.sent += chunk.toString("latin1");
      server.write(chunk);
    });
    server.on("data", (chunk: Buffer) => {
      if (this.held) this.held.push(chunk);
      else client.write(chunk);
      for (const resolve of this.waiting.splice(0)) resolve();
    });
    const end = () => {
      client.destroy();
      server.destroy();
    };
    for (const socket of [client, server]) {
      socket.on("close", end);
      socket.on("error", end);
    }
  }

  get isSubscriber(): boolean {
    return /\$9\r\nsubscribe\r\n/i.test(this.sent);
  }

  /** From now on, what the server sends waits in the proxy until release(). */
  hold(): void {
    this.held ??= [];
  }

  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const chunk of held) this.client.write(chunk);
  }

  /** Resolves once the server sends this connection something (held or not). */
  nextFromServer(): Promise<void> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }
}

/** A TCP proxy on loopback in front of a Redis, so a test can delay the replies of one connection. */
export class RedisProxy {
  readonly connections: ProxiedConnection[] = [];

  private constructor(
    private readonly server: net.Server,
    private readonly target: URL,
  ) {}

  static async start(redisUrl: string): Promise<RedisProxy> {
    const target = new URL(redisUrl);
    const server = net.createServer();
    const proxy = new RedisProxy(server, target);
    server.on("connection", (client) => {
      const upstream = net.connect({ host: target.hostname, port: Number(target.port || 6379) });
      proxy.connections.push(new ProxiedConnection(client, upstream));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  /** The Redis URL to connect through the proxy, with the target's credentials and database. */
  get url(): string {
    const url = new URL(this.target.href);
    url.hostname = "127.0.0.1";
    url.port = String((this.server.address() as net.AddressInfo).port);
    return url.href;
  }

  async close(): Promise<void> {
    await new Promise((resolve) => this.server.close(resolve));
  }
}
