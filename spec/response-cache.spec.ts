import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { expect } from "chai";
import express from "express";
import type Redis from "ioredis";
import { cacheResponses } from "../lib/http";
import { Post } from "./support/entities";
import {
  type App,
  openApp,
  openDataSource,
  openRedis,
  selectCount,
  uniqueNamespace,
} from "./support/fixture";
import { type HttpApp, type HttpAppKind, startHttpApp } from "./support/http-apps";

interface Answer {
  status: number;
  text: string;
  headers: Headers;
  /** SELECTs the app ran while answering. */
  selects: number;
}

async function get(
  app: HttpApp,
  path: string,
  headers: Record<string, string> = {},
  method = "GET",
): Promise<Answer> {
  const before = selectCount(app.dataSource);
  const response = await fetch(`${app.url}${path}`, { method, headers });
  const text = await response.text();
  return {
    status: response.status,
    text,
    headers: response.headers,
    selects: selectCount(app.dataSource) - before,
  };
}

async function post(app: HttpApp, title: string): Promise<void> {
  const response = await fetch(`${app.url}/posts`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ title }),
  });
  expect(response.status, await response.text()).to.equal(201);
}

/**
 * GETs until the cache serves the page (a namespace's first entry for a table may be refused
 * while its version is created), and returns that answer, which ran no SQL.
 */
async function cached(
  app: HttpApp,
  path: string,
  headers: Record<string, string> = {},
): Promise<Answer> {
  for (let i = 0; i < 4; i++) {
    const answer = await get(app, path, headers);
    expect(answer.status, answer.text).to.equal(200);
    if (answer.selects === 0 && i > 0) return answer;
  }
  throw new Error(`GET ${path} was not served from the cache in 4 requests`);
}

const kinds: HttpAppKind[] = ["nestjs-express", "nestjs-fastify", "express", "fastify"];

for (const kind of kinds) {
  describe(`whole responses cached on ${kind}, invalidated by what the handler read`, function () {
    this.timeout(60_000);
    const ns = uniqueNamespace();
    let redis: Redis;
    let app: HttpApp;

    before(async () => {
      const setup = await openDataSource({ fresh: true, schema: ns });
      await setup.getRepository(Post).insert([
        { title: "first", published: true },
        { title: "draft", published: false },
      ]);
      await setup.destroy();
      redis = await openRedis();
      app = await startHttpApp(kind, { namespace: ns, schema: ns, redis });
    });

    after(async () => {
      await app?.close();
      redis?.disconnect();
    });

    it("serves the second GET from the cache with no SQL, with the same body", async () => {
      const first = await get(app, "/posts");
      expect(first.status).to.equal(200);
      expect(JSON.parse(first.text).titles).to.include("first");
      const hit = await cached(app, "/posts");
      expect(hit.text).to.equal(first.text);
      expect(hit.headers.get("content-type")).to.match(/application\/json/);
      expect(hit.headers.get("etag")).to.be.a("string");
    });

    it("a POST that writes the table the page read makes the next GET fresh", async () => {
      await cached(app, "/posts");
      await post(app, `written-${kind}`);
      const fresh = await get(app, "/posts");
      expect(fresh.selects, "the page was computed again").to.be.greaterThan(0);
      expect(JSON.parse(fresh.text).titles).to.include(`written-${kind}`);
    });

    it("answers If-None-Match with the cached ETag by 304, from the cache", async () => {
      const hit = await cached(app, "/posts");
      const etag = hit.headers.get("etag") as string;
      const revalidated = await get(app, "/posts", { "if-none-match": etag });
      expect(revalidated.status).to.equal(304);
      expect(revalidated.text).to.equal("");
      expect(revalidated.selects).to.equal(0);
      expect(revalidated.headers.get("etag")).to.equal(etag);
      const other = await get(app, "/posts", { "if-none-match": '"something-else"' });
      expect(other.status).to.equal(200);
      expect(other.text).to.equal(hit.text);
    });

    it("caches HEAD apart from GET, with no body and the GET's headers", async () => {
      let head = await get(app, "/posts", {}, "HEAD");
      for (let i = 0; i < 3 && (head.selects > 0 || i === 0); i++)
        head = await get(app, "/posts", {}, "HEAD");
      expect(head.status).to.equal(200);
      expect(head.selects, "a HEAD served from the cache").to.equal(0);
      expect(head.text).to.equal("");
      expect(head.headers.get("content-type")).to.match(/application\/json/);
    });

    it("never caches a response that sets a cookie", async () => {
      for (let i = 0; i < 3; i++) {
        const answer = await get(app, "/session");
        expect(answer.status).to.equal(200);
        expect(answer.headers.get("set-cookie")).to.match(/session=abc/);
        expect(answer.selects, `request ${i + 1} ran the handler`).to.be.greaterThan(0);
      }
    });

    it("does not cache requests with Authorization or a cookie unless a key rule names whose page it is", async () => {
      await cached(app, "/posts/1");
      const credentials: Record<string, string>[] = [
        { authorization: "Bearer secret" },
        { cookie: "session=abc" },
      ];
      for (const headers of credentials) {
        for (let i = 0; i < 2; i++) {
          const answer = await get(app, "/posts/1", headers);
          expect(answer.status).to.equal(200);
          expect(answer.selects, `${Object.keys(headers)[0]}: the handler ran`).to.be.greaterThan(
            0,
          );
        }
      }
      // With a key rule, each user gets a page of their own.
      const alice = await cached(app, "/mine", { authorization: "Bearer a", "x-user": "alice" });
      expect(JSON.parse(alice.text).user).to.equal("alice");
      const bob = await get(app, "/mine", { authorization: "Bearer b", "x-user": "bob" });
      expect(JSON.parse(bob.text).user).to.equal("bob");
      expect(bob.selects, "bob's first request is a miss").to.be.greaterThan(0);
      expect(alice.headers.get("cache-control")).to.equal(null);
    });

    it("keys by the vary headers, and sends Vary and Cache-Control: max-age", async () => {
      const french = await cached(app, "/greeting", { "accept-language": "fr" });
      const english = await cached(app, "/greeting", { "accept-language": "en" });
      expect(JSON.parse(french.text).greeting).to.equal("bonjour");
      expect(JSON.parse(english.text).greeting).to.equal("hello");
      expect(french.headers.get("vary")).to.match(/accept-language/i);
      expect(french.headers.get("cache-control")).to.equal("public, max-age=30");
    });

    if (kind.startsWith("nestjs")) {
      it("does not cache, and never leaves hanging, a handler that answers through @Res() itself", async () => {
        for (let i = 0; i < 3; i++) {
          const answer = await get(app, "/raw");
          expect(answer.status).to.equal(200);
          expect(JSON.parse(answer.text).posts).to.be.a("number");
          expect(answer.selects).to.be.greaterThan(0);
        }
      });
    }

    it("does not cache a 404", async () => {
      for (let i = 0; i < 2; i++) {
        const answer = await get(app, "/posts/999999");
        expect(answer.status).to.equal(404);
        expect(answer.selects).to.be.greaterThan(0);
      }
    });

    it("two instances sharing Redis invalidate each other's pages", async () => {
      const other = await startHttpApp(kind, { namespace: ns, schema: ns, redis });
      try {
        await cached(app, "/posts");
        await cached(other, "/posts");
        await post(other, `from-the-other-${kind}`);
        const fresh = await get(app, "/posts");
        expect(JSON.parse(fresh.text).titles).to.include(`from-the-other-${kind}`);
        await post(app, `back-${kind}`);
        expect(JSON.parse((await get(other, "/posts")).text).titles).to.include(`back-${kind}`);
      } finally {
        await other.close();
      }
    });
  });
}

describe("whole responses on Express behind a compressing layer", function () {
  this.timeout(60_000);
  const ns = uniqueNamespace();
  let app: App;
  let server: Server;
  let url: string;

  /** What compression() does: gzip what the handler writes, and say so when the head goes out. */
  function gzipLayer(req: IncomingMessage, res: ServerResponse, next: () => void): void {
    if (!/gzip/.test(String(req.headers["accept-encoding"] ?? ""))) return next();
    const chunks: Buffer[] = [];
    const { writeHead, end } = res;
    res.writeHead = function (this: ServerResponse, ...args: unknown[]) {
      this.setHeader("content-encoding", "gzip");
      this.removeHeader("content-length");
      return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
    } as typeof writeHead;
    res.write = ((chunk: string | Buffer) =>
      chunks.push(Buffer.from(chunk)) > 0) as typeof res.write;
    res.end = function (this: ServerResponse, chunk?: unknown) {
      if (chunk && typeof chunk !== "function") chunks.push(Buffer.from(chunk as string));
      const body = gzipSync(Buffer.concat(chunks));
      if (!this.headersSent) this.writeHead(this.statusCode);
      return (end as (b: Buffer) => ServerResponse).call(this, body);
    } as typeof res.end;
    next();
  }

  before(async () => {
    app = await openApp(ns, { fresh: true });
    await app.dataSource.getRepository(Post).insert({ title: "compressed", published: true });
    const posts = app.dataSource.getRepository(Post);
    const site = express();
    site.use(gzipLayer);
    site.get(
      "/posts",
      cacheResponses(app.cache, { ttl: 60 }),
      async (_req, res) => void res.json(await posts.find({ order: { id: "ASC" } })),
    );
    server = await new Promise<Server>((resolve) => {
      const s = site.listen(0, "127.0.0.1", () => resolve(s));
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await app?.close();
  });

  it("stores what the handler wrote, so a hit is compressed anew for a client that accepts gzip and plain for one that does not", async () => {
    for (const encoding of ["gzip", "gzip", "gzip", "identity", "gzip"]) {
      const response = await fetch(`${url}/posts`, { headers: { "accept-encoding": encoding } });
      expect(response.headers.get("content-encoding") ?? "identity").to.equal(encoding);
      expect(((await response.json()) as Post[]).map((p) => p.title)).to.deep.equal(["compressed"]);
    }
    expect(app.cache.stats({ byMethod: true }).byMethod["GET /posts"].hits).to.be.at.least(2);
  });
});
