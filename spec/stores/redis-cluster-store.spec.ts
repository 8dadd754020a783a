import { Cluster } from "ioredis";
import { RedisStore } from "../../lib";
import { RedisCluster } from "../support/redis-cluster";
import { until } from "../support/wait";
import { storeContract } from "./contract";

storeContract("RedisStore on Redis Cluster", async () => {
  const cluster = await RedisCluster.start();
  const client = new Cluster(cluster.startupNodes);
  client.on("error", () => undefined);
  await until("the cluster client is ready", () => client.status === "ready");
  return {
    store: new RedisStore(client),
    loseVersion: async (key) => void (await client.del(key)),
    close: async () => {
      client.disconnect();
      await cluster.stop();
    },
  };
});
