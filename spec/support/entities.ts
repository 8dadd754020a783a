import {
  Column,
  CreateDateColumn,
  DeleteDateColumn,
  Entity,
  JoinTable,
  ManyToMany,
  ManyToOne,
  OneToMany,
  PrimaryGeneratedColumn,
} from "typeorm";

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
export class Tag {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ unique: true })
  name!: string;
}

@Entity()
export class Post {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  title!: string;

  @Column({ default: false })
  published!: boolean;

  @Column({ default: 0 })
  views!: number;

  @Column({ type: "bigint", default: "0" })
  likes!: string;

  @Column({ type: "numeric", precision: 10, scale: 2, nullable: true })
  rating!: string | null;

  @Column({ type: "bytea", nullable: true })
  cover!: Buffer | null;

  @Column({ type: "text", nullable: true })
  subtitle!: string | null;

  @CreateDateColumn()
  createdAt!: Date;

  @DeleteDateColumn()
  deletedAt!: Date | null;

  @ManyToOne(
    () => Author,
    (author) => author.posts,
    { nullable: true, onDelete: "SET NULL" },
  )
  author!: Author | null;

  @ManyToMany(() => Tag)
  @JoinTable()
  tags?: Tag[];

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
    { onDelete: "CASCADE" },
  )
  post!: Post;
}

export const entities = [Author, Tag, Post, Comment];
