import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import express from "express";
import fastify from "fastify";
import { cacheResponseHooks, cacheResponses } from "../lib/http";
import { FRONT_PAGE } from "./blog";
import type { Bench } from "./setup";

const ROUNDS = Number(process.env.PAGE_ROUNDS ?? 20);
const PER_BATCH = 50;

interface Site {
  readonly name: string;
  readonly url: string;
  close(): Promise<void>;
}

/**
 * The front page over HTTP (the 20 newest posts with their authors, as JSON), served by the same
 * handler uncached and behind the response cache, on Express and on Fastify. Requests go one at
 * a time over a kept-alive connection; batches of each (and of an empty route, the floor) take
 * turns, in rounds. Returns the
 * lines to print: medians in µs per request, and how many times faster the cached page is.
 */
export async function benchPages(bench: Bench): Promise<string[]> {
  const posts = bench.repos.cachedPosts;
  const frontPage = async () => posts.find(FRONT_PAGE);
  const sites = [await expressSite(bench, frontPage), await fastifySite(bench, frontPage)];
  const lines = [
    "Whole pages over HTTP (front page as JSON, one request at a time; median µs per request):",
  ];
  try {
    for (const site of sites) {
      const uncached: number[] = [];
      const cached: number[] = [];
      const empty: number[] = [];
      await batch(`${site.url}/cached`, 5);
      for (let round = 0; round < ROUNDS + 2; round++) {
        const paths = [
          ["uncached", uncached],
          ["cached", cached],
          ["empty", empty],
        ] as const;
        const order = [...paths.slice(round % 3), ...paths.slice(0, round % 3)];
        for (const [path, figures] of order) {
          const times = await batch(`${site.url}/${path}`, PER_BATCH);
          if (round >= 2) figures.push(...times);
        }
      }
      const [u, c, e] = [median(uncached), median(cached), median(empty)];
      lines.push(
        `  ${site.name.padEnd(8)} uncached handler ${u.toFixed(0).padStart(6)} µs | cached page (hit) ${c.toFixed(0).padStart(5)} µs, ${(u / c).toFixed(1)}x faster | ` +
          `floor, a route answering {} ${e.toFixed(0).padStart(5)} µs`,
      );
    }
  } finally {
    for (const site of sites) await site.close();
  }
  return lines;
}

async function batch(url: string, count: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const response = await fetch(url);
    await response.arrayBuffer();
    times.push((performance.now() - started) * 1000);
    if (response.status !== 200) throw new Error(`GET ${url}: ${response.status}`);
  }
  return times;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function expressSite(bench: Bench, frontPage: () => Promise<unknown>): Promise<Site> {
  const app = express();
  app.get("/empty", (_req, res) => void res.json({}));
  app.get("/uncached", async (_req, res) => void res.json(await frontPage()));
  app.get(
    "/cached",
    cacheResponses(bench.cache, { ttl: 600 }),
    async (_req, res) => void res.json(await frontPage()),
  );
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  return {
    name: "Express",
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function fastifySite(bench: Bench, frontPage: () => Promise<unknown>): Promise<Site> {
  const app = fastify();
  app.get("/empty", async () => ({}));
  app.get("/uncached", () => frontPage());
  app.get("/cached", cacheResponseHooks(bench.cache, { ttl: 600 }), () => frontPage());
  return {
    name: "Fastify",
    url: await app.listen({ port: 0, host: "127.0.0.1" }),
    close: () => app.close(),
  };
}
