import { MemcachedStore } from "../../lib";
import { MemcachedProcess } from "../support/memcached-process";
import { storeContract } from "./contract";

/** memjs ships no types; the contract only deletes keys behind the store's back. */
const memjs: {
  Client: {
    create(
      servers: string,
      options: object,
    ): { delete(key: string): Promise<boolean>; quit(): void };
  };
} = require("memjs");

storeContract("MemcachedStore", async () => {
  const server = await MemcachedProcess.start();
  const store = new MemcachedStore({ servers: [server.address] });
  const raw = memjs.Client.create(server.address, { logger: { log: () => undefined }, retries: 1 });
  return {
    store,
    // Memcached evicts any key whenever it likes; this is that, on purpose.
    loseVersion: async (key) => void (await raw.delete(key)),
    close: async () => {
      raw.quit();
      await store.close();
      await server.kill();
    },
  };
});
