import net from "node:net";

/** A port the kernel just handed out on loopback and nobody listens on now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Whether a server on this loopback port answers `request` with a line starting with `reply`
 * ("PING" / "+PONG" for Redis, "version" / "VERSION" for memcached), by a raw socket so that no
 * client is left behind.
 */
export function answers(port: number, request: string, reply: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    let received = "";
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.on("error", () => done(false));
    socket.on("connect", () => socket.write(`${request}\r\n`));
    socket.on("data", (chunk) => {
      received += String(chunk);
      if (received.includes("\r\n")) done(received.startsWith(reply));
    });
  });
}
