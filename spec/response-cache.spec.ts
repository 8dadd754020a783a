import { expect } from "chai";
import type Redis from "ioredis";
import { Post } from "./support/entities";
import { openDataSource, openRedis, selectCount, uniqueNamespace } from "./support/fixture";
import { type HttpApp, type HttpAppKind, startHttpApp } from "./support/http-apps";

interface Answer {
  status: number;
  text: string;
  headers: Headers;
  /** SELECTs the app ran while answering. */
  selects: number;
}

async function get(app: HttpApp, path: string, headers: Record<string, string> = {}, method = "GET"): Promise<Answer> {
  const before = selectCount(app.dataSource);
  const response = await fetch(`${app.url}${path}`, { method, headers });
  const text = await response.text();
  return { status: response.status, text, headers: response.headers, selects: selectCount(app.dataSource) - before };
}

async function post(app: HttpApp, title: string): Promise<void> {
  const response = await fetch(`${app.url}/posts`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ title }) });
  expect(response.status, await response.text()).to.equal(201);
}

/**
 * GETs until the cache serves the page (a namespace's first entry for a table may be refused
 * while its version is created), and returns that answer, which ran no SQL.
 */
async function cached(app: HttpApp, path: string, headers: Record<string, string> = {}): Promise<Answer> {
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
      for (let i = 0; i < 3 && (head.selects > 0 || i === 0); i++) head = await get(app, "/posts", {}, "HEAD");
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
      const credentials: Record<string, string>[] = [{ authorization: "Bearer secret" }, { cookie: "session=abc" }];
      for (const headers of credentials) {
        for (let i = 0; i < 2; i++) {
          const answer = await get(app, "/posts/1", headers);
          expect(answer.status).to.equal(200);
          expect(answer.selects, `${Object.keys(headers)[0]}: the handler ran`).to.be.greaterThan(0);
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
