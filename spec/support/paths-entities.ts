import {
  Column,
  type DataSource,
  DeleteDateColumn,
  Entity,
  JoinColumn,
  JoinTable,
  ManyToMany,
  ManyToOne,
  OneToMany,
  PrimaryColumn,
  PrimaryGeneratedColumn,
  RelationId,
  ViewColumn,
  ViewEntity,
} from "typeorm";
import { uniqueNamespace } from "./fixture";

// Write paths: foreign-key rules, orphaned rows, and tables no foreign key points to.

@Entity()
export class Shelf {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;

  @OneToMany(
    () => Book,
    (book) => book.shelf,
    { cascade: true },
  )
  books?: Book[];

  @OneToMany(
    () => Sticker,
    (sticker) => sticker.shelf,
    { cascade: true },
  )
  stickers?: Sticker[];

  @OneToMany(
    () => Bookmark,
    (bookmark) => bookmark.shelf,
    { cascade: true },
  )
  bookmarks?: Bookmark[];
}

@Entity()
export class Book {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  title!: string;

  @ManyToOne(
    () => Shelf,
    (shelf) => shelf.books,
    { onDelete: "CASCADE", orphanedRowAction: "delete" },
  )
  shelf!: Shelf;
}

/** Two foreign keys away from Shelf: deleting a shelf reaches it through Book's cascade. */
@Entity()
export class Review {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  stars!: number;

  @ManyToOne(() => Book, { onDelete: "CASCADE" })
  book!: Book;
}

@Entity()
export class Sticker {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  label!: string;

  @ManyToOne(
    () => Shelf,
    (shelf) => shelf.stickers,
    { nullable: true, onDelete: "SET NULL", orphanedRowAction: "nullify" },
  )
  shelf!: Shelf | null;
}

@Entity()
export class Bookmark {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  page!: number;

  @DeleteDateColumn()
  deletedAt!: Date | null;

  @ManyToOne(
    () => Shelf,
    (shelf) => shelf.bookmarks,
    { onDelete: "CASCADE", orphanedRowAction: "soft-delete" },
  )
  shelf!: Shelf;
}

/** Referenced by a natural key that may change: ON UPDATE CASCADE rewrites City rows. */
@Entity()
export class Country {
  @PrimaryColumn()
  code!: string;

  @Column()
  name!: string;
}

@Entity()
export class City {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;

  @Column()
  countryCode!: string;

  @ManyToOne(() => Country, { onUpdate: "CASCADE", onDelete: "CASCADE" })
  @JoinColumn({ name: "countryCode" })
  country!: Country;
}

/** No foreign key points to it, so repository.clear() may TRUNCATE it without CASCADE. */
@Entity()
export class Setting {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;

  @Column()
  value!: string;
}

@Entity()
export class ArchivedBook {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  title!: string;
}

export const writePathEntities = [
  Shelf,
  Book,
  Review,
  Sticker,
  Bookmark,
  Country,
  City,
  Setting,
  ArchivedBook,
];

// Read paths: eager and lazy relations, relation ids, a view entity, another schema.

@Entity()
export class Maker {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;
}

@Entity()
export class Feature {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;
}

@Entity()
export class Car {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  model!: string;

  @ManyToOne(() => Maker, { eager: true, nullable: true })
  maker!: Maker | null;

  @ManyToMany(() => Feature, { eager: true })
  @JoinTable()
  features!: Feature[];
}

@Entity()
export class Topic {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;
}

@Entity()
export class Article {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  title!: string;

  @ManyToOne(() => Maker, { nullable: true })
  sponsor!: Maker | null;

  @ManyToMany(() => Topic)
  @JoinTable()
  topics?: Topic[];

  @RelationId((article: Article) => article.topics)
  topicIds!: number[];
}

@Entity()
export class Gadget {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;

  @ManyToOne(() => Maker, { lazy: true, nullable: true })
  maker!: Promise<Maker | null>;
}

@ViewEntity({
  expression: (dataSource: DataSource) =>
    dataSource
      .createQueryBuilder()
      .select("car.model", "model")
      .addSelect("maker.name", "makerName")
      .from(Car, "car")
      .leftJoin(Maker, "maker", "maker.id = car.makerId"),
})
export class CarListing {
  @ViewColumn()
  model!: string;

  @ViewColumn()
  makerName!: string | null;
}

/** A table named like one in the namespace's schema, but living in another schema. */
export const OTHER_SCHEMA = `${uniqueNamespace()}_other`;

@Entity({ name: "widget" })
export class Widget {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;
}

@Entity({ name: "widget", schema: OTHER_SCHEMA })
export class ForeignWidget {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  name!: string;

  @ManyToOne(() => Maker, { nullable: true })
  maker!: Maker | null;
}

export const readPathEntities = [
  Maker,
  Feature,
  Car,
  Topic,
  Article,
  Gadget,
  CarListing,
  Widget,
  ForeignWidget,
];
