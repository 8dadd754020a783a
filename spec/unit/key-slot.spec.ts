import { expect } from "chai";
import { KeyLayout } from "../../lib/keys/key-layout";
import { keySlot } from "../../lib/stores/redis/key-slot";

describe("unit: key slot (the Redis Cluster slot a key lives in)", () => {
  it("matches CLUSTER KEYSLOT for known keys", () => {
    // Values from the Redis documentation of CLUSTER KEYSLOT and of the cluster specification.
    expect(keySlot("somekey")).to.equal(11058);
    expect(keySlot("foo{hash_tag}")).to.equal(2515);
    expect(keySlot("123456789")).to.equal(0x31c3 % 16384);
  });

  it("hashes only the first non-empty hash tag", () => {
    expect(keySlot("{user1000}.following")).to.equal(keySlot("{user1000}.followers"));
    expect(keySlot("a{tag}b")).to.equal(keySlot("tag"));
    expect(keySlot("foo{}{bar}"), "an empty tag hashes the whole key").to.equal(
      keySlot("foo{}{bar}"),
    );
    expect(keySlot("foo{}{bar}")).to.not.equal(keySlot("bar"));
    expect(keySlot("foo{{bar}}zap"), "the tag ends at the first }").to.equal(keySlot("{bar"));
  });

  it("puts a namespace's clock and versions in one slot", () => {
    const layout = new KeyLayout("ns", { scope: "db.public", database: "db" });
    const slot = keySlot(layout.clockKey);
    expect(keySlot(layout.everything)).to.equal(slot);
    expect(keySlot(layout.version("public.post"))).to.equal(slot);
  });
});
