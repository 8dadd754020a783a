import { expect } from "chai";
import { LostBumpStore, StampAtSetStore } from "./freshness/broken-stores";
import { Environment, type StoreFactory } from "./freshness/harness";
import { type PageServer, runPageWorkload, startPageServer } from "./freshness/pages";
import { DEFAULT_PROFILE, type Profile } from "./freshness/workload";

/** Few rows and many slow pages (60 ms between their query and their response), as in freshness.spec. */
const RACY: Profile = {
  ...DEFAULT_PROFILE,
  readShare: 0.85,
  groups: 2,
  accounts: 6,
  slowReads: 8,
  slowMs: 60,
};

async function run(ops: number, seed: number, store?: StoreFactory) {
  const env = await Environment.open({ profile: RACY, store });
  const servers: PageServer[] = [];
  try {
    servers.push(await startPageServer("express", env.apps[0].cache, RACY.slowMs));
    servers.push(await startPageServer("fastify", env.apps[1].cache, RACY.slowMs));
    const { hits, pages } = await runPageWorkload(env, servers, {
      ops,
      seed,
      workers: 8,
      profile: RACY,
    });
    const verdict = await env.verdict();
    return { hits, pages, verdict, readErrors: env.recorder.readErrors };
  } finally {
    for (const server of servers) await server.close();
    await env.close();
  }
}

describe("freshness of cached pages: a GET that starts after a write's response never returns an older page", function () {
  this.timeout(120_000);

  it("finds no stale and no dirty page in concurrent page reads and writes on Express and Fastify sharing one Redis", async () => {
    const { hits, pages, verdict, readErrors } = await run(800, 11);
    expect(readErrors).to.deep.equal([]);
    expect(verdict.unattributed).to.have.length(0);
    const shown = [...verdict.stale, ...verdict.dirty]
      .slice(0, 5)
      .map((v) => `${v.kind} ${v.read}: ${v.details[0]}`);
    expect(verdict.stale.length + verdict.dirty.length, shown.join("\n")).to.equal(0);
    expect(pages).to.be.greaterThan(400);
    expect(hits, "pages were served from the cache").to.be.greaterThan(0);
  });

  for (const [what, store] of [
    [
      "an entry stamped when stored instead of before its query ran",
      (redis) => new StampAtSetStore(redis),
    ],
    ["invalidations that are lost", (redis) => new LostBumpStore(redis)],
  ] as [string, StoreFactory][]) {
    it(`catches stale pages from a broken cache: ${what}`, async () => {
      const { verdict } = await run(500, 12, store);
      expect(verdict.stale.length).to.be.greaterThan(0);
    });
  }
});
