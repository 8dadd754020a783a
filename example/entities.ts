import {
  Column,
  CreateDateColumn,
  Entity,
  ManyToOne,
  OneToMany,
  PrimaryGeneratedColumn,
} from "typeorm";

/** The blog's tables: authors write posts, readers comment on them. */

@Entity()
export class Author {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;

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

  @CreateDateColumn()
  createdAt!: Date;

  @ManyToOne(
    () => Author,
    (author) => author.posts,
    { nullable: false, onDelete: "CASCADE" },
  )
  author!: Author;

  @OneToMany(
    () => Comment,
    (comment) => comment.post,
  )
  comments?: Comment[];
}

@Entity()
export class Comment {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  body!: string;

  @ManyToOne(
    () => Post,
    (post) => post.comments,
    { nullable: false, onDelete: "CASCADE" },
  )
  post!: Post;
}

export const entities = [Author, Post, Comment];
