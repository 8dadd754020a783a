import { randomUUID } from "node:crypto";
import { Column, Entity, PrimaryGeneratedColumn } from "typeorm";

const suffix = randomUUID().slice(0, 8);

/** Two schemas, each with a `note` table mapped by a class named Note. */
export const TWIN_SCHEMAS = [`twin_left_${suffix}`, `twin_right_${suffix}`] as const;

function noteIn(schema: string) {
  @Entity({ name: "note", schema })
  class Note {
    @PrimaryGeneratedColumn()
    id!: number;

    @Column()
    text!: string;
  }
  return Note;
}

export const LeftNote = noteIn(TWIN_SCHEMAS[0]);
export const RightNote = noteIn(TWIN_SCHEMAS[1]);

export const ownerEntities = [LeftNote, RightNote];
