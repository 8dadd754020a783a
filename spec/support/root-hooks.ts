import { stopServices } from "../../example/services";
import { dropCreatedNamespaces, dropCreatedSchemas } from "./fixture";

/** Mocha root hooks: leave the test database and any containers as they were before the run. */
export const mochaHooks = {
  async afterAll(): Promise<void> {
    await dropCreatedSchemas();
    await dropCreatedNamespaces();
    await stopServices();
  },
};
