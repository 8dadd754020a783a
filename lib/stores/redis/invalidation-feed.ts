import type { Cluster, Redis } from "ioredis";
import type { FollowHandlers } from "../store";

/**
 * Follows the invalidations that bump.lua publishes, on a connection of its own (a subscribed
 * connection can do nothing else). Messages sent while it is disconnected are lost, so every
 * disconnect is reported and the tier that relies on it starts empty again once resubscribed.
 */
export class InvalidationFeed {
  private readonly subscriber: Redis | Cluster;
  private closed = false;

  constructor(
    client: Redis | Cluster,
    private readonly channel: string,
    private readonly handlers: FollowHandlers,
  ) {
    // ioredis 6 types the two duplicate() methods with signatures a union cannot call.
    this.subscriber = client.isCluster
      ? (client as Cluster).duplicate()
      : (client as Redis).duplicate();
    const prefix = (client.options as { keyPrefix?: string }).keyPrefix ?? "";
    this.subscriber.on("message", (from: string, text: string) => {
      if (from !== channel) return;
      const words = text.split(" ");
      handlers.invalidated(
        words.slice(1).map((key) => (key.startsWith(prefix) ? key.slice(prefix.length) : key)),
      );
    });
    this.subscriber.on("close", () => handlers.state(false));
    this.subscriber.on("ready", () => void this.subscribe());
    // A subscriber's connection errors are the same as the main client's; they surface there.
    this.subscriber.on("error", () => undefined);
    // A duplicate of a lazyConnect client waits for a first command that a subscriber never sends.
    if (this.subscriber.status === "wait") this.subscriber.connect().catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.handlers.state(false);
    this.subscriber.disconnect();
  }

  private async subscribe(): Promise<void> {
    try {
      await this.subscriber.subscribe(this.channel);
      if (!this.closed) this.handlers.state(true);
    } catch {
      this.handlers.state(false);
    }
  }
}
