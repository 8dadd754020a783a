import { MemoryStore } from "../../lib";
import { storeContract } from "./contract";

storeContract("MemoryStore", async () => ({
  store: new MemoryStore(),
  close: async () => undefined,
}));
