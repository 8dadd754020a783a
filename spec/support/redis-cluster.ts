import { execFile } from "node:child_process";
import net from "node:net";
import { promisify } from "node:util";
import { RedisProcess } from "./redis-process";
import { sleep } from "./wait";

const run = promisify(execFile);

/** One redis-server of the cluster, in cluster mode; after a kill it rejoins from the nodes.conf in its directory. */
export class ClusterNodeProcess extends RedisProcess {
  constructor(port: number) {
    super(
      port,
      [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "1000",
        "--repl-diskless-sync-delay",
        "0",
        "--repl-ping-replica-period",
        "1",
      ],
      "autocache-cluster-",
    );
  }
}

/** A line of CLUSTER NODES. */
export interface NodeInfo {
  id: string;
  port: number;
  flags: string[];
  masterId: string;
  slots: [number, number][];
}

/**
 * A throwaway Redis Cluster on loopback: three masters with a replica each, created with
 * `redis-cli --cluster create`. Each node has its own directory and no persistence.
 */
export class RedisCluster {
  private constructor(readonly nodes: ClusterNodeProcess[]) {}

  static async start(): Promise<RedisCluster> {
    const ports = await freePortBlock(6);
    const cluster = new RedisCluster(ports.map((port) => new ClusterNodeProcess(port)));
    try {
      await Promise.all(cluster.nodes.map((node) => node.start()));
      await run(
        "redis-cli",
        [
          "--cluster",
          "create",
          ...ports.map((port) => `127.0.0.1:${port}`),
          "--cluster-replicas",
          "1",
          "--cluster-yes",
        ],
        { timeout: 30_000 },
      );
      await cluster.waitUntilHealthy();
      return cluster;
    } catch (error) {
      await cluster.stop();
      throw error;
    }
  }

  get startupNodes(): { host: string; port: number }[] {
    return this.nodes.map((node) => ({ host: "127.0.0.1", port: node.port }));
  }

  node(port: number): ClusterNodeProcess {
    const found = this.nodes.find((node) => node.port === port);
    if (!found) throw new Error(`no cluster node on port ${port}`);
    return found;
  }

  /** CLUSTER NODES as seen by a running node. */
  async topology(): Promise<NodeInfo[]> {
    const live = this.nodes.find((node) => node.isRunning);
    if (!live) throw new Error("no cluster node is running");
    return parseNodes(await live.cli("CLUSTER", "NODES"));
  }

  async slotOf(key: string): Promise<number> {
    const live = this.nodes.find((node) => node.isRunning);
    if (!live) throw new Error("no cluster node is running");
    return Number((await live.cli("CLUSTER", "KEYSLOT", key)).trim());
  }

  /** The live master serving a slot, and its replicas. */
  async ownerOf(
    slot: number,
  ): Promise<{ master: ClusterNodeProcess; replicas: ClusterNodeProcess[] }> {
    const nodes = await this.topology();
    const master = nodes.find(
      (n) =>
        n.flags.includes("master") &&
        !n.flags.includes("fail") &&
        n.slots.some(([a, b]) => a <= slot && slot <= b),
    );
    if (!master) throw new Error(`no live master serves slot ${slot}`);
    const replicas = nodes.filter((n) => n.masterId === master.id && !n.flags.includes("fail"));
    return { master: this.node(master.port), replicas: replicas.map((r) => this.node(r.port)) };
  }

  /**
   * Waits until every running node reports cluster_state:ok and sees every slot served by a
   * master that is running, and every running replica has a live, synced link to its master and
   * is listed by CLUSTER SLOTS.
   */
  async waitUntilHealthy(timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const runningPorts = new Set(
      this.nodes.filter((node) => node.isRunning).map((node) => node.port),
    );
    for (;;) {
      const states = await Promise.all(
        this.nodes
          .filter((node) => node.isRunning)
          .map(async (node) => {
            try {
              const [info, replication, nodes, slots] = await Promise.all([
                node.cli("CLUSTER", "INFO"),
                node.cli("INFO", "replication"),
                node.cli("CLUSTER", "NODES"),
                node.cli("--json", "CLUSTER", "SLOTS"),
              ]);
              const view = parseNodes(nodes);
              const replicas = view.filter(
                (n) => n.flags.includes("slave") && runningPorts.has(n.port),
              ).length;
              const served = view
                .filter((n) => n.flags.includes("master") && runningPorts.has(n.port))
                .flatMap((n) => n.slots);
              const covered = served.reduce((sum, [a, b]) => sum + b - a + 1, 0);
              const synced =
                replication.includes("role:master") ||
                (replication.includes("master_link_status:up") &&
                  replication.includes("master_sync_in_progress:0"));
              // Clients learn replicas from CLUSTER SLOTS, which lists one only once it has
              // replicated something.
              const listedReplicas = (JSON.parse(slots) as unknown[][]).reduce(
                (sum, range) => sum + range.length - 3,
                0,
              );
              return (
                info.includes("cluster_state:ok") &&
                covered === 16384 &&
                synced &&
                listedReplicas === replicas
              );
            } catch {
              return false;
            }
          }),
      );
      if (states.every(Boolean)) return;
      if (Date.now() > deadline)
        throw new Error("the Redis Cluster did not become healthy in time");
      await sleep(100);
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((node) => node.stop()));
  }
}

function parseNodes(text: string): NodeInfo[] {
  return text
    .trim()
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => {
      const [id, address, flags, masterId, , , , , ...slots] = line.trim().split(" ");
      return {
        id,
        port: Number(address.split("@")[0].split(":")[1]),
        flags: flags.split(","),
        masterId,
        slots: slots
          .filter((s) => !s.startsWith("["))
          .map((s) => {
            const [a, b] = s.split("-").map(Number);
            return [a, b ?? a] as [number, number];
          }),
      };
    });
}

/**
 * `count` consecutive ports whose cluster bus ports (port + 10000) are free as well. Starts at a
 * random place in 7100-9900 so spec runs side by side rarely collide.
 */
async function freePortBlock(count: number): Promise<number[]> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 7100 + Math.floor(Math.random() * 280) * 10;
    const ports = Array.from({ length: count }, (_, i) => base + i);
    const free = await Promise.all(ports.flatMap((port) => [isFree(port), isFree(port + 10_000)]));
    if (free.every(Boolean)) return ports;
  }
  throw new Error("found no free block of ports for a Redis Cluster");
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}
