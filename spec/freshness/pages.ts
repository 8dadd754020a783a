import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import fastify from "fastify";
import type { DataSource } from "typeorm";
import type { QueryCache } from "../../lib";
import { type CacheResponseOptions, cacheResponseHooks, cacheResponses } from "../../lib/http";
import { Account, TABLES } from "./entities";
import type { Environment } from "./harness";
import type { Observation, RowState } from "./history";
import { Random } from "./random";
import type { Profile } from "./workload";
import { planWrite, runWrite } from "./writes";

/**
 * The page reader of the freshness checker: each application instance serves the workload's
 * reads as whole pages, cached by the response cache (Express on the first instance, Fastify on
 * the second), and the checker reads them over HTTP. The handlers use plain repositories: what
 * keeps a page fresh is the tracking of the page itself.
 */
export interface PageServer {
  readonly url: string;
  close(): Promise<void>;
}

type Row = { id: number; rowSeq: number };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rows = (accounts: readonly Account[]): Row[] =>
  accounts.map((a) => ({ id: a.id, rowSeq: a.rowSeq }));

/** The pages, by route; each returns the JSON body. */
function pages(dataSource: DataSource, slowMs: number) {
  const accounts = dataSource.getRepository(Account);
  return {
    "/group/:grp": async (p: Record<string, string>) => ({
      rows: rows(await accounts.find({ where: { grp: Number(p.grp) }, order: { id: "ASC" } })),
    }),
    "/account/:id": async (p: Record<string, string>) => {
      const found = await accounts.findOne({
        where: { id: Number(p.id) },
        relations: { items: true },
      });
      return {
        row: found && { id: found.id, rowSeq: found.rowSeq },
        items: (found?.items ?? []).map((i) => ({ id: i.id, rowSeq: i.rowSeq })),
      };
    },
    "/count/:grp": async (p: Record<string, string>) => ({
      count: await accounts.count({ where: { grp: Number(p.grp) } }),
    }),
    // Slow between its query and its response: the stale-set race, for pages.
    "/slow/:grp": async (p: Record<string, string>) => {
      const found = rows(
        await accounts.find({ where: { grp: Number(p.grp) }, order: { id: "ASC" } }),
      );
      await sleep(slowMs);
      return { rows: found };
    },
  };
}

export async function startPageServer(
  kind: "express" | "fastify",
  cache: QueryCache,
  slowMs: number,
): Promise<PageServer> {
  const routes = pages(cache.dataSource, slowMs);
  const options: CacheResponseOptions = { ttl: 60 };
  if (kind === "express") {
    const app = express();
    for (const [path, page] of Object.entries(routes)) {
      app.get(path, cacheResponses(cache, options), async (req, res, next) => {
        try {
          res.json(await page(req.params as Record<string, string>));
        } catch (error) {
          next(error);
        }
      });
    }
    const server = await new Promise<Server>((resolve) => {
      const s = app.listen(0, "127.0.0.1", () => resolve(s));
    });
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      close: () =>
        new Promise<void>((resolve, reject) =>
          server.close((error) => (error ? reject(error) : resolve())),
        ),
    };
  }
  const app = fastify();
  for (const [path, page] of Object.entries(routes)) {
    app.get(path, cacheResponseHooks(cache, options), (request) =>
      page(request.params as Record<string, string>),
    );
  }
  const url = await app.listen({ port: 0, host: "127.0.0.1" });
  return { url, close: () => app.close() };
}

const live = (s: RowState) => s.deleted_at === null;
const ofGroup = (grp: number) => (s: RowState) => s.grp === grp && live(s);
const keyed = (list: readonly Row[]) => list.map((r) => ({ key: String(r.id), rowSeq: r.rowSeq }));

interface PlannedPage {
  readonly path: string;
  // biome-ignore lint/suspicious/noExplicitAny: the page's parsed JSON, whose shape each planner knows
  observe(body: any): Observation[];
}

function planPage(rng: Random, profile: Profile): PlannedPage {
  const id = rng.int(1, profile.accounts);
  const grp = rng.int(0, profile.groups - 1);
  const group = (list: Row[]): Observation => ({
    kind: "rows",
    table: TABLES.account,
    rows: keyed(list),
    filter: ofGroup(grp),
  });
  const kind = rng.weighted<string>([
    ["group", 3],
    ["account", 3],
    ["count", 2],
    ["slow", profile.slowReads],
  ]);
  switch (kind) {
    case "group":
      return { path: `/group/${grp}`, observe: (body) => [group(body.rows)] };
    case "count":
      return {
        path: `/count/${grp}`,
        observe: (body) => [
          { kind: "count", table: TABLES.account, count: body.count, filter: ofGroup(grp) },
        ],
      };
    case "account":
      return {
        path: `/account/${id}`,
        observe: (body) => {
          const out: Observation[] = [
            {
              kind: "rows",
              table: TABLES.account,
              rows: body.row ? keyed([body.row]) : [],
              filter: (s) => s.id === id && live(s),
              scope: [String(id)],
            },
          ];
          if (body.row)
            out.push({
              kind: "rows",
              table: TABLES.item,
              rows: keyed(body.items),
              filter: (s) => s.account_id === id,
            });
          return out;
        },
      };
    default:
      return { path: `/slow/${grp}`, observe: (body) => [group(body.rows)] };
  }
}

/**
 * Concurrent page reads (GET over HTTP) and writes (every write path of the checker) on the
 * environment's instances, recorded for the history checker: a page is a read that starts when
 * its request is sent and ends when its body has arrived.
 */
export async function runPageWorkload(
  env: Environment,
  servers: readonly PageServer[],
  options: { ops: number; seed: number; workers: number; profile: Profile },
): Promise<{ hits: number; pages: number }> {
  const { recorder } = env;
  let next = 0;
  let pagesRead = 0;
  const worker = async () => {
    for (let index = next++; index < options.ops; index = next++) {
      const rng = Random.forOperation(options.seed, index);
      const id = String(index + 1);
      if (!rng.chance(options.profile.readShare)) {
        recorder.writes.push(
          await runWrite(planWrite(rng, options.profile), env.apps, id, () => recorder.now()),
        );
        continue;
      }
      const app = rng.int(0, servers.length - 1);
      const planned = planPage(rng, options.profile);
      const label = `app${app + 1} GET ${planned.path}`;
      const start = recorder.now();
      const response = await fetch(`${servers[app].url}${planned.path}`);
      const text = await response.text();
      const end = recorder.now();
      if (response.status !== 200) {
        recorder.readErrors.push(`${label}: ${response.status} ${text.slice(0, 200)}`);
        continue;
      }
      recorder.reads.push({
        id,
        label,
        start,
        end,
        observations: planned.observe(JSON.parse(text)),
      });
      pagesRead++;
    }
  };
  await Promise.all(Array.from({ length: options.workers }, worker));
  const hits = env.apps.reduce((n, a) => n + a.cache.stats().hits, 0);
  return { hits, pages: pagesRead };
}
