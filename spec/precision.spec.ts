import { expect } from "chai";
import { DataSource, In, Repository } from "typeorm";
import { Cached, RedisStore } from "../lib";
import type { FollowHandlers } from "../lib/stores/store";
import { countCommands } from "./support/command-counter";
import { Author, Comment, Post, Tag } from "./support/entities";
import {
  type App,
  dropNamespace,
  openApp,
  openRedis,
  selectCount,
  uniqueNamespace,
} from "./support/fixture";

class PostReads extends Repository<Post> {
  @Cached(60)
  byId(id: number): Promise<Post | null> {
    return this.findOneBy({ id });
  }

  @Cached(60)
  byIds(ids: number[]): Promise<Post[]> {
    return this.find({ where: { id: In(ids) }, order: { id: "ASC" } });
  }

  @Cached(60)
  byAuthor(authorId: number): Promise<Post[]> {
    return this.find({ where: { author: { id: authorId } }, order: { id: "ASC" } });
  }

  @Cached(60)
  byAuthorWithAuthor(authorId: number): Promise<Post[]> {
    return this.find({
      where: { author: { id: authorId } },
      relations: { author: true },
      order: { id: "ASC" },
    });
  }

  @Cached(60)
  async withAuthor(id: number): Promise<Post | null> {
    // findOne with a relation adds a DISTINCT subquery for its LIMIT: that reads the tables whole.
    return (await this.find({ where: { id }, relations: { author: true } }))[0] ?? null;
  }

  @Cached(60)
  withRelations(id: number): Promise<Post[]> {
    return this.find({
      where: { id },
      relations: { author: true, comments: true },
      relationLoadStrategy: "query",
    });
  }

  @Cached(60)
  withTagIds(id: number): Promise<Post[]> {
    return this.find({ where: { id }, loadRelationIds: true });
  }

  @Cached(60)
  tagged(postId: number, tagId: number): Promise<{ postId: number; tagId: number }[]> {
    return this.query(
      `SELECT "postId", "tagId" FROM "${this.metadata.schema}"."post_tags_tag" WHERE "postId" = $1 AND "tagId" = $2`,
      [postId, tagId],
    );
  }

  /** The ON condition of a LEFT JOIN does not bound its preserved side: every post is returned. */
  @Cached(60)
  preservedSide(id: number): Promise<{ id: number; name: string | null }[]> {
    const s = this.metadata.schema;
    return this.query(
      `SELECT p.id, a.name FROM "${s}"."post" p LEFT JOIN "${s}"."author" a ON a.id = p."authorId" AND p.id = $1 ORDER BY p.id`,
      [id],
    );
  }

  /** A table read in a subquery depends on all of its rows. */
  @Cached(60)
  inSubquery(id: number): Promise<{ id: number }[]> {
    const s = this.metadata.schema;
    return this.query(
      `SELECT id FROM "${s}"."author" WHERE id IN (SELECT "authorId" FROM "${s}"."post" WHERE id = $1)`,
      [id],
    );
  }

  @Cached(60)
  titled(title: string): Promise<Post[]> {
    return this.find({ where: { title }, order: { id: "ASC" } });
  }
}

/**
 * Row precision (invariant 9) against real PostgreSQL and Redis: a write keeps the cached results
 * of the rows it did not change (they run no SQL), and every result that could contain a row it
 * changed, by the row's values before or after the write, is refreshed.
 */
describe("precision: a write invalidates the results of the rows it changed, and only those", () => {
  const ns = uniqueNamespace();
  let app: App;
  let reads: PostReads;
  let ann: Author;
  let bob: Author;
  let posts: Post[];

  before(async () => {
    app = await openApp(ns, { fresh: true });
    reads = new PostReads(Post, app.dataSource.manager);
  });
  after(async () => {
    await dropNamespace(app.redis, ns);
    await app.close();
  });
  beforeEach(async () => {
    await app.dataSource.query(
      `TRUNCATE "${ns}"."post_tags_tag", "${ns}"."comment", "${ns}"."post", "${ns}"."author", "${ns}"."tag" RESTART IDENTITY CASCADE`,
    );
    [ann, bob] = await app.dataSource
      .getRepository(Author)
      .save([{ name: "Ann" }, { name: "Bob" }]);
    posts = await app.dataSource.getRepository(Post).save([
      { title: "a1", author: ann },
      { title: "a2", author: ann },
      { title: "b1", author: bob },
      { title: "b2", author: bob },
    ]);
  });

  /** Calls each read and returns how many of them ran SQL (each runs one query when it misses). */
  async function missed(...calls: (() => Promise<unknown>)[]): Promise<number> {
    let ran = 0;
    for (const call of calls) {
      const before = selectCount(app.dataSource);
      await call();
      if (selectCount(app.dataSource) > before) ran++;
    }
    return ran;
  }

  /** Reads until each call is served from the cache (a second call must be a hit). */
  async function warmAll(...calls: (() => Promise<unknown>)[]): Promise<void> {
    await missed(...calls);
    expect(await missed(...calls), "the second call of each read is a hit").to.equal(0);
  }

  const titles = (rows: Post[] | Post | null) =>
    (Array.isArray(rows) ? rows : rows ? [rows] : []).map((p) => p.title);
  const repo = () => app.dataSource.getRepository(Post);

  describe("reads by primary key", () => {
    it("findOneBy({ id }): update({ id }) refreshes that id and keeps the others", async () => {
      const [p1, p2] = posts;
      await warmAll(
        () => reads.byId(p1.id),
        () => reads.byId(p2.id),
      );
      await repo().update({ id: p2.id }, { title: "changed" });
      expect(await missed(() => reads.byId(p1.id)), "another id stays cached").to.equal(0);
      expect(titles(await reads.byId(p2.id))).to.deep.equal(["changed"]);
      expect(await missed(() => reads.byId(p2.id))).to.equal(0);
    });

    it("save() of a loaded entity, remove(), and an insert (raw SQL) that creates a cached missing id", async () => {
      const [p1, p2, p3] = posts;
      const absent = p3.id + 100;
      await warmAll(
        () => reads.byId(p1.id),
        () => reads.byId(p2.id),
        () => reads.byId(p3.id),
        () => reads.byId(absent),
      );
      const loaded = (await repo().findOneBy({ id: p1.id })) as Post;
      loaded.title = "saved";
      await repo().save(loaded);
      expect(titles(await reads.byId(p1.id))).to.deep.equal(["saved"]);
      await repo().remove((await repo().findOneBy({ id: p2.id })) as Post);
      expect(await reads.byId(p2.id)).to.equal(null);
      await app.dataSource.query(`INSERT INTO "${ns}"."post" (id, title) VALUES ($1, $2)`, [
        absent,
        "new",
      ]);
      expect(titles(await reads.byId(absent))).to.deep.equal(["new"]);
      expect(await missed(() => reads.byId(p3.id)), "an id no write touched").to.equal(0);
    });

    it("findBy({ id: In(ids) }): a write to one listed id refreshes that list only", async () => {
      const [p1, p2, p3, p4] = posts;
      await warmAll(
        () => reads.byIds([p1.id, p2.id]),
        () => reads.byIds([p3.id, p4.id]),
      );
      await repo().delete({ id: In([p2.id]) });
      expect(await missed(() => reads.byIds([p3.id, p4.id]))).to.equal(0);
      expect(titles(await reads.byIds([p1.id, p2.id]))).to.deep.equal(["a1"]);
    });

    it("updating the key itself refreshes reads of the old and the new id", async () => {
      const [p1, p2] = posts;
      const moved = p4Id() + 50;
      await warmAll(
        () => reads.byId(p1.id),
        () => reads.byId(moved),
        () => reads.byId(p2.id),
      );
      await app.dataSource.query(`UPDATE "${ns}"."post" SET id = $1 WHERE id = $2`, [moved, p1.id]);
      expect(await reads.byId(p1.id)).to.equal(null);
      expect(titles(await reads.byId(moved))).to.deep.equal(["a1"]);
      expect(await missed(() => reads.byId(p2.id))).to.equal(0);
    });
  });

  describe("reads by foreign key", () => {
    it("update({ id }, { title }) refreshes the author of that post, not the others (the result lists it)", async () => {
      await warmAll(
        () => reads.byAuthor(ann.id),
        () => reads.byAuthor(bob.id),
      );
      await repo().update({ id: posts[2].id }, { title: "b1'" });
      expect(await missed(() => reads.byAuthor(ann.id)), "Ann's posts stay cached").to.equal(0);
      expect(titles(await reads.byAuthor(bob.id))).to.deep.equal(["b1'", "b2"]);
    });

    it("moving a post to another author, by update(), save() and raw SQL, refreshes both authors", async () => {
      const carol = await app.dataSource.getRepository(Author).save({ name: "Carol" });
      const moves: [string, () => Promise<unknown>][] = [
        ["update()", () => repo().update({ id: posts[0].id }, { author: { id: bob.id } })],
        [
          "save()",
          async () => {
            const loaded = (await repo().findOne({
              where: { id: posts[0].id },
              relations: { author: true },
            })) as Post;
            loaded.author = ann;
            return repo().save(loaded);
          },
        ],
        [
          "raw SQL",
          () =>
            app.dataSource.query(`UPDATE "${ns}"."post" SET "authorId" = $1 WHERE id = $2`, [
              bob.id,
              posts[0].id,
            ]),
        ],
      ];
      let owner = ann;
      for (const [how, move] of moves) {
        await warmAll(
          () => reads.byAuthor(ann.id),
          () => reads.byAuthor(bob.id),
          () => reads.byAuthor(carol.id),
        );
        await move();
        owner = owner.id === ann.id ? bob : ann;
        const other = owner.id === ann.id ? bob : ann;
        expect(titles(await reads.byAuthor(owner.id)), `${how}: the new author`).to.include("a1");
        expect(titles(await reads.byAuthor(other.id)), `${how}: the old author`).not.to.include(
          "a1",
        );
        expect(
          await missed(() => reads.byAuthor(carol.id)),
          `${how}: an author no row moved to or from`,
        ).to.equal(0);
      }
    });

    it("insert and delete refresh the author they belong to; the joined author is read too", async () => {
      await warmAll(
        () => reads.byAuthorWithAuthor(ann.id),
        () => reads.byAuthorWithAuthor(bob.id),
      );
      await repo().insert({ title: "a3", author: { id: ann.id } });
      expect(await missed(() => reads.byAuthorWithAuthor(bob.id))).to.equal(0);
      expect(titles(await reads.byAuthorWithAuthor(ann.id))).to.deep.equal(["a1", "a2", "a3"]);
      await app.dataSource.getRepository(Author).update({ id: ann.id }, { name: "Anne" });
      expect((await reads.byAuthorWithAuthor(ann.id)).map((p) => p.author?.name)).to.deep.equal([
        "Anne",
        "Anne",
        "Anne",
      ]);
      await repo().delete({ id: posts[3].id });
      expect(titles(await reads.byAuthorWithAuthor(bob.id))).to.deep.equal(["b1"]);
    });

    it("soft delete and restore (the filter column of the read) refresh it", async () => {
      await warmAll(
        () => reads.byAuthor(ann.id),
        () => reads.byAuthor(bob.id),
      );
      await repo().softDelete({ id: posts[0].id });
      expect(titles(await reads.byAuthor(ann.id))).to.deep.equal(["a2"]);
      await warmAll(() => reads.byAuthor(ann.id));
      await repo().restore({ id: posts[0].id });
      expect(titles(await reads.byAuthor(ann.id))).to.deep.equal(["a1", "a2"]);
    });

    it("a write by foreign key (UPDATE ... WHERE authorId = $1) refreshes that author and reads by id", async () => {
      await warmAll(
        () => reads.byAuthor(ann.id),
        () => reads.byAuthor(bob.id),
        () => reads.byId(posts[0].id),
      );
      await app.dataSource.query(
        `UPDATE "${ns}"."post" SET title = title || '!' WHERE "authorId" = $1`,
        [ann.id],
      );
      expect(titles(await reads.byAuthor(ann.id))).to.deep.equal(["a1!", "a2!"]);
      expect(titles(await reads.byId(posts[0].id))).to.deep.equal(["a1!"]);
      expect(await missed(() => reads.byAuthor(bob.id))).to.equal(0);
    });
  });

  describe("relation loading and composite keys", () => {
    it("a post with its author depends on that author's row, whichever author the post names", async () => {
      const [a1, , b1] = posts;
      await warmAll(
        () => reads.withAuthor(a1.id),
        () => reads.withAuthor(b1.id),
      );
      await app.dataSource.getRepository(Author).update({ id: bob.id }, { name: "Robert" });
      expect(await missed(() => reads.withAuthor(a1.id)), "another author renamed").to.equal(0);
      expect((await reads.withAuthor(b1.id))?.author?.name).to.equal("Robert");
      await repo().update({ id: a1.id }, { author: { id: bob.id } });
      expect(
        (await reads.withAuthor(a1.id))?.author?.name,
        "the post now names another author",
      ).to.equal("Robert");
      await warmAll(() => reads.withAuthor(a1.id));
      await app.dataSource.getRepository(Author).update({ id: bob.id }, { name: "Bobby" });
      expect((await reads.withAuthor(a1.id))?.author?.name).to.equal("Bobby");
    });

    it('relationLoadStrategy "query" and loadRelationIds read bounded rows of each table', async () => {
      const [p1, p2] = posts;
      const tag = await app.dataSource.getRepository(Tag).save({ name: "t" });
      await app.dataSource.getRepository(Comment).save({ body: "c", post: p1 });
      await warmAll(
        () => reads.withRelations(p1.id),
        () => reads.withRelations(p2.id),
        () => reads.withTagIds(p1.id),
        () => reads.withTagIds(p2.id),
      );
      await app.dataSource.getRepository(Comment).save({ body: "d", post: p2 });
      expect(await missed(() => reads.withRelations(p1.id)), "a comment on another post").to.equal(
        0,
      );
      expect((await reads.withRelations(p2.id))[0].comments?.map((c) => c.body)).to.deep.equal([
        "d",
      ]);
      await app.dataSource.createQueryBuilder().relation(Post, "tags").of(p2.id).add(tag.id);
      expect(await missed(() => reads.withTagIds(p1.id)), "a tag on another post").to.equal(0);
      expect((await reads.withTagIds(p2.id))[0].tags).to.deep.equal([tag.id]);
    });

    it("a composite key read is refreshed by the junction rows it names, not by others", async () => {
      const [p1, p2] = posts;
      const [t1, t2] = await app.dataSource.getRepository(Tag).save([{ name: "x" }, { name: "y" }]);
      await warmAll(
        () => reads.tagged(p1.id, t1.id),
        () => reads.tagged(p2.id, t2.id),
      );
      await app.dataSource.createQueryBuilder().relation(Post, "tags").of(p1.id).add(t1.id);
      expect(await missed(() => reads.tagged(p2.id, t2.id))).to.equal(0);
      expect(await reads.tagged(p1.id, t1.id)).to.deep.equal([{ postId: p1.id, tagId: t1.id }]);
      await app.dataSource.createQueryBuilder().relation(Post, "tags").of(p1.id).remove(t1.id);
      expect(await reads.tagged(p1.id, t1.id)).to.deep.equal([]);
    });
  });

  describe("what stays table-wide", () => {
    it("a write whose rows are unknown refreshes every bounded read of the table", async () => {
      await warmAll(
        () => reads.byId(posts[0].id),
        () => reads.byAuthor(bob.id),
      );
      await app.dataSource.query(
        `UPDATE "${ns}"."post" SET views = views + 1 WHERE title LIKE $1`,
        ["b%"],
      );
      expect(
        await missed(
          () => reads.byId(posts[0].id),
          () => reads.byAuthor(bob.id),
        ),
      ).to.equal(2);
    });

    it("a LEFT JOIN's preserved side is not bounded by the ON clause, nor a table in a subquery", async () => {
      await warmAll(
        () => reads.preservedSide(posts[0].id),
        () => reads.inSubquery(posts[0].id),
      );
      await repo().update({ id: posts[3].id }, { title: "elsewhere" });
      expect(await missed(() => reads.preservedSide(posts[0].id)), "the preserved side").to.equal(
        1,
      );
      await repo().update({ id: posts[0].id }, { author: { id: bob.id } });
      expect(await reads.inSubquery(posts[0].id)).to.deep.equal([{ id: bob.id }]);
    });

    it("a read bounded by no key column depends on the whole table", async () => {
      await warmAll(() => reads.titled("a1"));
      await repo().update({ id: posts[3].id }, { views: 5 });
      expect(await missed(() => reads.titled("a1"))).to.equal(1);
    });

    it('precision: "table" refreshes every read of the table on any write', async () => {
      const other = await openApp(ns, { cache: { precision: "table", namespace: `${ns}-table` } });
      try {
        const tableReads = new PostReads(Post, other.dataSource.manager);
        const count = () => selectCount(other.dataSource);
        for (const id of [posts[0].id, posts[1].id]) await tableReads.byId(id);
        for (const id of [posts[0].id, posts[1].id]) await tableReads.byId(id);
        const before = count();
        await other.dataSource.getRepository(Post).update({ id: posts[1].id }, { title: "t" });
        await tableReads.byId(posts[0].id);
        expect(count() - before).to.equal(1);
      } finally {
        await dropNamespace(other.redis, `${ns}-table`);
        await other.close();
      }
    });
  });

  describe("row changes reported from outside the DataSource (a change feed)", () => {
    it("invalidateRows() refreshes the rows' old and new values, and keeps the others", async () => {
      const carol = await app.dataSource.getRepository(Author).save({ name: "Carol" });
      const [p1, p2] = posts;
      await warmAll(
        () => reads.byAuthor(ann.id),
        () => reads.byAuthor(bob.id),
        () => reads.byAuthor(carol.id),
        () => reads.byId(p2.id),
      );
      // Written by another process: the cache cannot see it, and still serves what it has.
      const outside = new DataSource({
        type: "postgres",
        url: (app.dataSource.options as { url: string }).url,
      });
      await outside.initialize();
      try {
        await outside.query(`UPDATE "${ns}"."post" SET "authorId" = $1 WHERE id = $2`, [
          bob.id,
          p1.id,
        ]);
      } finally {
        await outside.destroy();
      }
      expect(titles(await reads.byAuthor(ann.id)), "not reported yet").to.deep.equal(["a1", "a2"]);
      expect(
        await app.cache.invalidateRows([
          {
            table: `${ns}.post`,
            before: { id: p1.id, authorId: ann.id },
            after: { id: p1.id, authorId: bob.id },
          },
        ]),
      ).to.equal(true);
      expect(titles(await reads.byAuthor(ann.id))).to.deep.equal(["a2"]);
      expect(titles(await reads.byAuthor(bob.id))).to.deep.equal(["a1", "b1", "b2"]);
      expect(
        await missed(
          () => reads.byAuthor(carol.id),
          () => reads.byId(p2.id),
        ),
        "rows the change did not touch",
      ).to.equal(0);
    });
  });

  describe("the in-process tier", () => {
    /** A RedisStore that reports each invalidation its feed delivers to the tier. */
    class WatchedStore extends RedisStore {
      readonly delivered: string[][] = [];
      override follow(channel: string, handlers: FollowHandlers): { close(): Promise<void> } {
        return super.follow(channel, {
          invalidated: (keys) => {
            handlers.invalidated(keys);
            this.delivered.push(keys);
          },
          state: (live) => handlers.state(live),
        });
      }
    }

    it("drops the entries of the row another process wrote, and keeps the others", async () => {
      const local = { maxBytes: 1024 * 1024 };
      const redis = await openRedis();
      const store = new WatchedStore(redis);
      const one = await openApp(ns, { redis, cache: { store, local, namespace: `${ns}-local` } });
      const two = await openApp(ns, { cache: { local, namespace: `${ns}-local` } });
      try {
        const tierReads = new PostReads(Post, one.dataSource.manager);
        const commands = countCommands(one.redis);
        /** Reads until the tier serves it: no Redis command, no SQL. */
        const fromTier = async (read: () => Promise<unknown>) => {
          for (let i = 0; i < 200; i++) {
            const sent = commands();
            const selects = selectCount(one.dataSource);
            const value = await read();
            if (commands() === sent && selectCount(one.dataSource) === selects) return value;
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
          throw new Error("the tier never served the read");
        };
        const [p1, p2] = posts;
        await fromTier(() => tierReads.byId(p1.id));
        await fromTier(() => tierReads.byId(p2.id));
        await two.dataSource.getRepository(Post).update({ id: p2.id }, { title: "from two" });
        const arrived = () =>
          store.delivered.some((keys) => keys.some((k) => k.endsWith(`#id=${p2.id}`)));
        for (let i = 0; i < 500 && !arrived(); i++)
          await new Promise((resolve) => setTimeout(resolve, 10));
        expect(arrived(), "the feed carried the row version to this process").to.equal(true);
        const sent = commands();
        expect(
          titles((await tierReads.byId(p1.id)) as Post),
          "the other row, still from the tier",
        ).to.deep.equal(["a1"]);
        expect(commands(), "no Redis command for the row no one wrote").to.equal(sent);
        expect(titles((await tierReads.byId(p2.id)) as Post)).to.deep.equal(["from two"]);
      } finally {
        await dropNamespace(one.redis, `${ns}-local`);
        await two.close();
        await one.close();
      }
    });
  });

  describe("transactions", () => {
    it("a row write in a transaction refreshes its rows at COMMIT, and nothing on ROLLBACK", async () => {
      await warmAll(
        () => reads.byId(posts[0].id),
        () => reads.byId(posts[1].id),
      );
      await app.dataSource.transaction(async (manager) => {
        await manager.update(Post, { id: posts[0].id }, { title: "in tx" });
        expect(
          await missed(() => reads.byId(posts[0].id)),
          "not yet committed: the cache still serves",
        ).to.equal(0);
      });
      expect(titles(await reads.byId(posts[0].id))).to.deep.equal(["in tx"]);
      const runner = app.dataSource.createQueryRunner();
      await runner.startTransaction();
      await runner.manager.update(Post, { id: posts[1].id }, { title: "rolled back" });
      await runner.rollbackTransaction();
      await runner.release();
      expect(await missed(() => reads.byId(posts[1].id))).to.equal(0);
      expect(titles(await reads.byId(posts[1].id))).to.deep.equal(["a2"]);
    });
  });

  function p4Id(): number {
    return posts[3].id;
  }
});
