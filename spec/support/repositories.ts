import { type DataSource, Repository } from "typeorm";
import { Cached } from "../../lib";
import { Author, Comment, Post, Tag } from "./entities";
import type { Gate } from "./wait";

export class PostRepository extends Repository<Post> {
  @Cached(60)
  findPublished(): Promise<Post[]> {
    return this.find({
      where: { published: true },
      relations: { author: true },
      order: { id: "ASC" },
    });
  }

  @Cached(60)
  findAll(): Promise<Post[]> {
    return this.find({ order: { id: "ASC" } });
  }

  @Cached(60)
  byId(id: number): Promise<Post | null> {
    return this.findOne({ where: { id }, relations: { author: true, tags: true } });
  }

  @Cached(60)
  byTitle(filter: { title: string }): Promise<Post[]> {
    return this.find({ where: { title: filter.title }, order: { id: "ASC" } });
  }

  @Cached(60)
  withTags(): Promise<Post[]> {
    return this.find({ relations: { tags: true }, order: { id: "ASC", tags: { id: "ASC" } } });
  }

  @Cached(60)
  page(take: number): Promise<[Post[], number]> {
    return this.findAndCount({ take, order: { id: "ASC" } });
  }

  @Cached(60)
  total(): Promise<number> {
    return this.count();
  }

  @Cached(60)
  commentCounts(): Promise<{ postId: number; comments: string }[]> {
    return this.createQueryBuilder("post")
      .leftJoin("post.comments", "comment")
      .select("post.id", "postId")
      .addSelect("COUNT(comment.id)", "comments")
      .groupBy("post.id")
      .orderBy("post.id")
      .getRawMany();
  }

  /** Where held() stops between its query and its return; none lets it through at once. */
  gate?: Gate;

  /** Reads, then waits at the gate, so a spec can commit a write between its query and its store. */
  @Cached(60)
  async held(title: string): Promise<Post[]> {
    const rows = await this.find({ where: { title } });
    await this.gate?.pass();
    return rows;
  }
}

export function repositories(dataSource: DataSource) {
  return {
    posts: new PostRepository(Post, dataSource.manager),
    authors: dataSource.getRepository(Author),
    tags: dataSource.getRepository(Tag),
    comments: dataSource.getRepository(Comment),
  };
}
