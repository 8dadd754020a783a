import {
  Column,
  CreateDateColumn,
  Entity,
  type FindManyOptions,
  ManyToOne,
  OneToMany,
  PrimaryGeneratedColumn,
  Repository,
} from "typeorm";
import { Cached } from "../lib";

/** The benchmark's blog: authors write posts; the front page shows the 20 newest posts with their authors. */

@Entity()
export class Author {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;

  @Column({ type: "text" })
  bio!: string;

  @OneToMany(
    () => Post,
    (post) => post.author,
  )
  posts?: Post[];
}

@Entity()
export class Post {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  title!: string;

  @Column()
  slug!: string;

  @Column({ type: "text" })
  excerpt!: string;

  @Column({ default: 0 })
  views!: number;

  @CreateDateColumn()
  createdAt!: Date;

  @ManyToOne(
    () => Author,
    (author) => author.posts,
    { nullable: false },
  )
  author!: Author;
}

export const entities = [Author, Post];

/** The one query every contender answers. */
export const FRONT_PAGE: FindManyOptions<Post> = {
  relations: { author: true },
  order: { id: "DESC" },
  take: 20,
};

/** How many times a cached method body really ran (that is, went to the database). */
export const bodyRuns = { frontPage: 0 };

export class FrontPageRepository extends Repository<Post> {
  @Cached(600)
  frontPage(): Promise<Post[]> {
    bodyRuns.frontPage++;
    return this.find(FRONT_PAGE);
  }

  /** The same front page under a key of its own per `copy`, to fill a tier with many entries of the same size. */
  @Cached(600)
  frontPageCopy(_copy: number): Promise<Post[]> {
    return this.find(FRONT_PAGE);
  }
}

/** A new post, as a blog's editor publishes one. */
export function newPost(n: number, authorId: number): Partial<Post> {
  return {
    title: `Bench post ${n}`,
    slug: `bench-post-${n}`,
    excerpt: EXCERPT,
    author: { id: authorId } as Author,
  };
}

export const EXCERPT =
  "A look at what a cache buys a small blog, measured: the front page, its twenty newest posts and " +
  "their authors, read a thousand times a minute and written a few times an hour.";
