import { RedisStore } from "../../lib";
import { openRedis } from "../support/fixture";
import { storeContract } from "./contract";

storeContract("RedisStore on a single Redis", async () => {
  const redis = await openRedis();
  return {
    store: new RedisStore(redis),
    loseVersion: async (key) => void (await redis.del(key)),
    close: async () => redis.disconnect(),
  };
});
