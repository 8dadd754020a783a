import { expect } from "chai";
import { Column, DataSource, Entity, PrimaryColumn, Repository } from "typeorm";
import { getServices } from "../example/services";
import { Cached, QueryCache, QueryCacheSubscriber, RedisStore } from "../lib";
import { openDataSource, openRedis, SelectCounter, uniqueNamespace } from "./support/fixture";

/** A table found by the search path: TypeORM writes its name unqualified. */
@Entity({ name: "item" })
class Item {
  @PrimaryColumn()
  id!: number;

  @Column()
  label!: string;
}

class ItemRepository extends Repository<Item> {
  @Cached(60)
  all(): Promise<Item[]> {
    return this.find({ order: { id: "ASC" } });
  }
}

/**
 * SET search_path changes what unqualified names mean on one session: writes there must be charged
 * to the schema they reached, and reads there must not be served another schema's entries.
 */
describe("search_path: a session that sets its own is charged and served by its own schemas", () => {
  const ns = uniqueNamespace();
  const schemaA = `${ns}_a`;
  const schemaB = `${ns}_b`;
  let dataSource: DataSource;
  let cache: QueryCache;
  let items: ItemRepository;
  const labels = (rows: Item[]) => rows.map((i) => i.label);
  const itemsOfB = () =>
    cache.wrap(`b-items`, () =>
      dataSource.query(`SELECT label FROM "${schemaB}".item ORDER BY id`),
    );

  before(async () => {
    // Creates both schemas (the fixture drops them after the run).
    for (const schema of [schemaA, schemaB]) await (await openDataSource({ schema })).destroy();
    const { pgUrl } = await getServices();
    dataSource = new DataSource({
      type: "postgres",
      url: pgUrl,
      entities: [Item],
      subscribers: [QueryCacheSubscriber, SelectCounter],
      // Every session of this DataSource, the cache's own included, starts on schema A.
      extra: { options: `-c search_path=${schemaA}` },
    });
    await dataSource.initialize();
    cache = new QueryCache({ dataSource, store: new RedisStore(await openRedis()), namespace: ns });
    items = new ItemRepository(Item, dataSource.manager);
  });
  after(async () => {
    await cache.close();
    (cache.store as RedisStore).redis.disconnect();
    await dataSource.destroy();
  });
  beforeEach(async () => {
    for (const [schema, label] of [
      [schemaA, "a"],
      [schemaB, "b"],
    ]) {
      await dataSource.query(
        `DROP TABLE IF EXISTS "${schema}".item; CREATE TABLE "${schema}".item (id int PRIMARY KEY, label text NOT NULL)`,
      );
      await dataSource.query(`INSERT INTO "${schema}".item VALUES (1, '${label}1')`);
    }
    await cache.clear();
  });

  const warmed = async <T>(read: () => Promise<T>): Promise<T> => {
    for (let i = 0; i < 3; i++) {
      const hits = cache.stats().hits;
      const value = await read();
      if (cache.stats().hits > hits) return value;
    }
    throw new Error("the read was not served from the cache in 3 calls");
  };

  it("a write through a session whose search_path names another schema invalidates that schema's table", async () => {
    expect(await warmed(itemsOfB)).to.deep.equal([{ label: "b1" }]);
    const runner = dataSource.createQueryRunner();
    try {
      await runner.query(`SET search_path TO "${schemaB}"`);
      await runner.query(`UPDATE item SET label = 'b-updated'`);
    } finally {
      await runner.query("RESET search_path");
      await runner.release();
    }
    expect(await itemsOfB()).to.deep.equal([{ label: "b-updated" }]);
  });

  it("SET LOCAL inside a transaction charges the transaction's writes to its schema at COMMIT", async () => {
    expect(await warmed(itemsOfB)).to.deep.equal([{ label: "b1" }]);
    await dataSource.transaction(async (em) => {
      await em.query(`SET LOCAL search_path TO "${schemaB}"`);
      await em.query(`INSERT INTO item VALUES (2, 'b2')`);
    });
    expect(await itemsOfB()).to.deep.equal([{ label: "b1" }, { label: "b2" }]);
  });

  it("set_config('search_path', ...) with a value the library cannot read makes the session's writes invalidate everything", async () => {
    expect(await warmed(itemsOfB)).to.deep.equal([{ label: "b1" }]);
    const runner = dataSource.createQueryRunner();
    try {
      await runner.query(`SELECT set_config('search_path', $1, false)`, [`"${schemaB}"`]);
      await runner.query(`DELETE FROM item`);
    } finally {
      await runner.query("RESET search_path");
      await runner.release();
    }
    expect(await itemsOfB()).to.deep.equal([]);
  });

  it("a repository read through a session whose search_path names another schema is not served the default schema's entry", async () => {
    expect(labels(await warmed(() => items.all()))).to.deep.equal(["a1"]);
    const runner = dataSource.createQueryRunner();
    try {
      await runner.query(`SET search_path TO "${schemaB}"`);
      expect(labels(await runner.manager.withRepository(items).all())).to.deep.equal(["b1"]);
      await runner.query(`RESET search_path`);
      expect(
        labels(await runner.manager.withRepository(items).all()),
        "after RESET, the default schema again",
      ).to.deep.equal(["a1"]);
    } finally {
      await runner.release();
    }
    expect(labels(await items.all())).to.deep.equal(["a1"]);
  });

  it("a session left on another schema does not store what it read under the default schema's key", async () => {
    const runner = dataSource.createQueryRunner();
    try {
      await runner.query(`SET search_path TO "${schemaB}"`);
      // Read twice on that session: were its result stored, the default key would hold schema B's rows.
      await runner.manager.withRepository(items).all();
      await runner.manager.withRepository(items).all();
    } finally {
      await runner.query("RESET search_path");
      await runner.release();
    }
    expect(labels(await items.all())).to.deep.equal(["a1"]);
  });
});
