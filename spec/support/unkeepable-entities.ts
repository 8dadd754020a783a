import { Column, Entity, PrimaryGeneratedColumn } from "typeorm";

/** An entity that keeps part of its state where only its constructor can put it. */
@Entity()
export class Wallet {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  owner!: string;

  readonly #opened = new Date(0);

  get opened(): Date {
    return this.#opened;
  }
}

/** A document whose jsonb body may nest deeper than a recursive encoder can follow. */
@Entity()
export class Doc {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column("jsonb")
  body!: unknown;
}

export const unkeepableEntities = [Wallet, Doc];
