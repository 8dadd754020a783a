import {
  Column,
  DeleteDateColumn,
  Entity,
  Index,
  JoinColumn,
  JoinTable,
  ManyToMany,
  ManyToOne,
  OneToMany,
  PrimaryColumn,
} from "typeorm";

// Ids are chosen by the workload from small fixed ranges, so writers collide on few rows and
// every choice comes from the seeded generator. `version` and `row_seq` are set by triggers
// (see schema.ts) on every write, whatever path it took; `tag` names the operation that wrote
// the row when the write went through a pooled connection the harness could not label.

@Entity("fr_account")
export class Account {
  @PrimaryColumn()
  id!: number;

  // Indexed, so reads by group are bounded by it (row precision) and moves between groups are checked.
  @Index()
  @Column()
  grp!: number;

  @Column({ default: 0 })
  balance!: number;

  @Column({ default: 0 })
  version!: number;

  @Column({ name: "row_seq", default: 0 })
  rowSeq!: number;

  @Column({ type: "text", nullable: true })
  tag!: string | null;

  @DeleteDateColumn({ name: "deleted_at" })
  deletedAt!: Date | null;

  @OneToMany(
    () => Item,
    (item) => item.account,
  )
  items?: Item[];

  @ManyToMany(() => Label)
  @JoinTable({
    name: "fr_account_label",
    joinColumn: { name: "account_id" },
    inverseJoinColumn: { name: "label_id" },
  })
  labels?: Label[];
}

@Entity("fr_item")
export class Item {
  @PrimaryColumn()
  id!: number;

  @Column({ name: "account_id" })
  accountId!: number;

  @ManyToOne(
    () => Account,
    (account) => account.items,
    { onDelete: "CASCADE" },
  )
  @JoinColumn({ name: "account_id" })
  account?: Account;

  @Column({ default: 0 })
  qty!: number;

  @Column({ default: 0 })
  version!: number;

  @Column({ name: "row_seq", default: 0 })
  rowSeq!: number;

  @Column({ type: "text", nullable: true })
  tag!: string | null;
}

@Entity("fr_label")
export class Label {
  @PrimaryColumn()
  id!: number;

  @Column()
  name!: string;

  @Column({ default: 0 })
  version!: number;

  @Column({ name: "row_seq", default: 0 })
  rowSeq!: number;

  @Column({ type: "text", nullable: true })
  tag!: string | null;
}

export const freshnessEntities = [Account, Item, Label];

/** Tables as the checker names them (the names the triggers log). */
export const TABLES = {
  account: "fr_account",
  item: "fr_item",
  label: "fr_label",
  accountLabel: "fr_account_label",
} as const;
