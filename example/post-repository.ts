import { type FindManyOptions, Repository } from "typeorm";
import { Cached } from "../lib";
import { Comment, Post } from "./entities";

/** One line of the "popular posts" list: most comments first, the newer post first among equals. */
export interface PopularPost {
  id: number;
  title: string;
  author: string;
  comments: number;
}

/** The post list query: every post with its author, oldest first. */
export const postListQuery: FindManyOptions<Post> = {
  relations: { author: true },
  order: { id: "ASC" },
};

/**
 * The blog's post queries. Each @Cached method keeps its body as plain TypeORM; the cache records
 * which tables the SQL it runs reads (post, author), and any later write to one of them, through
 * this DataSource, makes the cached result outdated.
 *
 * Create it with `new PostRepository(Post, dataSource.manager)`.
 */
export class PostRepository extends Repository<Post> {
  /** The post list, cached for 60 seconds or until post or author is written. */
  @Cached(60)
  list(): Promise<Post[]> {
    return this.find(postListQuery);
  }

  /**
   * The most commented posts, cached for 10 minutes or until post, author or comment is written.
   *
   * The ranking comes from comment_count(), a SQL function (see database.ts) that reads the
   * comment table inside PostgreSQL, where the cache cannot see it. dependsOn names that table,
   * so a new comment makes this entry outdated too. (Without dependsOn the cache would not store
   * the result at all, and would say why in a "warning" event.)
   */
  @Cached({ ttl: 600, dependsOn: [Comment] })
  async popular(limit: number): Promise<PopularPost[]> {
    const rows: { id: number; title: string; author: string; comments: number }[] =
      await this.createQueryBuilder("post")
        .innerJoin("post.author", "author")
        .select("post.id", "id")
        .addSelect("post.title", "title")
        .addSelect("author.name", "author")
        .addSelect(`"${this.metadata.schema}".comment_count(post.id)`, "comments")
        .orderBy("comments", "DESC")
        .addOrderBy("post.id", "DESC")
        .limit(limit)
        .getRawMany();
    return rows.map((row) => ({
      id: row.id,
      title: row.title,
      author: row.author,
      comments: Number(row.comments),
    }));
  }
}
