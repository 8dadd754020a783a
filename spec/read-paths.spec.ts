import { expect } from "chai";
import type { Repository } from "typeorm";
import {
  type App,
  dropNamespace,
  openApp,
  queryBehindTheCache,
  selectCount,
  uniqueNamespace,
} from "./support/fixture";
import {
  Article,
  Car,
  CarListing,
  Feature,
  ForeignWidget,
  Gadget,
  Maker,
  OTHER_SCHEMA,
  readPathEntities,
  Topic,
  Widget,
} from "./support/paths-entities";
import { warm } from "./support/warm";

describe("read paths: a cached call depends on every table it reads, however it reads it", () => {
  const ns = uniqueNamespace();
  const t = (name: string) => `"${ns}"."${name}"`;
  let app: App;
  let makers: Repository<Maker>;
  let features: Repository<Feature>;
  let cars: Repository<Car>;
  let topics: Repository<Topic>;
  let articles: Repository<Article>;
  let gadgets: Repository<Gadget>;
  let widgets: Repository<Widget>;
  let foreignWidgets: Repository<ForeignWidget>;
  let warnings: string[] = [];

  const renameMaker = (from: string, to: string) => makers.update({ name: from }, { name: to });

  before(async () => {
    await queryBehindTheCache(`CREATE SCHEMA IF NOT EXISTS "${OTHER_SCHEMA}"`);
    app = await openApp(ns, { fresh: true, extraEntities: readPathEntities });
    app.cache.on("warning", (message: string) => warnings.push(message));
    const repo = <E extends object>(type: new () => E) => app.dataSource.getRepository(type);
    makers = repo(Maker);
    features = repo(Feature);
    cars = repo(Car);
    topics = repo(Topic);
    articles = repo(Article);
    gadgets = repo(Gadget);
    widgets = repo(Widget);
    foreignWidgets = repo(ForeignWidget);
  });
  after(async () => {
    await dropNamespace(app.redis, ns);
    await app.close();
    await queryBehindTheCache(`DROP SCHEMA IF EXISTS "${OTHER_SCHEMA}" CASCADE`);
  });
  beforeEach(async () => {
    warnings = [];
    const tables = [
      "car_features_feature",
      "article_topics_topic",
      "car",
      "feature",
      "article",
      "topic",
      "gadget",
      "widget",
    ].map(t);
    await app.dataSource.query(
      `TRUNCATE ${tables.join(", ")}, "${OTHER_SCHEMA}"."widget", ${t("maker")} RESTART IDENTITY CASCADE`,
    );
    const [volvo, fiat] = await makers.save([{ name: "Volvo" }, { name: "Fiat" }]);
    const [radio, roof] = await features.save([{ name: "radio" }, { name: "roof" }]);
    await cars.save([
      { model: "240", maker: volvo, features: [radio] },
      { model: "Panda", maker: fiat, features: [radio, roof] },
      { model: "kit car", maker: null, features: [] },
    ]);
    const [news, sport] = await topics.save([{ name: "news" }, { name: "sport" }]);
    await articles.save([
      { title: "launch", sponsor: volvo, topics: [news] },
      { title: "race", sponsor: null, topics: [news, sport] },
    ]);
  });

  describe("SQL shapes", () => {
    it("a QueryBuilder subquery (WHERE ... IN (SELECT ...)) makes the subquery's table a dependency", async () => {
      const byMaker = () =>
        app.cache.wrap("cars-by-maker-name", async () =>
          (
            await cars
              .createQueryBuilder("car")
              .where(
                (qb) =>
                  `car.makerId IN ${qb.subQuery().select("m.id").from(Maker, "m").where("m.name = :name").getQuery()}`,
              )
              .setParameter("name", "Fiat")
              .orderBy("car.id")
              .getMany()
          ).map((c) => c.model),
        );
      expect(await warm(app, byMaker)).to.deep.equal(["Panda"]);
      await renameMaker("Volvo", "Fiat");
      expect(await byMaker()).to.deep.equal(["240", "Panda"]);
    });

    it("a correlated EXISTS subquery in raw SQL makes its table a dependency", async () => {
      const withFeatures = () =>
        app.cache.wrap("cars-with-features", () =>
          app.dataSource.query(
            `SELECT model FROM ${t("car")} c WHERE EXISTS (SELECT 1 FROM ${t("car_features_feature")} j WHERE j."carId" = c.id) ORDER BY id`,
          ),
        );
      expect(await warm(app, withFeatures)).to.deep.equal([{ model: "240" }, { model: "Panda" }]);
      await app.dataSource.query(
        `INSERT INTO ${t("car_features_feature")} ("carId", "featureId") VALUES (3, 1)`,
      );
      expect(await withFeatures()).to.deep.equal([
        { model: "240" },
        { model: "Panda" },
        { model: "kit car" },
      ]);
    });

    it("a CTE makes the tables it reads dependencies (and its own name is not taken for a table)", async () => {
      const named = () =>
        app.cache.wrap("cte-makers", () =>
          app.dataSource.query(
            `WITH named AS (SELECT id, name FROM ${t("maker")}) SELECT c.model, named.name FROM ${t("car")} c JOIN named ON named.id = c."makerId" ORDER BY c.id`,
          ),
        );
      expect(await warm(app, named)).to.deep.equal([
        { model: "240", name: "Volvo" },
        { model: "Panda", name: "Fiat" },
      ]);
      await renameMaker("Fiat", "FIAT");
      expect(await named()).to.deep.equal([
        { model: "240", name: "Volvo" },
        { model: "Panda", name: "FIAT" },
      ]);
    });

    it("a recursive CTE bounded by a table makes that table a dependency", async () => {
      const series = () =>
        app.cache.wrap("recursive-cte", () =>
          app.dataSource.query(
            `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < (SELECT count(*) FROM ${t("car")})) SELECT count(*)::int AS n FROM n`,
          ),
        );
      expect(await warm(app, series)).to.deep.equal([{ n: 3 }]);
      await cars.insert({ model: "Uno" });
      expect(await series()).to.deep.equal([{ n: 4 }]);
    });

    it("UNION makes every branch's table a dependency", async () => {
      const names = () =>
        app.cache.wrap("union-names", () =>
          app.dataSource.query(
            `SELECT name FROM ${t("maker")} UNION SELECT name FROM ${t("feature")} ORDER BY name`,
          ),
        );
      expect((await warm(app, names)).map((r: { name: string }) => r.name)).to.deep.equal([
        "Fiat",
        "Volvo",
        "radio",
        "roof",
      ]);
      await features.insert({ name: "heater" });
      expect((await warm(app, names)).map((r: { name: string }) => r.name)).to.deep.equal([
        "Fiat",
        "Volvo",
        "heater",
        "radio",
        "roof",
      ]);
      await renameMaker("Fiat", "Lancia");
      expect((await names()).map((r: { name: string }) => r.name)).to.deep.equal([
        "Lancia",
        "Volvo",
        "heater",
        "radio",
        "roof",
      ]);
    });
  });

  describe("TypeORM relation loading", () => {
    const articleSummary = (a: Article) => ({
      title: a.title,
      sponsor: a.sponsor?.name ?? null,
      topics: (a.topics ?? []).map((x) => x.name).sort(),
    });

    it('relationLoadStrategy: "query" tracks the separate relation queries', async () => {
      const loaded = () =>
        app.cache.wrap("articles-query-strategy", async () =>
          (
            await articles.find({
              relations: { sponsor: true, topics: true },
              relationLoadStrategy: "query",
              order: { id: "ASC" },
            })
          ).map(articleSummary),
        );
      expect(await warm(app, loaded)).to.deep.equal([
        { title: "launch", sponsor: "Volvo", topics: ["news"] },
        { title: "race", sponsor: null, topics: ["news", "sport"] },
      ]);
      await topics.update({ name: "sport" }, { name: "motorsport" });
      expect((await warm(app, loaded))[1].topics, "a related row changed").to.deep.equal([
        "motorsport",
        "news",
      ]);
      await articles.createQueryBuilder().relation(Article, "topics").of(1).add(2);
      expect((await warm(app, loaded))[0].topics, "a junction row added").to.deep.equal([
        "motorsport",
        "news",
      ]);
      await renameMaker("Volvo", "Saab");
      expect((await loaded())[0].sponsor, "a many-to-one target changed").to.equal("Saab");
    });

    it("eager relations are tracked like named ones (many-to-one and many-to-many)", async () => {
      const all = () =>
        app.cache.wrap("cars-eager", async () =>
          (await cars.find({ order: { id: "ASC" } })).map((c) => [
            c.model,
            c.maker?.name ?? null,
            c.features.map((f) => f.name).sort(),
          ]),
        );
      expect(await warm(app, all)).to.deep.equal([
        ["240", "Volvo", ["radio"]],
        ["Panda", "Fiat", ["radio", "roof"]],
        ["kit car", null, []],
      ]);
      await renameMaker("Volvo", "Geely");
      expect((await warm(app, all))[0][1]).to.equal("Geely");
      await cars.createQueryBuilder().relation(Car, "features").of(3).add(2);
      expect((await warm(app, all))[2][2]).to.deep.equal(["roof"]);
      await features.update({ name: "radio" }, { name: "stereo" });
      expect((await all())[1][2]).to.deep.equal(["roof", "stereo"]);
    });

    it("loadRelationIds tracks the junction table", async () => {
      const ids = () =>
        app.cache.wrap("article-relation-ids", async () =>
          (await articles.find({ loadRelationIds: true, order: { id: "ASC" } })).map((a) => [
            a.title,
            a.sponsor,
            [...(a.topics as unknown as number[])].sort(),
          ]),
        );
      expect(await warm(app, ids)).to.deep.equal([
        ["launch", 1, [1]],
        ["race", null, [1, 2]],
      ]);
      await articles.createQueryBuilder().relation(Article, "topics").of(2).remove(1);
      expect((await warm(app, ids))[1][2]).to.deep.equal([2]);
      await articles.update({ title: "race" }, { sponsor: { id: 2 } });
      expect((await ids())[1][1]).to.equal(2);
    });

    it("@RelationId tracks the junction table it is counted from", async () => {
      const ids = () =>
        app.cache.wrap("article-relation-id-column", async () =>
          (await articles.find({ order: { id: "ASC" } })).map((a) => [...a.topicIds].sort()),
        );
      expect(await warm(app, ids)).to.deep.equal([[1], [1, 2]]);
      await articles.createQueryBuilder().relation(Article, "topics").of(1).add(2);
      expect(await warm(app, ids)).to.deep.equal([
        [1, 2],
        [1, 2],
      ]);
      await app.dataSource.query(`DELETE FROM ${t("article_topics_topic")} WHERE "topicId" = 1`);
      expect(await ids()).to.deep.equal([[2], [2]]);
    });
  });

  describe("another PostgreSQL schema", () => {
    it("an entity with @Entity({ schema }) is tracked in its own schema, joins across schemas included", async () => {
      const maker = await makers.findOneByOrFail({ name: "Fiat" });
      await foreignWidgets.save({ name: "bolt", maker });
      const all = () =>
        app.cache.wrap("foreign-widgets", async () =>
          (await foreignWidgets.find({ relations: { maker: true }, order: { id: "ASC" } })).map(
            (w) => [w.name, w.maker?.name ?? null],
          ),
        );
      expect(await warm(app, all)).to.deep.equal([["bolt", "Fiat"]]);
      await foreignWidgets.save({ name: "nut" });
      expect(await warm(app, all)).to.deep.equal([
        ["bolt", "Fiat"],
        ["nut", null],
      ]);
      await renameMaker("Fiat", "Abarth");
      expect(await all()).to.deep.equal([
        ["bolt", "Abarth"],
        ["nut", null],
      ]);
    });

    it("schema-qualified raw SQL reads and writes meet on the same table", async () => {
      const raw = () =>
        app.cache.wrap("foreign-widgets-raw", () =>
          app.dataSource.query(`SELECT name FROM "${OTHER_SCHEMA}"."widget" ORDER BY id`),
        );
      await foreignWidgets.save({ name: "bolt" });
      expect(await warm(app, raw)).to.deep.equal([{ name: "bolt" }]);
      await foreignWidgets.update({ name: "bolt" }, { name: "screw" });
      expect(await warm(app, raw)).to.deep.equal([{ name: "screw" }]);
      await app.dataSource.query(`INSERT INTO "${OTHER_SCHEMA}".widget (name) VALUES ('nut')`);
      expect(await raw()).to.deep.equal([{ name: "screw" }, { name: "nut" }]);
    });

    it("two tables of the same name in two schemas are told apart", async () => {
      await widgets.save({ name: "local" });
      await foreignWidgets.save({ name: "remote" });
      const local = () =>
        app.cache.wrap("local-widgets", async () => (await widgets.find()).map((w) => w.name));
      const remote = () =>
        app.cache.wrap("remote-widgets", async () =>
          (await foreignWidgets.find()).map((w) => w.name),
        );
      await warm(app, local);
      await warm(app, remote);
      await foreignWidgets.update({ name: "remote" }, { name: "remote2" });
      expect(await remote()).to.deep.equal(["remote2"]);
      expect(
        await warm(app, local, 1),
        "a write to the other schema's table leaves this one's entry",
      ).to.deep.equal(["local"]);
      await warm(app, remote);
      await widgets.update({ name: "local" }, { name: "local2" });
      expect(await local()).to.deep.equal(["local2"]);
      expect(await warm(app, remote, 1)).to.deep.equal(["remote2"]);
    });
  });

  describe("views", () => {
    before(async () => {
      // Load the catalog first, so the views below are DDL the cache has to notice.
      await app.cache.wrap("catalog-loaded", () => makers.count());
      await app.dataSource.query(
        `CREATE VIEW ${t("maker_cars")} AS SELECT m.name, count(c.id)::int AS cars FROM ${t("maker")} m ` +
          `LEFT JOIN ${t("car")} c ON c."makerId" = m.id GROUP BY m.name`,
      );
      await app.dataSource.query(
        `CREATE VIEW ${t("busy_makers")} AS SELECT name FROM ${t("maker_cars")} WHERE cars > 1`,
      );
      await app.dataSource.query(
        `CREATE VIEW ${t("maker_names")} AS SELECT id, name FROM ${t("maker")}`,
      );
      await app.dataSource.query(
        `CREATE FUNCTION ${t("car_models")}() RETURNS SETOF text LANGUAGE sql STABLE AS $$ SELECT model FROM ${t("car")} ORDER BY id $$`,
      );
      await app.dataSource.query(
        `CREATE VIEW ${t("model_list")} AS SELECT m AS model FROM ${t("car_models")}() AS m`,
      );
      await app.dataSource.query(
        `CREATE MATERIALIZED VIEW ${t("model_snapshot")} AS SELECT model FROM ${t("car")} ORDER BY id`,
      );
    });

    it("a cached read of a view depends on the view's base tables", async () => {
      const counts = () =>
        app.cache.wrap("maker-cars", () =>
          app.dataSource.query(`SELECT name, cars FROM ${t("maker_cars")} ORDER BY name`),
        );
      expect(await warm(app, counts)).to.deep.equal([
        { name: "Fiat", cars: 1 },
        { name: "Volvo", cars: 1 },
      ]);
      await cars.insert({ model: "Uno", maker: { id: 2 } });
      expect(await warm(app, counts), "a base table written").to.deep.equal([
        { name: "Fiat", cars: 2 },
        { name: "Volvo", cars: 1 },
      ]);
      await renameMaker("Volvo", "Polestar");
      expect(await counts(), "the other base table written").to.deep.equal([
        { name: "Fiat", cars: 2 },
        { name: "Polestar", cars: 1 },
      ]);
    });

    it("a view over a view depends on the base tables at the bottom", async () => {
      const busy = () =>
        app.cache.wrap("busy-makers", () =>
          app.dataSource.query(`SELECT name FROM ${t("busy_makers")} ORDER BY name`),
        );
      expect(await warm(app, busy)).to.deep.equal([]);
      await cars.insert({ model: "Uno", maker: { id: 2 } });
      expect(await busy()).to.deep.equal([{ name: "Fiat" }]);
    });

    it("a @ViewEntity read through its repository depends on the view's base tables", async () => {
      const listings = () =>
        app.cache.wrap("car-listings", async () =>
          (await app.dataSource.getRepository(CarListing).find({ order: { model: "ASC" } })).map(
            (l) => [l.model, l.makerName],
          ),
        );
      expect(await warm(app, listings)).to.deep.equal([
        ["240", "Volvo"],
        ["Panda", "Fiat"],
        ["kit car", null],
      ]);
      await cars.update({ model: "kit car" }, { maker: { id: 1 } });
      expect(await warm(app, listings)).to.deep.equal([
        ["240", "Volvo"],
        ["Panda", "Fiat"],
        ["kit car", "Volvo"],
      ]);
      await renameMaker("Fiat", "Seat");
      expect(await listings()).to.deep.equal([
        ["240", "Volvo"],
        ["Panda", "Seat"],
        ["kit car", "Volvo"],
      ]);
    });

    it("a view created by another connection after the catalog was read is resolved when first seen", async () => {
      await queryBehindTheCache(
        `CREATE VIEW ${t("feature_names_view")} AS SELECT name FROM ${t("feature")}`,
      );
      const names = () =>
        app.cache.wrap("feature-names-view", () =>
          app.dataSource.query(`SELECT name FROM ${t("feature_names_view")} ORDER BY name`),
        );
      expect(await warm(app, names)).to.have.length(2);
      await features.insert({ name: "heater" });
      expect(await names()).to.have.length(3);
    });

    it("replacing a view's definition (CREATE OR REPLACE VIEW) refreshes cached reads of it", async () => {
      await app.dataSource.query(`CREATE VIEW ${t("things")} AS SELECT name FROM ${t("maker")}`);
      const things = () =>
        app.cache.wrap("things-view", () =>
          app.dataSource.query(`SELECT name FROM ${t("things")} ORDER BY name`),
        );
      expect(await warm(app, things)).to.deep.equal([{ name: "Fiat" }, { name: "Volvo" }]);
      await app.dataSource.query(
        `CREATE OR REPLACE VIEW ${t("things")} AS SELECT name FROM ${t("feature")}`,
      );
      expect(await things(), "the view now reads another table").to.deep.equal([
        { name: "radio" },
        { name: "roof" },
      ]);
      await features.insert({ name: "heater" });
      expect(await things(), "and depends on it").to.deep.equal([
        { name: "heater" },
        { name: "radio" },
        { name: "roof" },
      ]);
    });

    it("a write through an updatable view refreshes cached reads of its base table", async () => {
      const names = () =>
        app.cache.wrap("maker-names-by-find", async () =>
          (await makers.find({ order: { id: "ASC" } })).map((m) => m.name),
        );
      expect(await warm(app, names)).to.deep.equal(["Volvo", "Fiat"]);
      await app.dataSource.query(
        `UPDATE ${t("maker_names")} SET name = 'Alfa' WHERE name = 'Fiat'`,
      );
      expect(await names()).to.deep.equal(["Volvo", "Alfa"]);
    });

    it("a materialized view keeps its snapshot until REFRESH, which refreshes cached reads of it", async () => {
      await app.dataSource.query(`REFRESH MATERIALIZED VIEW ${t("model_snapshot")}`);
      const snapshot = () =>
        app.cache.wrap("model-snapshot", () =>
          app.dataSource.query(`SELECT model FROM ${t("model_snapshot")}`),
        );
      expect(await warm(app, snapshot)).to.have.length(3);
      await cars.insert({ model: "Uno" });
      expect(await snapshot(), "the snapshot itself has not changed").to.have.length(3);
      await app.dataSource.query(`REFRESH MATERIALIZED VIEW ${t("model_snapshot")}`);
      expect(await snapshot()).to.have.length(4);
    });

    it("a view that reads through a user-defined function is refreshed or refused, never silently stale", async () => {
      const models = () =>
        app.cache.wrap("model-list-view", () =>
          app.dataSource.query(`SELECT model FROM ${t("model_list")}`),
        );
      await models();
      await models();
      await cars.insert({ model: "Uno" });
      expect(await models(), `stale; warnings: ${JSON.stringify(warnings)}`).to.have.length(4);
    });
  });

  describe("functions", () => {
    before(async () => {
      await app.dataSource.query(
        `CREATE OR REPLACE FUNCTION ${t("feature_names")}() RETURNS SETOF text LANGUAGE sql STABLE AS $$ SELECT name FROM ${t("feature")} ORDER BY id $$`,
      );
      await app.dataSource.query(
        `CREATE OR REPLACE FUNCTION ${t("car_count")}() RETURNS int LANGUAGE sql STABLE AS $$ SELECT count(*)::int FROM ${t("car")} $$`,
      );
    });

    it("a set-returning user-defined function is refused with a warning, and the result stays fresh", async () => {
      const names = () =>
        app.cache.wrap("feature-names-fn", () =>
          app.dataSource.query(`SELECT * FROM ${t("feature_names")}() AS name`),
        );
      const hits = app.cache.stats().hits;
      expect(await names()).to.deep.equal([{ name: "radio" }, { name: "roof" }]);
      expect(await names()).to.deep.equal([{ name: "radio" }, { name: "roof" }]);
      expect(app.cache.stats().hits, "never served from the cache").to.equal(hits);
      const warning = warnings.find((w) => w.includes("wrap(feature-names-fn)"));
      expect(warning).to.include("feature_names").and.to.include("dependsOn");
      await features.insert({ name: "heater" });
      expect(await names()).to.have.length(3);
    });

    it("a scalar user-defined function in a QueryBuilder select is refused the same way", async () => {
      const count = () =>
        app.cache.wrap("car-count-fn", () =>
          makers
            .createQueryBuilder("m")
            .select(`${t("car_count")}()`, "cars")
            .limit(1)
            .getRawOne(),
        );
      await count();
      const hits = app.cache.stats().hits;
      expect(await count()).to.deep.equal({ cars: 3 });
      expect(app.cache.stats().hits).to.equal(hits);
      expect(
        warnings.some((w) => w.includes("wrap(car-count-fn)") && w.includes("car_count")),
      ).to.equal(true);
    });

    it("with dependsOn naming the tables it reads, the function's result is cached and refreshed by their writes", async () => {
      const names = () =>
        app.cache.wrap(
          "feature-names-fn-vouched",
          () => app.dataSource.query(`SELECT * FROM ${t("feature_names")}() AS name`),
          {
            dependsOn: [Feature],
          },
        );
      expect(await warm(app, names)).to.have.length(2);
      expect(warnings.filter((w) => w.includes("feature-names-fn-vouched"))).to.deep.equal([]);
      await features.insert({ name: "heater" });
      expect(await names()).to.have.length(3);
    });

    it("PostgreSQL's own set-returning functions (generate_series) are cached and tracked like any read", async () => {
      const series = () =>
        app.cache.wrap("generate-series", () =>
          app.dataSource.query(
            `SELECT g FROM generate_series(1, (SELECT count(*)::int FROM ${t("car")})) AS g`,
          ),
        );
      expect(await warm(app, series)).to.have.length(3);
      await cars.insert({ model: "Uno" });
      expect(await series()).to.have.length(4);
    });
  });

  describe("nested transactions (savepoints)", () => {
    const makerNames = () =>
      app.cache.wrap("tx-makers", async () =>
        (await makers.find({ order: { id: "ASC" } })).map((m) => m.name),
      );
    const featureNames = () =>
      app.cache.wrap("tx-features", async () =>
        (await features.find({ order: { id: "ASC" } })).map((f) => f.name),
      );
    const topicNames = () =>
      app.cache.wrap("tx-topics", async () =>
        (await topics.find({ order: { id: "ASC" } })).map((x) => x.name),
      );
    const warmAll = async () => {
      await warm(app, makerNames);
      await warm(app, featureNames);
      await warm(app, topicNames);
    };

    it("nested manager.transaction(): a released savepoint flushes nothing; a rolled-back one drops only its own writes", async () => {
      await warmAll();
      const invalidations = app.cache.stats().invalidations;
      await app.dataSource.transaction(async (outer) => {
        await outer.update(Maker, { name: "Volvo" }, { name: "Volvo Cars" });
        await outer.transaction(async (released) => {
          await released.insert(Feature, { name: "heater" });
        });
        await outer
          .transaction(async (rolledBack) => {
            await rolledBack.insert(Topic, { name: "weather" });
            throw new Error("roll back to the savepoint");
          })
          .catch(() => undefined);
        expect(
          app.cache.stats().invalidations,
          "nothing is delivered before the outermost commit",
        ).to.equal(invalidations);
        expect(await warm(app, makerNames, 1)).to.deep.equal(["Volvo", "Fiat"]);
        expect(await warm(app, featureNames, 1)).to.deep.equal(["radio", "roof"]);
      });
      expect(await makerNames()).to.deep.equal(["Volvo Cars", "Fiat"]);
      expect(
        await featureNames(),
        "the released savepoint's write took effect at commit",
      ).to.deep.equal(["radio", "roof", "heater"]);
      expect(
        await warm(app, topicNames, 1),
        "the rolled-back savepoint's invalidation was dropped",
      ).to.deep.equal(["news", "sport"]);
    });

    it("hand-written SAVEPOINT / RELEASE / ROLLBACK TO on a query runner behave the same", async () => {
      await warmAll();
      const runner = app.dataSource.createQueryRunner();
      const invalidations = app.cache.stats().invalidations;
      try {
        await runner.query("BEGIN");
        await runner.query("SAVEPOINT kept");
        await runner.query(`UPDATE ${t("maker")} SET name = 'Iveco' WHERE name = 'Fiat'`);
        await runner.query("RELEASE SAVEPOINT kept");
        await runner.query("SAVEPOINT dropped");
        await runner.query(`INSERT INTO ${t("topic")} (name) VALUES ('weather')`);
        await runner.query("ROLLBACK TO SAVEPOINT dropped");
        await runner.query(`INSERT INTO ${t("feature")} (name) VALUES ('heater')`);
        expect(app.cache.stats().invalidations).to.equal(invalidations);
        expect(await warm(app, makerNames, 1)).to.deep.equal(["Volvo", "Fiat"]);
        await runner.query("COMMIT");
      } finally {
        await runner.release();
      }
      expect(await makerNames()).to.deep.equal(["Volvo", "Iveco"]);
      expect(
        await featureNames(),
        "written after ROLLBACK TO, in the savepoint that survives it",
      ).to.deep.equal(["radio", "roof", "heater"]);
      expect(await warm(app, topicNames, 1)).to.deep.equal(["news", "sport"]);
    });

    it("a rollback to an outer savepoint drops the inner savepoints' writes too, released or not", async () => {
      await warmAll();
      const runner = app.dataSource.createQueryRunner();
      try {
        await runner.query("BEGIN");
        await runner.query(`UPDATE ${t("maker")} SET name = 'Iveco' WHERE name = 'Fiat'`);
        await runner.query("SAVEPOINT outer_sp");
        await runner.query(`INSERT INTO ${t("topic")} (name) VALUES ('weather')`);
        await runner.query("SAVEPOINT inner_sp");
        await runner.query(`INSERT INTO ${t("feature")} (name) VALUES ('heater')`);
        await runner.query("RELEASE SAVEPOINT inner_sp");
        await runner.query("ROLLBACK TO SAVEPOINT outer_sp");
        await runner.query("COMMIT");
      } finally {
        await runner.release();
      }
      expect(await makerNames()).to.deep.equal(["Volvo", "Iveco"]);
      expect(await warm(app, topicNames, 1)).to.deep.equal(["news", "sport"]);
      expect(await warm(app, featureNames, 1)).to.deep.equal(["radio", "roof"]);
    });
  });

  describe("lazy relations on a cached entity", () => {
    beforeEach(async () => {
      const gadget = gadgets.create({ name: "key" });
      gadget.maker = Promise.resolve(await makers.findOneByOrFail({ name: "Volvo" }));
      await gadgets.save(gadget);
    });

    it("a lazy relation left unloaded is loaded from the database when read, like on a fresh entity", async () => {
      const all = () => app.cache.wrap("gadgets", () => gadgets.find({ order: { id: "ASC" } }));
      const [cached] = await warm(app, all);
      expect(cached).to.be.instanceOf(Gadget);
      const [fresh] = await gadgets.find();
      expect(Object.keys(cached).sort(), "the same fields as a fresh entity").to.deep.equal(
        Object.keys(fresh).sort(),
      );
      const selects = selectCount(app.dataSource);
      expect((await cached.maker)?.name).to.equal("Volvo");
      expect(selectCount(app.dataSource), "the lazy load ran a query").to.equal(selects + 1);
      await renameMaker("Volvo", "Scania");
      const [again] = await warm(app, all, 1);
      expect(
        (await again.maker)?.name,
        "it reads the current row, since it is not part of the entry",
      ).to.equal("Scania");
    });

    it("a lazy relation loaded inside the cached call is stored with the entity and tracked", async () => {
      const loaded = () =>
        app.cache.wrap("gadgets-with-maker", async () => {
          const rows = await gadgets.find({ order: { id: "ASC" } });
          for (const gadget of rows) await gadget.maker;
          return rows;
        });
      const [cached] = await warm(app, loaded);
      const selects = selectCount(app.dataSource);
      expect((await cached.maker)?.name).to.equal("Volvo");
      expect(selectCount(app.dataSource), "the loaded relation came with the entry").to.equal(
        selects,
      );
      await renameMaker("Volvo", "Scania");
      const [after] = await loaded();
      expect((await after.maker)?.name).to.equal("Scania");
    });

    it("a lazy load still pending when the cached call returns makes the result uncached, with a warning", async () => {
      const pending = () =>
        app.cache.wrap("gadgets-pending", async () => {
          const rows = await gadgets.find({ order: { id: "ASC" } });
          void rows[0].maker;
          return rows;
        });
      const hits = app.cache.stats().hits;
      const [first] = await pending();
      await pending();
      expect(app.cache.stats().hits, "never served from the cache").to.equal(hits);
      expect(
        warnings.some((w) => w.includes("wrap(gadgets-pending)") && w.includes("not cached")),
      ).to.equal(true);
      expect((await first.maker)?.name).to.equal("Volvo");
    });
  });
});
