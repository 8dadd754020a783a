import { randomUUID } from "node:crypto";
import { Pool } from "pg";
import { getServices } from "../../example/services";
import { PostgresStore } from "../../lib";
import { storeContract } from "./contract";

storeContract("PostgresStore", async () => {
  const connectionString = (await getServices()).pgUrl;
  const schema = `ac_contract_${randomUUID().slice(0, 8)}`;
  const store = new PostgresStore({ connectionString, schema });
  const admin = new Pool({ connectionString, max: 1 });
  return {
    store,
    // Versions are rows: a DELETE behind the store's back stands for a row lost some other way.
    loseVersion: async (key) =>
      void (await admin.query(`DELETE FROM "${schema}".autocache_versions WHERE key = $1`, [key])),
    close: async () => {
      await store.close();
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    },
  };
});
