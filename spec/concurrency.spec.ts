import { expect } from "chai";
import type { Post } from "./support/entities";
import { type App, dropNamespace, openApp, uniqueNamespace } from "./support/fixture";
import { repositories } from "./support/repositories";
import { Gate } from "./support/wait";
import { warm } from "./support/warm";

const titles = (rows: Post[]) => rows.map((p) => p.title).sort();

describe("concurrency: slow readers and other application instances never leave stale entries", () => {
  const ns = uniqueNamespace();
  let one: App;
  let two: App;

  before(async () => {
    one = await openApp(ns, { fresh: true });
    two = await openApp(ns);
  });
  after(async () => {
    await dropNamespace(one.redis, ns);
    await two.close();
    await one.close();
  });
  beforeEach(async () => {
    await one.dataSource.query(`TRUNCATE "${ns}"."post" CASCADE`);
    await repositories(one.dataSource).posts.insert([{ title: "x" }, { title: "y" }]);
  });

  it("a reader whose query ran before a write committed does not leave its result behind (invariant 2)", async () => {
    const posts = repositories(one.dataSource).posts;
    await warm(one, () => posts.held("x"));
    await posts.update({ title: "y" }, { title: "y" }); // the entry of held("x") is outdated
    const gate = (posts.gate = new Gate());
    const straddling = posts.held("x"); // queries, then waits at the gate before it stores
    await gate.arrived();
    await posts.insert({ title: "x" }); // commits and invalidates while the reader waits
    gate.open();
    expect(await straddling, "the straddling call itself may see the old data").to.have.length(1);
    await one.cache.settled();
    expect(await posts.held("x"), "the next call sees the committed write").to.have.length(2);
  });

  it("the same race across two application instances sharing Redis", async () => {
    const reader = repositories(two.dataSource).posts;
    const writer = repositories(one.dataSource).posts;
    await warm(two, () => reader.held("x"));
    await writer.update({ title: "y" }, { title: "y" });
    const gate = (reader.gate = new Gate());
    const straddling = reader.held("x");
    await gate.arrived();
    await writer.insert({ title: "x" });
    gate.open();
    expect(await straddling).to.have.length(1);
    await two.cache.settled();
    expect(await reader.held("x")).to.have.length(2);
  });

  it("a write through one DataSource invalidates the other's entries (two app instances, one Redis)", async () => {
    const a = repositories(one.dataSource).posts;
    const b = repositories(two.dataSource).posts;
    expect(titles(await warm(two, () => b.findAll()))).to.deep.equal(["x", "y"]);
    await a.insert({ title: "z" });
    expect(titles(await b.findAll())).to.deep.equal(["x", "y", "z"]);
    await warm(one, () => a.findAll());
    await b.delete({ title: "x" });
    expect(titles(await a.findAll())).to.deep.equal(["y", "z"]);
  });

  it("concurrent misses on one key run the method once, and each caller gets its own copy", async () => {
    const posts = repositories(one.dataSource).posts;
    await posts.update({ title: "x" }, { views: 1 }); // the table has a version, so the first result is stored
    let runs = 0;
    const read = () =>
      one.cache.wrap("single-flight", async () => {
        runs++;
        return posts.find({ order: { id: "ASC" } });
      });
    const results = await Promise.all(Array.from({ length: 50 }, read));
    expect(runs).to.equal(1);
    expect(results.every((r) => r.length === 2)).to.equal(true);
    expect(new Set(results).size, "callers do not share one mutable array").to.equal(50);
  });

  it("a caller that arrives after a write does not join a flight that started before it", async () => {
    const posts = repositories(one.dataSource).posts;
    await posts.update({ title: "x" }, { views: 1 });
    const gate = new Gate();
    const read = () =>
      one.cache.wrap("flight-after-write", async () => {
        const rows = await posts.find();
        await gate.pass();
        return rows;
      });
    const early = read();
    await gate.arrived(); // the early flight has read
    await posts.insert({ title: "late" });
    const late = read();
    gate.open();
    expect(await early).to.have.length(2);
    expect(await late, "the late caller sees the committed write").to.have.length(3);
  });
});
