import type { Check, Mixes } from "./contenders";
import type { HitProfile, Memory, Propagation, Stampede } from "./figures";
import { median, quantile } from "./rounds";
import { DEPENDENT_COUNTS } from "./setup";

export interface Results {
  environment: string;
  rounds: number;
  warmup: number;
  seconds: number;
  figures: Map<string, number[]>;
  checks: Map<string, Check>;
  mixes: Mixes;
  roundTrips: Map<number, { writes: number; commands: number }>;
  sizes: { floorJson: number; entry: number; payload: number };
  fills: { count: number; stored: number; seconds: number }[];
  stampede: Stampede;
  memory: Memory;
  propagation?: Propagation;
  profile: HitProfile;
  localUnavailable?: string;
  /** Store errors the Redis-only cache reported, by message. */
  cacheErrors: Map<string, number>;
}

const NA_TIER = "n/a (tier not available)";

interface Target {
  what: string;
  value: string;
  pass: boolean | undefined;
}

/** The whole report as Markdown: what `npm run bench` prints and writes to bench/results/latest.md. */
export function markdown(r: Results): string {
  const m = (id: string) => median(r.figures.get(id) ?? []);
  const p90 = (id: string) => quantile(r.figures.get(id) ?? [], 0.9);
  const has = (id: string) => (r.figures.get(id)?.length ?? 0) > 0;
  const local = has("local-hit");
  const lines: string[] = [];
  const row = (...cells: string[]) => lines.push(`| ${cells.join(" | ")} |`);

  lines.push("# typeorm-autocache benchmark", "");
  lines.push(`${r.environment}`, "");
  lines.push(
    `Every contender ran interleaved in ${r.rounds} rounds (after ${r.warmup} warm-up rounds) in one process, ` +
      `its order rotated each round; ${r.seconds.toFixed(0)} s in all. Operations that a target compares (floor, Redis hit and ` +
      "TypeORM's hit; uncached and miss; save with and without the subscriber; the three invalidation cases) alternate call " +
      "by call within their batch. Figures are medians over all timed calls (µs per call), or over rounds (calls per second).",
    "",
  );

  lines.push("## Reading the front page: 20 posts with their authors", "");
  lines.push('`find({ relations: { author: true }, order: { id: "DESC" }, take: 20 })`', "");
  row("#", "Contender", "median µs", "p90 µs", "compared");
  row("---", "---", "---:", "---:", "---");
  row("1", "Uncached TypeORM `find`", us(m("uncached")), us(p90("uncached")), "baseline");
  row(
    "2",
    "TypeORM's built-in Redis cache, hit",
    us(m("typeorm-hit")),
    us(p90("typeorm-hit")),
    `${x(m("typeorm-hit") / m("redis-hit"))} our Redis hit`,
  );
  row(
    "3",
    "Floor: ioredis `GET` + `JSON.parse` of the rows' JSON",
    us(m("floor")),
    us(p90("floor")),
    "floor",
  );
  row(
    "4",
    "`@Cached` hit from Redis",
    us(m("redis-hit")),
    us(p90("redis-hit")),
    `${x(m("redis-hit") / m("floor"))} floor, ${x(m("uncached") / m("redis-hit"))} faster than uncached`,
  );
  if (local)
    row(
      "5",
      "`@Cached` hit from the in-process tier",
      us(m("local-hit")),
      us(p90("local-hit")),
      `${x(m("uncached") / m("local-hit"))} faster than uncached`,
    );
  else row("5", "`@Cached` hit from the in-process tier", NA_TIER, "", r.localUnavailable ?? "");
  row(
    "6",
    "`@Cached` miss (entry invalidated just before, off the clock)",
    us(m("miss")),
    us(p90("miss")),
    `${x(m("miss") / m("uncached"))} uncached`,
  );
  lines.push("");

  lines.push("## Writing", "");
  row("#", "Contender", "median µs", "p90 µs", "compared");
  row("---", "---", "---:", "---:", "---");
  row(
    "7",
    "`save()` of one new post, with QueryCacheSubscriber",
    us(m("save-with")),
    us(p90("save-with")),
    `${x(m("save-with") / m("save-without"))} without`,
  );
  row(
    "7",
    "`save()` of one new post, no subscriber",
    us(m("save-without")),
    us(p90("save-without")),
    "baseline",
  );
  for (const count of DEPENDENT_COUNTS) {
    row(
      "8",
      `\`INSERT\` + invalidation, ${count.toLocaleString("en-US")} entries depend on the table`,
      us(m(`write-${count}`)),
      us(p90(`write-${count}`)),
      `${x(m(`write-${count}`) / m(`write-${DEPENDENT_COUNTS[0]}`))} the 10-entry case`,
    );
  }
  for (const count of DEPENDENT_COUNTS) {
    row(
      "8",
      `\`cache.invalidate(table)\` alone, ${count.toLocaleString("en-US")} entries`,
      us(m(`invalidate-${count}`)),
      us(p90(`invalidate-${count}`)),
      `${x(m(`invalidate-${count}`) / m(`invalidate-${DEPENDENT_COUNTS[0]}`))} the 10-entry case`,
    );
  }
  lines.push("");
  lines.push(
    `Entries for contender 8 were stored through \`cache.set(key, value, { dependsOn: [table] })\`, 250 calls in flight at a time: ` +
      r.fills
        .map(
          (f) =>
            `${f.stored.toLocaleString("en-US")} of ${f.count.toLocaleString("en-US")} in ${f.seconds.toFixed(1)} s`,
        )
        .join(", ") +
      ". A write bumps one version key (one round trip); the entries are not touched, and an outdated one is dropped when next read or when its ttl ends.",
    "",
  );

  lines.push(
    "## Throughput: 64 calls in flight, 95% reads of the front page, 5% `save()` of a new post",
    "",
  );
  const hitRatio = r.mixes.cached.hits / Math.max(1, r.mixes.cached.hits + r.mixes.cached.misses);
  row("#", "Contender", "median calls/s", "compared");
  row("---", "---", "---:", "---");
  row(
    "9",
    "Cached (`@Cached` reads, writes invalidate)",
    ops(m("mix-cached")),
    `${x(m("mix-cached") / m("mix-uncached"))} uncached, hit ratio ${(hitRatio * 100).toFixed(1)}%`,
  );
  row("9", "Uncached", ops(m("mix-uncached")), "baseline");
  lines.push("");
  lines.push(
    `The cached reads missed ${r.mixes.cached.misses.toLocaleString("en-US")} times and ran the query ${r.mixes.cached.computations.toLocaleString("en-US")} times ` +
      `after ${r.mixes.cached.writes.toLocaleString("en-US")} writes: ${(r.mixes.cached.computations / Math.max(1, r.mixes.cached.writes)).toFixed(1)} queries per write, ` +
      `where one per write would mean every miss after a write waited for a single computation.`,
    "",
  );

  lines.push("## Memory, concurrency, staleness", "");
  row("#", "Figure", "value");
  row("---", "---", "---");
  row(
    "10",
    "Bytes per front-page entry in Redis (`MEMORY USAGE`)",
    `${bytes(r.memory.redisEntry)} (value ${bytes(r.sizes.entry)}: ${bytes(r.sizes.payload)} payload + header)`,
  );
  row(
    "10",
    "Bytes per front-page entry in the in-process tier (heap growth / entries)",
    r.memory.localPerEntry !== undefined
      ? `${bytes(r.memory.localPerEntry)} (${r.memory.localEntries} entries)`
      : local
        ? "n/a (the tier kept none of the copies)"
        : NA_TIER,
  );
  row(
    "10",
    "For scale: the floor's JSON in Redis; TypeORM's two cache keys",
    `${bytes(r.memory.redisFloor)} (JSON ${bytes(r.sizes.floorJson)}); ${bytes(r.memory.typeormEntries)}`,
  );
  const s = r.stampede;
  row(
    "",
    `${s.calls.toLocaleString("en-US")} concurrent misses on one key (${s.bursts} bursts, worst)`,
    `${s.maxBodyRuns} run(s) of the method, ${s.maxStatements} SQL statements (one run of this find sends ${s.statementsPerRun})`,
  );
  row(
    "",
    "In-process tier staleness after another instance's write returned",
    r.propagation
      ? `p50 ${ms(r.propagation.p50Ms)}, p99 ${ms(r.propagation.p99Ms)} until the tier dropped the entry (${r.propagation.samples} writes by another instance with the tier; ${r.propagation.staleAfterDrop} reads after a drop were still stale)`
      : NA_TIER,
  );
  if (r.propagation) {
    row(
      "",
      "A write by an instance without the tier reaches the tier",
      r.propagation.fromInstanceWithoutTier ? "yes" : "NO: not within 2 s",
    );
  }
  lines.push("");

  lines.push("## Targets", "");
  for (const t of targets(r, m))
    lines.push(
      `- ${t.pass === undefined ? "n/a " : t.pass ? "PASS" : "FAIL"} ${t.what}: ${t.value}`,
    );
  lines.push("");

  lines.push("## Where a Redis hit spends its time", "");
  row("Step", "median µs");
  row("---", "---:");
  row("`GET` of the entry key: the same bytes as a hit, no script, no parse", us(m("p-get-entry")));
  row(
    "`EVAL \"return redis.call('GET', KEYS[1])\"`: the same bytes passed through Lua",
    us(m("p-eval-get")),
  );
  row(
    "`MGET` of the entry, the clock and its versions: the command a hit sends",
    us(m("p-get-mget")),
  );
  row("`store.lookup()`: that `MGET` + header split + version check", us(m("p-lookup")));
  row("`JSON.parse` of the entry's payload", us(m("p-parse-entry")));
  row("`cache.get()` on the same value: lookup + store guard + decode", us(m("p-get-api")));
  row("`@Cached` hit (adds the argument digest, tracking, single-flight)", us(m("redis-hit")));
  row("Floor: `GET` of the rows' JSON", us(m("p-get-floor")));
  row("Floor: `JSON.parse` of the rows' JSON", us(m("p-parse-floor")));
  lines.push("");
  const script = m("p-lookup") - m("p-get-entry");
  const walk = m("p-get-api") - m("p-lookup") - m("p-parse-entry");
  const decorator = m("redis-hit") - m("p-get-api");
  const part = (v: number) => (v < 0 ? `${us(v)} µs (within noise)` : `${us(v)} µs`);
  lines.push(
    `Over the floor (${us(m("floor"))} µs), a hit spends ${us(m("redis-hit") - m("floor"))} µs more: the lookup over a plain GET ${part(script)} ` +
      `(for scale, moving the value through Lua would cost ${part(m("p-eval-get") - m("p-get-entry"))}), ` +
      `the positional payload (${bytes(r.sizes.payload)} against ${bytes(r.sizes.floorJson)} of plain JSON) ${part(m("p-parse-entry") - m("p-parse-floor"))} more to parse ` +
      `and ${part(m("p-get-entry") - m("p-get-floor"))} more to fetch, the decode walk and store guard ${part(walk)}, and the decorator ${part(decorator)}.`,
    "",
  );
  const server = Object.entries(r.profile.serverUsPerCall)
    .map(([c, v]) => `${c} ${v.toFixed(1)} µs`)
    .join(", ");
  lines.push(
    `Redis's own time per hit (INFO commandstats over ${r.profile.calls} hits; a script's inner calls are counted inside it and again on their own): ${server}.`,
    "",
  );
  lines.push(`CPU profile of ${r.profile.calls} back-to-back hits, share of samples:`, "");
  row("Where", "share");
  row("---", "---:");
  for (const c of r.profile.categories) row(c.name, pct(c.share));
  lines.push("");
  row("Function (self time)", "share");
  row("---", "---:");
  for (const f of r.profile.functions) row(`\`${f.name}\``, pct(f.share));
  lines.push("");

  lines.push("## Checks", "");
  for (const [id, c] of r.checks)
    lines.push(
      `- ${id}: ${c.ok.toLocaleString("en-US")} of ${c.of.toLocaleString("en-US")} ${c.what}`,
    );
  const errors = [...r.cacheErrors].map(([message, n]) => `${n} × ${message}`).join("; ");
  lines.push(`- store errors counted by the Redis-only cache during the run: ${errors || "none"}`);
  lines.push(
    `- contender 9 calls: cached ${r.mixes.cached.reads.toLocaleString("en-US")} reads and ${r.mixes.cached.writes.toLocaleString("en-US")} writes, uncached ${r.mixes.uncached.reads.toLocaleString("en-US")} reads and ${r.mixes.uncached.writes.toLocaleString("en-US")} writes`,
  );
  lines.push("");
  return lines.join("\n");
}

function targets(r: Results, m: (id: string) => number): Target[] {
  const ratio = (a: number, b: number) => a / b;
  const out: Target[] = [];
  const hitFloor = ratio(m("redis-hit"), m("floor"));
  out.push({ what: "Redis hit / floor <= 1.2", value: x(hitFloor), pass: hitFloor <= 1.2 });
  const builtin = ratio(m("typeorm-hit"), m("redis-hit"));
  out.push({
    what: "TypeORM built-in hit / our Redis hit >= 3.5",
    value: x(builtin),
    pass: builtin >= 3.5,
  });
  const localUs = m("local-hit");
  out.push({
    what: "in-process hit < 2 µs",
    value: Number.isNaN(localUs) ? NA_TIER : `${us(localUs)} µs`,
    pass: Number.isNaN(localUs) ? undefined : localUs < 2,
  });
  const miss = ratio(m("miss"), m("uncached"));
  out.push({ what: "miss / uncached <= 1.15", value: x(miss), pass: miss <= 1.15 });
  const save = ratio(m("save-with"), m("save-without"));
  out.push({ what: "save with subscriber / without <= 1.15", value: x(save), pass: save <= 1.15 });
  const spread = (prefix: string) => {
    const v = DEPENDENT_COUNTS.map((c) => m(`${prefix}-${c}`));
    return Math.max(...v) / Math.min(...v);
  };
  const bumps = spread("invalidate");
  const trips = [...r.roundTrips.values()].map((t) => t.commands / Math.max(1, t.writes));
  out.push({
    what: "invalidation flat from 10 to 100,000 dependent entries: one Redis round trip per write, invalidate() slowest / fastest <= 1.25",
    value: `${trips.map((t) => t.toFixed(2)).join(" / ")} commands per write, invalidate() ${x(bumps)} (write+invalidation ${x(spread("write"))}, mostly PostgreSQL's noise)`,
    pass: trips.every((t) => t === 1) && bumps <= 1.25,
  });
  const s = r.stampede;
  out.push({
    what: `${s.calls.toLocaleString("en-US")} concurrent misses -> 1 query`,
    value: `${s.maxBodyRuns} run(s), ${s.maxStatements} statements`,
    pass: s.maxBodyRuns === 1,
  });
  return out;
}

/** A bar chart of the read contenders and of throughput, hand-written SVG. */
export function svg(r: Results): string {
  const m = (id: string) => median(r.figures.get(id) ?? []);
  const reads = [
    { label: "1 Uncached TypeORM find", id: "uncached" },
    { label: "6 @Cached miss", id: "miss" },
    { label: "2 TypeORM built-in cache hit", id: "typeorm-hit" },
    { label: "4 @Cached hit, Redis", id: "redis-hit" },
    { label: "3 Floor: GET + JSON.parse", id: "floor" },
    { label: "5 @Cached hit, in-process", id: "local-hit" },
  ].map((b) => ({
    label: b.label,
    value: m(b.id),
    text: Number.isNaN(m(b.id)) ? NA_TIER : `${us(m(b.id))} µs`,
  }));
  const mix = [
    {
      label: "9 Cached, 64 in flight",
      value: m("mix-cached"),
      text: `${ops(m("mix-cached"))} calls/s`,
    },
    {
      label: "9 Uncached, 64 in flight",
      value: m("mix-uncached"),
      text: `${ops(m("mix-uncached"))} calls/s`,
    },
  ];
  const width = 760;
  const labelWidth = 230;
  const barSpace = width - labelWidth - 150;
  const rowHeight = 26;
  const parts: string[] = [];
  let y = 30;
  const panel = (
    title: string,
    bars: { label: string; value: number; text: string }[],
    color: string,
  ) => {
    parts.push(`<text x="10" y="${y}" class="title">${esc(title)}</text>`);
    y += 14;
    const max = Math.max(...bars.map((b) => (Number.isNaN(b.value) ? 0 : b.value)));
    for (const b of bars) {
      const w = Number.isNaN(b.value) || max === 0 ? 0 : Math.max(1, (b.value / max) * barSpace);
      parts.push(
        `<text x="${labelWidth - 8}" y="${y + 17}" text-anchor="end">${esc(b.label)}</text>`,
      );
      parts.push(
        `<rect x="${labelWidth}" y="${y + 5}" width="${w.toFixed(1)}" height="${rowHeight - 10}" fill="${color}"/>`,
      );
      parts.push(
        `<text x="${(labelWidth + w + 6).toFixed(1)}" y="${y + 17}">${esc(b.text)}</text>`,
      );
      y += rowHeight;
    }
    y += 26;
  };
  panel(
    "Reading the front page (20 posts with authors): median µs per call, shorter is better",
    reads,
    "#3b6ea8",
  );
  panel(
    "95% reads / 5% writes, 64 calls in flight: calls per second, longer is better",
    mix,
    "#4c9a5a",
  );
  const footer = wrap(r.environment, 125);
  const height = y + footer.length * 12;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<style>.title { font-weight: bold; font-size: 13px; }</style>`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    ...parts,
    ...footer.map(
      (line, i) =>
        `<text x="10" y="${height - 24 + i * 12}" fill="#666" font-size="10">${esc(line)}</text>`,
    ),
    `</svg>`,
    "",
  ].join("\n");
}

function wrap(text: string, width: number): string[] {
  const lines = [""];
  for (const word of text.split(" ")) {
    const last = lines.length - 1;
    if (lines[last] && lines[last].length + word.length + 1 > width) lines.push(word);
    else lines[last] = lines[last] ? `${lines[last]} ${word}` : word;
  }
  return lines;
}

function esc(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function us(value: number): string {
  if (Number.isNaN(value)) return "n/a";
  return Math.abs(value) < 10
    ? value.toFixed(2)
    : Math.abs(value) < 100
      ? value.toFixed(1)
      : value.toFixed(0);
}

function ms(value: number): string {
  return value < 1 ? `${(value * 1000).toFixed(0)} µs` : `${value.toFixed(2)} ms`;
}

function x(value: number): string {
  return Number.isNaN(value) ? "n/a" : `${value.toFixed(2)}x`;
}

function ops(value: number): string {
  return Number.isNaN(value) ? "n/a" : Math.round(value).toLocaleString("en-US");
}

function pct(value: number): string {
  return `${(value * 100).toFixed(1)}%`;
}

function bytes(value: number): string {
  return value >= 10_240
    ? `${(value / 1024).toFixed(1)} KiB`
    : `${Math.round(value).toLocaleString("en-US")} B`;
}
