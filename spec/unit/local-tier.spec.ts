import { expect } from "chai";
import { LocalTier } from "../../lib/local/local-tier";

const MINUTE = 60_000;

describe("unit: local tier (decoded entries in process memory, dropped by their dependencies)", () => {
  let tier: LocalTier;
  beforeEach(() => {
    tier = new LocalTier(1000);
    tier.reset(true);
  });

  it("keeps and serves nothing until its feed is live, and forgets everything when it goes down", () => {
    const down = new LocalTier(1000);
    down.set("k", 1, ["v"], 10, MINUTE, down.mark());
    expect(down.get("k"), "kept while the feed is down").to.equal(undefined);
    tier.set("k", 1, ["v"], 10, MINUTE, tier.mark());
    expect(tier.get("k")?.value).to.equal(1);
    tier.reset(false);
    expect(tier.get("k")).to.equal(undefined);
    tier.reset(true);
    expect(tier.get("k"), "what was held before a disconnect is not trusted after it").to.equal(
      undefined,
    );
  });

  it("drops every entry that depends on an invalidated version, and only those", () => {
    const mark = tier.mark();
    tier.set("a", "A", ["v:post", "v:*"], 10, MINUTE, mark);
    tier.set("b", "B", ["v:author", "v:*"], 10, MINUTE, mark);
    tier.drop(["v:post"]);
    expect(tier.get("a")).to.equal(undefined);
    expect(tier.get("b")?.value).to.equal("B");
    tier.drop(["v:*"]);
    expect(tier.get("b")).to.equal(undefined);
  });

  it("refuses an entry read before a drop (its mark is older), so a value that raced a write is not kept", () => {
    const before = tier.mark();
    tier.drop(["v:unrelated"]);
    tier.set("k", 1, ["v"], 10, MINUTE, before);
    expect(tier.get("k")).to.equal(undefined);
    tier.set("k", 1, ["v"], 10, MINUTE, tier.mark());
    expect(tier.get("k")?.value).to.equal(1);
    tier.forget("k");
    expect(tier.get("k")).to.equal(undefined);
  });

  it("holds at most maxBytes, evicting the least recently used, and never an entry larger than itself", () => {
    for (let i = 0; i < 5; i++) tier.set(`k${i}`, i, ["v"], 300, MINUTE, tier.mark());
    expect(tier.get("k0"), "the oldest was evicted").to.equal(undefined);
    expect(tier.get("k4")?.value).to.equal(4);
    tier.set("huge", "x", ["w"], 2000, MINUTE, tier.mark());
    expect(tier.get("huge")).to.equal(undefined);
    tier.drop(["w"]);
    expect(
      tier.get("k4")?.value,
      "dropping the refused entry's dependency touches nothing else",
    ).to.equal(4);
  });
});
