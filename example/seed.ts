import type { DataSource } from "typeorm";
import { Author, Comment, Post } from "./entities";

/** The blog the example starts from: two authors, three posts and a few comments. */
export async function seedBlog(dataSource: DataSource): Promise<{ ada: Author; grace: Author }> {
  const authors = dataSource.getRepository(Author);
  const posts = dataSource.getRepository(Post);
  const comments = dataSource.getRepository(Comment);

  const [ada, grace] = await authors.save([{ name: "Ada" }, { name: "Grace" }]);
  const [hello, stale, indexes] = await posts.save([
    { title: "Hello, blog", author: ada },
    { title: "Why caches go stale", author: grace },
    { title: "Indexes in ten minutes", author: ada },
  ]);
  await comments.save([
    { body: "Welcome!", post: hello },
    { body: "So true.", post: stale },
    { body: "Been there.", post: stale },
    { body: "Great read.", post: stale },
    { body: "Bookmarked.", post: indexes },
  ]);
  return { ada, grace };
}
