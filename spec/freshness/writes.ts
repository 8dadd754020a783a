import type { EntityManager, QueryRunner } from "typeorm";
import { Account, Item, Label, TABLES } from "./entities";
import type { WriteRecord } from "./history";
import type { Random } from "./random";
import type { FreshApp, Profile } from "./workload";

/** One write step, its parameters already drawn: it runs on whatever manager the mode gives it. */
type Run = (m: EntityManager, tag: string, schema: string) => Promise<unknown>;

interface Step {
  readonly name: string;
  /**
   * Whether it may run through the DataSource's own pooled connections, where the session
   * carries no label: it must then put the operation's tag on every row it writes.
   */
  readonly pool: boolean;
  readonly weight: number;
  plan(rng: Random, p: Profile): Run;
}

const table = (schema: string, name: string) => `"${schema}"."${name}"`;
const account = (rng: Random, p: Profile) => rng.int(1, p.accounts);
const group = (rng: Random, p: Profile) => rng.int(0, p.groups - 1);
const item = (rng: Random, p: Profile) => rng.int(1, p.items);
const label = (rng: Random, p: Profile) => rng.int(1, p.labels);

/** Every write path of invariant 4, on accounts, items, labels and their junction. */
const STEPS: readonly Step[] = [
  {
    name: "save",
    pool: true,
    weight: 3,
    plan: (rng, p) => {
      const values = { id: account(rng, p), grp: group(rng, p), balance: rng.int(0, 100) };
      return (m, tag) => m.save(m.create(Account, { ...values, tag }));
    },
  },
  {
    name: "save loaded",
    pool: true,
    weight: 3,
    plan: (rng, p) => {
      const id = account(rng, p);
      const grp = rng.chance(0.3) ? group(rng, p) : undefined;
      return async (m, tag) => {
        const found = await m.findOne(Account, { where: { id } });
        if (!found) return;
        found.balance += 1;
        if (grp !== undefined) found.grp = grp;
        found.tag = tag;
        await m.save(found);
      };
    },
  },
  {
    name: "insert",
    pool: true,
    weight: 3,
    plan: (rng, p) => {
      const values = { id: account(rng, p), grp: group(rng, p) };
      return (m, tag) => m.insert(Account, [{ ...values, tag }]);
    },
  },
  {
    name: "insert item",
    pool: true,
    weight: 2,
    plan: (rng, p) => {
      const values = { id: item(rng, p), accountId: account(rng, p), qty: rng.int(1, 9) };
      return (m, tag) => m.insert(Item, [{ ...values, tag }]);
    },
  },
  {
    name: "update",
    pool: true,
    weight: 4,
    plan: (rng, p) => {
      const id = account(rng, p);
      const balance = rng.int(0, 100);
      return (m, tag) => m.update(Account, { id }, { balance, tag });
    },
  },
  {
    name: "update group",
    pool: true,
    weight: 1,
    plan: (rng, p) => {
      const grp = group(rng, p);
      const balance = rng.int(0, 100);
      return (m, tag) => m.update(Account, { grp }, { balance, tag });
    },
  },
  {
    name: "move to group",
    pool: true,
    weight: 3,
    plan: (rng, p) => {
      const id = account(rng, p);
      const grp = group(rng, p);
      return (m, tag) => m.update(Account, { id }, { grp, tag });
    },
  },
  {
    name: "upsert",
    pool: true,
    weight: 3,
    plan: (rng, p) => {
      const values = { id: account(rng, p), grp: group(rng, p), balance: rng.int(0, 100) };
      return (m, tag) => m.upsert(Account, [{ ...values, tag }], ["id"]);
    },
  },
  {
    name: "delete",
    pool: false,
    weight: 2,
    plan: (rng, p) => {
      const id = account(rng, p);
      return (m) => m.delete(Account, id);
    },
  },
  {
    name: "remove",
    pool: false,
    weight: 1,
    plan: (rng, p) => {
      const id = account(rng, p);
      return async (m) => {
        const found = await m.findOne(Account, { where: { id } });
        if (found) await m.remove(found);
      };
    },
  },
  {
    name: "softRemove",
    pool: false,
    weight: 2,
    plan: (rng, p) => {
      const id = account(rng, p);
      return async (m) => {
        const found = await m.findOne(Account, { where: { id } });
        if (found) await m.softRemove(found);
      };
    },
  },
  {
    name: "softDelete",
    pool: false,
    weight: 1,
    plan: (rng, p) => {
      const id = account(rng, p);
      return (m) => m.softDelete(Account, { id });
    },
  },
  {
    name: "restore",
    pool: false,
    weight: 3,
    plan: (rng, p) => {
      const id = account(rng, p);
      return (m) => m.restore(Account, { id });
    },
  },
  {
    name: "increment",
    pool: false,
    weight: 2,
    plan: (rng, p) => {
      const id = account(rng, p);
      return (m) => m.increment(Account, { id }, "balance", 3);
    },
  },
  {
    name: "decrement group",
    pool: false,
    weight: 1,
    plan: (rng, p) => {
      const grp = group(rng, p);
      return (m) => m.decrement(Account, { grp }, "balance", 1);
    },
  },
  {
    name: "querybuilder update",
    pool: true,
    weight: 2,
    plan: (rng, p) => {
      const id = account(rng, p);
      const listeners = rng.chance(0.5);
      return (m, tag) =>
        m
          .createQueryBuilder()
          .update(Account)
          .set({ balance: () => "balance + 1", tag })
          .where("id = :id", { id })
          .callListeners(listeners)
          .execute();
    },
  },
  {
    name: "querybuilder insert",
    pool: true,
    weight: 2,
    plan: (rng, p) => {
      const values = { id: account(rng, p), grp: group(rng, p) };
      const listeners = rng.chance(0.5);
      return (m, tag) =>
        m
          .createQueryBuilder()
          .insert()
          .into(Account)
          .values({ ...values, tag })
          .orIgnore()
          .callListeners(listeners)
          .execute();
    },
  },
  {
    name: "querybuilder delete item",
    pool: false,
    weight: 2,
    plan: (rng, p) => {
      const id = item(rng, p);
      const listeners = rng.chance(0.5);
      return (m) =>
        m
          .createQueryBuilder()
          .delete()
          .from(Item)
          .where("id = :id", { id })
          .callListeners(listeners)
          .execute();
    },
  },
  {
    name: "querybuilder softDelete",
    pool: false,
    weight: 1,
    plan: (rng, p) => {
      const id = account(rng, p);
      const listeners = rng.chance(0.5);
      return (m) =>
        m
          .createQueryBuilder(Account, "a")
          .softDelete()
          .where("id = :id", { id })
          .callListeners(listeners)
          .execute();
    },
  },
  {
    name: "raw update",
    pool: true,
    weight: 2,
    plan: (rng, p) => {
      const id = account(rng, p);
      return (m, tag, s) =>
        m.query(
          `UPDATE ${table(s, TABLES.account)} SET balance = balance + 1, tag = $2 WHERE id = $1`,
          [id, tag],
        );
    },
  },
  {
    // A range bounds no row by key: row precision must treat it as a write to the whole table.
    name: "raw update by range",
    pool: true,
    weight: 2,
    plan: (rng) => {
      const balance = rng.int(0, 100);
      return (m, tag, s) =>
        m.query(
          `UPDATE ${table(s, TABLES.account)} SET balance = balance + 1, tag = $2 WHERE balance <= $1`,
          [balance, tag],
        );
    },
  },
  {
    name: "raw insert ... select",
    pool: true,
    weight: 2,
    plan: (rng, p) => {
      const itemId = item(rng, p);
      const accountId = account(rng, p);
      return (m, tag, s) =>
        m.query(
          `INSERT INTO ${table(s, TABLES.item)} (id, account_id, qty, tag)
             SELECT $1, id, 1, $2 FROM ${table(s, TABLES.account)} WHERE id = $3 AND deleted_at IS NULL
           ON CONFLICT (id) DO UPDATE SET qty = ${TABLES.item}.qty + 1, tag = EXCLUDED.tag`,
          [itemId, tag, accountId],
        );
    },
  },
  {
    name: "raw update ... from",
    pool: true,
    weight: 1,
    plan: (rng, p) => {
      const grp = group(rng, p);
      return (m, tag, s) =>
        m.query(
          `UPDATE ${table(s, TABLES.item)} i SET qty = i.qty + 1, tag = $2 FROM ${table(s, TABLES.account)} a
            WHERE i.account_id = a.id AND a.grp = $1`,
          [grp, tag],
        );
    },
  },
  {
    name: "raw delete ... using",
    pool: false,
    weight: 1,
    plan: (rng, p) => {
      const id = account(rng, p);
      const qty = rng.int(1, 9);
      return (m, _tag, s) =>
        m.query(
          `DELETE FROM ${table(s, TABLES.item)} i USING ${table(s, TABLES.account)} a WHERE i.account_id = a.id AND a.id = $1 AND i.qty > $2`,
          [id, qty],
        );
    },
  },
  {
    name: "raw CTE update",
    pool: true,
    weight: 1,
    plan: (rng, p) => {
      const id = account(rng, p);
      const grp = group(rng, p);
      return (m, tag, s) =>
        m.query(
          `WITH moved AS (UPDATE ${table(s, TABLES.account)} SET grp = $1, tag = $3 WHERE id = $2 RETURNING id) SELECT count(*)::int AS n FROM moved`,
          [grp, id, tag],
        );
    },
  },
  {
    name: "raw two tables",
    pool: false,
    weight: 1,
    plan: (rng, p) => {
      const id = account(rng, p);
      return (m, _tag, s) =>
        m.query(
          `UPDATE ${table(s, TABLES.account)} SET balance = balance + 1 WHERE id = ${id}; UPDATE ${table(s, TABLES.item)} SET qty = qty + 1 WHERE account_id = ${id}`,
        );
    },
  },
  {
    name: "clear items",
    pool: false,
    weight: 0.4,
    plan: () => (m) => m.clear(Item),
  },
  {
    name: "truncate labels cascade",
    pool: false,
    weight: 0.4,
    plan: (rng, p) => {
      const names = Array.from({ length: p.labels }, () => `l${rng.int(0, 99)}`);
      return async (m, _tag, s) => {
        await m.query(`TRUNCATE ${table(s, TABLES.label)} CASCADE`);
        await m.insert(
          Label,
          names.map((name, i) => ({ id: i + 1, name })),
        );
      };
    },
  },
  {
    name: "link label",
    pool: false,
    weight: 2,
    plan: (rng, p) => {
      const id = account(rng, p);
      const labelId = label(rng, p);
      return (m) => m.createQueryBuilder().relation(Account, "labels").of(id).add(labelId);
    },
  },
  {
    name: "unlink label",
    pool: false,
    weight: 2,
    plan: (rng, p) => {
      const id = account(rng, p);
      const labelId = label(rng, p);
      return (m) => m.createQueryBuilder().relation(Account, "labels").of(id).remove(labelId);
    },
  },
  {
    name: "save labels",
    pool: false,
    weight: 1,
    plan: (rng, p) => {
      const id = account(rng, p);
      const labelIds = rng.subset(p.labels, 0.3);
      return async (m, tag) => {
        const found = await m.findOne(Account, { where: { id }, relations: { labels: true } });
        if (!found) return;
        found.labels = labelIds.map((l) => m.create(Label, { id: l }));
        found.tag = tag;
        await m.save(found);
      };
    },
  },
  {
    name: "rename label",
    pool: true,
    weight: 1,
    plan: (rng, p) => {
      const id = label(rng, p);
      const name = `l${rng.int(0, 99)}`;
      return (m, tag) => m.update(Label, { id }, { name, tag });
    },
  },
  {
    name: "update item",
    pool: true,
    weight: 2,
    plan: (rng, p) => {
      const id = item(rng, p);
      const changes = rng.chance(0.3) ? { accountId: account(rng, p) } : { qty: rng.int(1, 9) };
      return (m, tag) => m.update(Item, { id }, { ...changes, tag });
    },
  },
  {
    name: "save item",
    pool: true,
    weight: 1,
    plan: (rng, p) => {
      const values = { id: item(rng, p), accountId: account(rng, p), qty: rng.int(1, 9) };
      return (m, tag) => m.save(m.create(Item, { ...values, tag }));
    },
  },
  {
    name: "delete items of account",
    pool: false,
    weight: 1,
    plan: (rng, p) => {
      const accountId = account(rng, p);
      return (m) => m.delete(Item, { accountId });
    },
  },
];

const POOL_STEPS = STEPS.filter((s) => s.pool);

/** The name of every write path the workload runs. */
export const WRITE_PATHS: readonly string[] = STEPS.map((s) => s.name);

interface PlannedStep {
  readonly name: string;
  readonly run: Run;
}

function drawStep(rng: Random, p: Profile, from: readonly Step[] = STEPS): PlannedStep {
  const step = rng.weighted(from.map((s) => [s, s.weight] as const));
  return { name: step.name, run: step.plan(rng, p) };
}

function drawSteps(rng: Random, p: Profile, max: number): PlannedStep[] {
  return Array.from({ length: rng.int(1, max) }, () => drawStep(rng, p));
}

type Mode =
  | { kind: "autocommit"; step: PlannedStep }
  | { kind: "pool"; step: PlannedStep }
  | {
      kind: "transaction";
      steps: PlannedStep[];
      savepoint?: { steps: PlannedStep[]; rollback: boolean };
      readInside?: number;
      rollback: boolean;
    }
  | { kind: "dataSource.transaction"; steps: PlannedStep[]; rollback: boolean };

/** One write operation: which application instance, how it runs, and every parameter, drawn up front. */
export interface PlannedWrite {
  readonly app: number;
  readonly mode: Mode;
}

export function planWrite(rng: Random, p: Profile): PlannedWrite {
  const app = rng.int(0, 1);
  const kind = rng.weighted<Mode["kind"]>([
    ["autocommit", 5],
    ["pool", 2],
    ["transaction", 3],
    ["dataSource.transaction", 1],
  ]);
  switch (kind) {
    case "autocommit":
      return { app, mode: { kind, step: drawStep(rng, p) } };
    case "pool":
      return { app, mode: { kind, step: drawStep(rng, p, POOL_STEPS) } };
    case "transaction":
      return {
        app,
        mode: {
          kind,
          steps: drawSteps(rng, p, 3),
          savepoint: rng.chance(0.4)
            ? { steps: drawSteps(rng, p, 2), rollback: rng.chance(0.5) }
            : undefined,
          readInside: rng.chance(0.3) ? account(rng, p) : undefined,
          rollback: rng.chance(p.rollbacks),
        },
      };
    case "dataSource.transaction":
      return {
        app,
        mode: { kind, steps: drawSteps(rng, p, 3), rollback: rng.chance(p.rollbacks) },
      };
  }
}

class Rollback extends Error {}

/** Labels the session, so the triggers attribute what it writes to this operation. */
const labelSession = (runner: QueryRunner, id: string) =>
  runner.query(`SELECT set_config('fr.op', $1, false)`, [id]);

/** Runs a planned write and returns its record: the times the checker needs, and how it ended. */
export async function runWrite(
  planned: PlannedWrite,
  apps: readonly FreshApp[],
  id: string,
  now: () => number,
): Promise<WriteRecord> {
  const app = apps[planned.app];
  const { mode } = planned;
  const schema = app.schema;
  const names = (steps: readonly PlannedStep[]) => steps.map((s) => s.name).join(", ");
  // The paths whose writes can reach the log (not those of a savepoint rolled back on purpose).
  const steps = (
    mode.kind === "autocommit" || mode.kind === "pool"
      ? [mode.step]
      : mode.kind === "transaction" && mode.savepoint && !mode.savepoint.rollback
        ? [...mode.steps, ...mode.savepoint.steps]
        : mode.steps
  ).map((s) => s.name);
  const start = now();
  if (mode.kind === "pool") {
    const label = `pool[${mode.step.name}]`;
    try {
      await mode.step.run(app.dataSource.manager, id, schema);
      return { id, label, steps, start, commitFrom: start, end: now(), outcome: "committed" };
    } catch (error) {
      return {
        id,
        label,
        steps,
        start,
        commitFrom: start,
        end: now(),
        outcome: "failed",
        error: message(error),
      };
    }
  }
  if (mode.kind === "dataSource.transaction") {
    const label = `dataSource.transaction[${names(mode.steps)}]${mode.rollback ? " rolled back" : ""}`;
    let commitFrom = start;
    try {
      await app.dataSource.transaction(async (em) => {
        await em.query(`SELECT set_config('fr.op', $1, true)`, [id]);
        for (const step of mode.steps) await step.run(em, id, schema);
        if (mode.rollback) throw new Rollback();
        commitFrom = now();
      });
      return { id, label, steps, start, commitFrom, end: now(), outcome: "committed" };
    } catch (error) {
      const outcome = error instanceof Rollback ? "rolled back" : "failed";
      return {
        id,
        label,
        steps,
        start,
        commitFrom,
        end: now(),
        outcome,
        error: outcome === "failed" ? message(error) : undefined,
      };
    }
  }
  const runner = app.dataSource.createQueryRunner();
  let label = mode.kind === "autocommit" ? mode.step.name : `transaction[${names(mode.steps)}]`;
  let commitFrom = start;
  let outcome: WriteRecord["outcome"] = "committed";
  let error: string | undefined;
  try {
    await labelSession(runner, id);
    if (mode.kind === "autocommit") {
      await mode.step.run(runner.manager, id, schema);
    } else {
      await runner.startTransaction();
      for (const step of mode.steps) await step.run(runner.manager, id, schema);
      if (mode.savepoint) {
        await runner.startTransaction();
        for (const step of mode.savepoint.steps) await step.run(runner.manager, id, schema);
        if (mode.savepoint.rollback) await runner.rollbackTransaction();
        else await runner.commitTransaction();
        label += ` savepoint[${names(mode.savepoint.steps)}] ${mode.savepoint.rollback ? "rolled back" : "released"}`;
      }
      // Inside the transaction the cached read must run uncached and leave nothing behind.
      if (mode.readInside !== undefined)
        await runner.manager.withRepository(app.reads).byId(mode.readInside);
      if (mode.rollback) {
        await runner.rollbackTransaction();
        outcome = "rolled back";
        label += " rolled back";
      } else {
        commitFrom = now();
        await runner.commitTransaction();
      }
    }
  } catch (failure) {
    outcome = "failed";
    error = message(failure);
    for (let i = 0; i < 3 && runner.isTransactionActive; i++)
      await runner.rollbackTransaction().catch(() => undefined);
  }
  const end = now();
  try {
    await runner.query(`SELECT set_config('fr.op', '', false)`);
  } finally {
    await runner.release();
  }
  return { id, label, steps, start, commitFrom, end, outcome, error };
}

function message(error: unknown): string {
  return error instanceof Error ? error.message.split("\n")[0] : String(error);
}
