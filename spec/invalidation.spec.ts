import { expect } from "chai";
import { Author, Comment, Post, Tag } from "./support/entities";
import { type App, dropNamespace, openApp, selectCount, uniqueNamespace } from "./support/fixture";
import { PostRepository, repositories } from "./support/repositories";
import { warm } from "./support/warm";

describe("invalidation: every write path refreshes the cached reads that depend on it", () => {
  const ns = uniqueNamespace();
  let app: App;
  let posts: PostRepository;
  let repos: ReturnType<typeof repositories>;
  let author: Author;

  before(async () => {
    app = await openApp(ns, { fresh: true });
    repos = repositories(app.dataSource);
    posts = repos.posts;
  });
  after(async () => {
    await dropNamespace(app.redis, ns);
    await app.close();
  });
  beforeEach(async () => {
    await app.dataSource.query(
      `TRUNCATE "${ns}"."post_tags_tag", "${ns}"."comment", "${ns}"."post", "${ns}"."author", "${ns}"."tag" RESTART IDENTITY CASCADE`,
    );
    author = await repos.authors.save({ name: "Ann" });
    await posts.save([
      { title: "one", published: true, author },
      { title: "two", published: true, author },
    ]);
  });

  const titles = (rows: Post[]) => rows.map((p) => p.title);

  it("serves a hit without running SQL", async () => {
    const cached = await warm(app, () => posts.findPublished());
    expect(titles(cached)).to.deep.equal(["one", "two"]);
  });

  const paths: [string, () => Promise<unknown>, string[]][] = [
    [
      "save (insert)",
      () => posts.save({ title: "three", published: true }),
      ["one", "two", "three"],
    ],
    [
      "save (update)",
      async () => posts.save({ ...(await posts.findOneByOrFail({ title: "one" })), title: "uno" }),
      ["uno", "two"],
    ],
    ["insert", () => posts.insert({ title: "three", published: true }), ["one", "two", "three"]],
    ["update", () => posts.update({ title: "one" }, { title: "uno" }), ["uno", "two"]],
    ["delete", () => posts.delete({ title: "one" }), ["two"]],
    ["remove", async () => posts.remove(await posts.findOneByOrFail({ title: "one" })), ["two"]],
    [
      "softRemove",
      async () => posts.softRemove(await posts.findOneByOrFail({ title: "one" })),
      ["two"],
    ],
    ["softDelete", () => posts.softDelete({ title: "one" }), ["two"]],
    ["increment", () => posts.increment({ title: "one" }, "views", 1), ["one", "two"]],
    [
      "QueryBuilder update",
      () =>
        posts
          .createQueryBuilder()
          .update()
          .set({ title: "uno" })
          .where("title = :t", { t: "one" })
          .execute(),
      ["uno", "two"],
    ],
    [
      "QueryBuilder update without listeners",
      () =>
        posts
          .createQueryBuilder()
          .update()
          .set({ title: "uno" })
          .where("title = :t", { t: "one" })
          .callListeners(false)
          .execute(),
      ["uno", "two"],
    ],
    [
      "QueryBuilder insert",
      () =>
        posts.createQueryBuilder().insert().values({ title: "three", published: true }).execute(),
      ["one", "two", "three"],
    ],
    [
      "QueryBuilder delete",
      () => posts.createQueryBuilder().delete().where("title = :t", { t: "one" }).execute(),
      ["two"],
    ],
    [
      "raw SQL through dataSource.query",
      () =>
        app.dataSource.query(`UPDATE "${ns}"."post" SET title = $1 WHERE title = $2`, [
          "uno",
          "one",
        ]),
      ["uno", "two"],
    ],
    [
      "raw SQL through a query runner",
      async () => {
        const runner = app.dataSource.createQueryRunner();
        try {
          await runner.query(`DELETE FROM "${ns}"."post" WHERE title = 'one'`);
        } finally {
          await runner.release();
        }
      },
      ["two"],
    ],
    ["TRUNCATE ... CASCADE", () => app.dataSource.query(`TRUNCATE "${ns}"."post" CASCADE`), []],
  ];

  for (const [name, write, expected] of paths) {
    it(`${name} invalidates a cached find`, async () => {
      await warm(app, () => posts.findPublished());
      const selects = selectCount(app.dataSource);
      await write();
      const after = await posts.findPublished();
      expect(titles(after)).to.deep.equal(expected);
      expect(selectCount(app.dataSource), "the read after the write ran SQL").to.be.greaterThan(
        selects,
      );
      if (name === "increment") expect(after[0].views).to.equal(1);
    });
  }

  it("upsert (INSERT ... ON CONFLICT DO UPDATE) invalidates, on both its insert and its update", async () => {
    const tags = () => app.cache.wrap("tags", () => repos.tags.find({ order: { id: "ASC" } }));
    await repos.tags.save({ name: "news" });
    await warm(app, tags);
    await repos.tags.upsert([{ name: "news" }, { name: "tech" }], ["name"]);
    expect((await tags()).map((t) => t.name)).to.deep.equal(["news", "tech"]);
  });

  it("restore brings a soft-removed row back into cached reads", async () => {
    await posts.softDelete({ title: "one" });
    expect(titles(await warm(app, () => posts.findPublished()))).to.deep.equal(["two"]);
    await posts.restore({ title: "one" });
    expect(titles(await posts.findPublished())).to.deep.equal(["one", "two"]);
  });

  it("a write to a joined table invalidates (author renamed)", async () => {
    await warm(app, () => posts.findPublished());
    await repos.authors.update({ id: author.id }, { name: "Bea" });
    const after = await posts.findPublished();
    expect(after.map((p) => p.author?.name)).to.deep.equal(["Bea", "Bea"]);
  });

  it("a many-to-many link invalidates (tag added to a post, then removed)", async () => {
    const tag = await repos.tags.save({ name: "news" });
    await warm(app, () => posts.withTags());
    const post = await posts.findOneOrFail({ where: { title: "one" }, relations: { tags: true } });
    post.tags = [tag];
    await posts.save(post);
    let after = await posts.withTags();
    expect(after.find((p) => p.title === "one")?.tags?.map((t) => t.name)).to.deep.equal(["news"]);
    await warm(app, () => posts.withTags());
    await posts.createQueryBuilder().relation(Post, "tags").of(post.id).remove(tag.id);
    after = await posts.withTags();
    expect(after.find((p) => p.title === "one")?.tags).to.deep.equal([]);
  });

  it("a foreign-key cascade invalidates the referencing table (ON DELETE CASCADE and SET NULL)", async () => {
    const one = await posts.findOneByOrFail({ title: "one" });
    await repos.comments.save({ body: "hi", post: one });
    const counts = await warm(app, () => posts.commentCounts());
    expect(counts.map((c) => Number(c.comments))).to.deep.equal([1, 0]);
    const comments = app.dataSource.getRepository(Comment);
    const cachedComments = () => app.cache.wrap("all-comments", () => comments.find());
    expect(await warm(app, cachedComments)).to.have.length(1);
    await app.dataSource.query(`DELETE FROM "${ns}"."post" WHERE title = 'one'`);
    expect(await cachedComments(), "comments deleted by ON DELETE CASCADE").to.have.length(0);

    const withAuthors = () =>
      app.cache.wrap("posts-with-author-ids", () =>
        posts.find({ loadRelationIds: { relations: ["author"] } }),
      );
    expect((await warm(app, withAuthors)).map((p) => p.author)).to.deep.equal([author.id]);
    await app.dataSource.query(`DELETE FROM "${ns}"."author"`);
    expect(
      (await withAuthors()).map((p) => p.author),
      "author set to NULL by ON DELETE SET NULL",
    ).to.deep.equal([null]);
  });

  it("empty results depend on their tables like full ones", async () => {
    expect(await warm(app, () => posts.byTitle({ title: "later" }))).to.deep.equal([]);
    await posts.save({ title: "later" });
    expect(titles(await posts.byTitle({ title: "later" }))).to.deep.equal(["later"]);
  });

  it("several queries in one method are all tracked (findAndCount)", async () => {
    const [rows, count] = await warm(app, () => posts.page(1));
    expect([titles(rows), count]).to.deep.equal([["one"], 2]);
    await posts.insert({ title: "three" });
    const [, countAfter] = await posts.page(1);
    expect(countAfter).to.equal(3);
  });

  it("dependsOn adds tables the SQL does not read, and invalidate() drops by entity or table name", async () => {
    let runs = 0;
    const popular = () =>
      app.cache.wrap(
        "popular",
        async () => {
          runs++;
          return (await posts.count()) * 10;
        },
        { dependsOn: [Comment] },
      );
    const runsAfter = async (action: () => Promise<unknown>) => {
      await warm(app, popular);
      const before = runs;
      await action();
      await popular();
      return runs - before;
    };
    const one = await posts.findOneByOrFail({ title: "one" });
    expect(
      await runsAfter(() => repos.comments.save({ body: "x", post: one })),
      "a comment invalidated it",
    ).to.equal(1);
    expect(await runsAfter(() => app.cache.invalidate(Comment)), "invalidate(Comment)").to.equal(1);
    expect(
      await runsAfter(() => app.cache.invalidate(`${ns}.comment`)),
      "invalidate by table name",
    ).to.equal(1);
    expect(
      await runsAfter(() => repos.tags.save({ name: "unrelated" })),
      "a write elsewhere leaves it",
    ).to.equal(0);
  });

  it("a nested cached call passes its dependencies to the caller, even on a hit", async () => {
    await warm(app, () => posts.total());
    const outer = () => app.cache.wrap("outer", async () => ({ total: await posts.total() }));
    expect(await warm(app, outer)).to.deep.equal({ total: 2 });
    await posts.insert({ title: "three" });
    expect(await outer()).to.deep.equal({ total: 3 });
  });

  it("clear() empties this namespace only", async () => {
    await app.redis.set("unrelated-key", "kept");
    await warm(app, () => posts.findPublished());
    await app.cache.clear();
    const hits = app.cache.stats().hits;
    await posts.findPublished();
    expect(app.cache.stats().hits).to.equal(hits);
    expect(await app.redis.get("unrelated-key")).to.equal("kept");
    await app.redis.del("unrelated-key");
  });

  it("low-level get/set/delete: null is a value, undefined a miss", async () => {
    expect(await app.cache.get("nothing")).to.equal(undefined);
    await app.cache.set("null", null, { ttl: 30 });
    expect(await app.cache.get("null")).to.equal(null);
    await app.cache.set("tagged", { n: 1 }, { dependsOn: [Tag] });
    expect(await app.cache.get("tagged")).to.deep.equal({ n: 1 });
    await repos.tags.save({ name: "t" });
    expect(await app.cache.get("tagged")).to.equal(undefined);
    await app.cache.set("gone", 1);
    await app.cache.delete("gone");
    expect(await app.cache.get("gone")).to.equal(undefined);
  });
});
