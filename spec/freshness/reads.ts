import { In, Repository } from "typeorm";
import { Cached } from "../../lib";
import { sleep } from "../support/wait";
import { Account, Item, Label, TABLES } from "./entities";
import type { Observation, RowState } from "./history";
import type { Random } from "./random";
import type { Profile } from "./workload";

interface ItemInGroup {
  item_id: number;
  item_seq: number;
  account_id: number;
  account_seq: number;
}

/** The cached reads of the workload: by id, filtered lists, counts, joins, many-to-many, raw SQL. */
export class AccountReads extends Repository<Account> {
  @Cached(60)
  byId(id: number): Promise<Account | null> {
    return this.findOne({ where: { id } });
  }

  @Cached(60)
  inGroup(grp: number): Promise<Account[]> {
    return this.find({ where: { grp }, order: { id: "ASC" } });
  }

  @Cached(60)
  countInGroup(grp: number): Promise<number> {
    return this.count({ where: { grp } });
  }

  @Cached(60)
  pageInGroup(grp: number): Promise<[Account[], number]> {
    return this.findAndCount({ where: { grp }, order: { id: "ASC" }, take: 1000 });
  }

  @Cached(60)
  withItems(id: number): Promise<Account | null> {
    return this.findOne({ where: { id }, relations: { items: true } });
  }

  @Cached(60)
  withLabels(id: number): Promise<Account | null> {
    return this.findOne({ where: { id }, relations: { labels: true } });
  }

  @Cached(60)
  itemsInGroup(grp: number): Promise<ItemInGroup[]> {
    return this.manager
      .createQueryBuilder(Item, "item")
      .innerJoin("item.account", "account")
      .select("item.id", "item_id")
      .addSelect("item.rowSeq", "item_seq")
      .addSelect("account.id", "account_id")
      .addSelect("account.rowSeq", "account_seq")
      .where("account.grp = :grp", { grp })
      .orderBy("item.id")
      .getRawMany();
  }

  @Cached(60)
  itemCount(): Promise<number> {
    return this.manager.count(Item);
  }

  @Cached(60)
  labels(): Promise<Label[]> {
    return this.manager.find(Label, { order: { id: "ASC" } });
  }

  @Cached(60)
  rawGroup(grp: number): Promise<{ id: number; row_seq: number }[]> {
    return this.query(
      `SELECT id, row_seq FROM "${this.metadata.schema}"."${TABLES.account}" WHERE grp = $1 AND deleted_at IS NULL ORDER BY id`,
      [grp],
    );
  }

  @Cached(60)
  byIds(ids: number[]): Promise<Account[]> {
    return this.find({ where: { id: In(ids) }, order: { id: "ASC" } });
  }

  @Cached(60)
  itemsOf(accountId: number): Promise<Item[]> {
    return this.manager.find(Item, { where: { accountId }, order: { id: "ASC" } });
  }

  /** A junction row by its composite key. */
  @Cached(60)
  linked(accountId: number, labelId: number): Promise<{ account_id: number; label_id: number }[]> {
    return this.query(
      `SELECT account_id, label_id FROM "${this.metadata.schema}"."${TABLES.accountLabel}" WHERE account_id = $1 AND label_id = $2`,
      [accountId, labelId],
    );
  }

  /** A reader slow between its query and its write to the cache: the window of the stale-set race. */
  @Cached(60)
  async slowGroup(grp: number, pauseMs: number): Promise<Account[]> {
    const rows = await this.find({ where: { grp }, order: { id: "ASC" } });
    await sleep(pauseMs);
    return rows;
  }
}

const live = (s: RowState) => s.deleted_at === null;
const ofId = (id: number) => (s: RowState) => s.id === id && live(s);
const ofGroup = (grp: number) => (s: RowState) => s.grp === grp && live(s);

const accountRows = (accounts: readonly Account[]) =>
  accounts.map((a) => ({ key: String(a.id), rowSeq: a.rowSeq }));

/** A read the workload can make: what to call, and what its result shows. */
export interface PlannedRead {
  readonly label: string;
  call(reads: AccountReads): Promise<unknown>;
  observe(result: unknown): Observation[];
}

function byIdObservation(id: number, found: Account | null): Observation {
  return {
    kind: "rows",
    table: TABLES.account,
    rows: found ? accountRows([found]) : [],
    filter: ofId(id),
    scope: [String(id)],
  };
}

/** Draws one cached read from the generator. */
export function planRead(rng: Random, profile: Profile): PlannedRead {
  const id = rng.int(1, profile.accounts);
  const grp = rng.int(0, profile.groups - 1);
  const kind = rng.weighted<string>([
    ["byId", 3],
    ["inGroup", 3],
    ["countInGroup", 2],
    ["pageInGroup", 1],
    ["withItems", 2],
    ["withLabels", 2],
    ["itemsInGroup", 1],
    ["itemCount", 1],
    ["labels", 1],
    ["rawGroup", 1],
    ["slowGroup", profile.slowReads],
    ["byIds", 2],
    ["itemsOf", 2],
    ["linked", 1],
  ]);
  const group = (rows: readonly { key: string; rowSeq: number }[]): Observation => ({
    kind: "rows",
    table: TABLES.account,
    rows,
    filter: ofGroup(grp),
  });
  switch (kind) {
    case "byId":
      return {
        label: `byId(${id})`,
        call: (r) => r.byId(id),
        observe: (a) => [byIdObservation(id, a as Account | null)],
      };
    case "inGroup":
      return {
        label: `inGroup(${grp})`,
        call: (r) => r.inGroup(grp),
        observe: (rows) => [group(accountRows(rows as Account[]))],
      };
    case "countInGroup":
      return {
        label: `countInGroup(${grp})`,
        call: (r) => r.countInGroup(grp),
        observe: (n) => [
          { kind: "count", table: TABLES.account, count: n as number, filter: ofGroup(grp) },
        ],
      };
    case "pageInGroup":
      return {
        label: `pageInGroup(${grp})`,
        call: (r) => r.pageInGroup(grp),
        observe: (result) => {
          const [rows, count] = result as [Account[], number];
          return [
            group(accountRows(rows)),
            { kind: "count", table: TABLES.account, count, filter: ofGroup(grp) },
          ];
        },
      };
    case "withItems":
      return {
        label: `withItems(${id})`,
        call: (r) => r.withItems(id),
        observe: (result) => {
          const found = result as Account | null;
          const out = [byIdObservation(id, found)];
          if (found) {
            out.push({
              kind: "rows",
              table: TABLES.item,
              rows: (found.items ?? []).map((i) => ({ key: String(i.id), rowSeq: i.rowSeq })),
              filter: (s) => s.account_id === id,
            });
          }
          return out;
        },
      };
    case "withLabels":
      return {
        label: `withLabels(${id})`,
        call: (r) => r.withLabels(id),
        observe: (result) => {
          const found = result as Account | null;
          const out = [byIdObservation(id, found)];
          if (found) {
            const labels = found.labels ?? [];
            out.push(
              {
                kind: "presence",
                table: TABLES.accountLabel,
                keys: labels.map((l) => `${id},${l.id}`),
                filter: (s) => s.account_id === id,
              },
              {
                kind: "rows",
                table: TABLES.label,
                rows: labels.map((l) => ({ key: String(l.id), rowSeq: l.rowSeq })),
              },
            );
          }
          return out;
        },
      };
    case "itemsInGroup":
      return {
        label: `itemsInGroup(${grp})`,
        call: (r) => r.itemsInGroup(grp),
        observe: (result) => {
          const rows = result as ItemInGroup[];
          return [
            {
              kind: "rows",
              table: TABLES.item,
              rows: rows.map((r) => ({ key: String(r.item_id), rowSeq: r.item_seq })),
            },
            {
              kind: "rows",
              table: TABLES.account,
              rows: rows.map((r) => ({ key: String(r.account_id), rowSeq: r.account_seq })),
            },
          ];
        },
      };
    case "itemCount":
      return {
        label: "itemCount()",
        call: (r) => r.itemCount(),
        observe: (n) => [
          { kind: "count", table: TABLES.item, count: n as number, filter: () => true },
        ],
      };
    case "labels":
      return {
        label: "labels()",
        call: (r) => r.labels(),
        observe: (rows) => [
          {
            kind: "rows",
            table: TABLES.label,
            rows: (rows as Label[]).map((l) => ({ key: String(l.id), rowSeq: l.rowSeq })),
            filter: () => true,
          },
        ],
      };
    case "byIds": {
      const ids = [...new Set([id, rng.int(1, profile.accounts), rng.int(1, profile.accounts)])];
      return {
        label: `byIds(${ids})`,
        call: (r) => r.byIds(ids),
        observe: (rows) => [
          {
            kind: "rows",
            table: TABLES.account,
            rows: accountRows(rows as Account[]),
            filter: (s) => ids.includes(s.id as number) && live(s),
            scope: ids.map(String),
          },
        ],
      };
    }
    case "itemsOf":
      return {
        label: `itemsOf(${id})`,
        call: (r) => r.itemsOf(id),
        observe: (rows) => [
          {
            kind: "rows",
            table: TABLES.item,
            rows: (rows as Item[]).map((i) => ({ key: String(i.id), rowSeq: i.rowSeq })),
            filter: (s) => s.account_id === id,
          },
        ],
      };
    case "linked": {
      const labelId = rng.int(1, profile.labels);
      return {
        label: `linked(${id}, ${labelId})`,
        call: (r) => r.linked(id, labelId),
        observe: (rows) => [
          {
            kind: "presence",
            table: TABLES.accountLabel,
            keys: (rows as { account_id: number; label_id: number }[]).map(
              (r) => `${r.account_id},${r.label_id}`,
            ),
            filter: (s) => s.account_id === id && s.label_id === labelId,
            scope: [`${id},${labelId}`],
          },
        ],
      };
    }
    case "rawGroup":
      return {
        label: `rawGroup(${grp})`,
        call: (r) => r.rawGroup(grp),
        observe: (rows) => [
          group(
            (rows as { id: number; row_seq: number }[]).map((r) => ({
              key: String(r.id),
              rowSeq: r.row_seq,
            })),
          ),
        ],
      };
    default:
      return {
        label: `slowGroup(${grp})`,
        call: (r) => r.slowGroup(grp, profile.slowMs),
        observe: (rows) => [group(accountRows(rows as Account[]))],
      };
  }
}
