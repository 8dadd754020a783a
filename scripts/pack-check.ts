import { execFileSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { Client } from "pg";
import { getServices, stopServices } from "../example/services";

/**
 * `npm pack`, then install the tarball into a new CommonJS project and a new ESM project and use
 * it there: compile each with TypeScript against the shipped .d.ts, construct a QueryCache on the
 * real PostgreSQL and read, hit and write through it. Offline: the package's dependencies are
 * packed from this repository's node_modules, and the peers (typeorm, pg, reflect-metadata,
 * ioredis) are linked from it, as an application that already has them would.
 *
 *   npm run pack-check
 */

const root = resolve(__dirname, "..", "..");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  name: string;
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  exports: Record<string, string | Record<string, string>>;
};
const tsc = join(root, "node_modules", "typescript", "bin", "tsc");

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "autocache-pack-"));
  try {
    const tarball = pack(work);
    const dependencies = packDependencies(work);
    const { pgUrl } = await getServices();
    for (const kind of ["commonjs", "module"] as const)
      await consume(kind, work, [tarball, ...dependencies], pgUrl);
    console.log("pack-check: passed");
  } finally {
    rmSync(work, { recursive: true, force: true });
    await stopServices();
  }
}

/** Packs the repository (npm runs `prepare`, which rebuilds dist/lib and dist/esm) and checks what the tarball holds. */
function pack(work: string): string {
  const out = npm(root, ["pack", "--json", "--pack-destination", work]);
  const [report] = JSON.parse(out.slice(out.lastIndexOf("\n[") + 1)) as [
    { filename: string; files: { path: string }[] },
  ];
  const files = report.files.map((f) => f.path).sort();
  const allowed =
    /^(package\.json|README\.md|LICENSE|CHANGELOG\.md|dist\/lib\/.+\.(js|d\.ts|lua)|dist\/esm\/.+\.mjs)$/;
  const stray = files.filter((f) => !allowed.test(f));
  if (stray.length > 0)
    throw new Error(`the tarball holds files that do not run: ${stray.join(", ")}`);
  for (const required of [
    "LICENSE",
    "README.md",
    "CHANGELOG.md",
    "dist/lib/stores/redis/lua/admit.lua",
  ]) {
    if (!files.includes(required)) throw new Error(`the tarball lacks ${required}`);
  }
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    const targets = (typeof target === "string" ? [target] : Object.values(target)).map((t) =>
      t.replace(/^\.\//, ""),
    );
    const absent = targets.filter((t) => !files.includes(t));
    if (absent.length === 0) continue;
    // An entry point declared ahead of its source (lib/<name>/index.ts) is reported, not failed.
    const source = `lib/${subpath.slice(2)}/index.ts`;
    if (subpath !== "." && !existsSync(join(root, source))) {
      console.log(
        `pack-check: ${pkg.name}${subpath.slice(1)} not checked: ${source} does not exist yet`,
      );
      continue;
    }
    throw new Error(`exports["${subpath}"] names files the tarball lacks: ${absent.join(", ")}`);
  }
  console.log(
    `pack-check: ${report.filename}: ${files.length} files, all of them dist/lib, dist/esm, README, LICENSE, CHANGELOG or package.json`,
  );
  return join(work, report.filename);
}

/** Tarballs of the runtime dependencies and theirs, packed from this repository's node_modules. */
function packDependencies(work: string): string[] {
  const tarballs: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string, from: string) => {
    const dir = [join(from, "node_modules", name), join(root, "node_modules", name)].find((d) =>
      existsSync(d),
    );
    if (!dir) throw new Error(`${name} is not installed in ${root}/node_modules: run npm install`);
    if (seen.has(dir)) return;
    seen.add(dir);
    const out = npm(root, ["pack", dir, "--json", "--ignore-scripts", "--pack-destination", work]);
    tarballs.push(join(work, (JSON.parse(out) as [{ filename: string }])[0].filename));
    const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as {
      dependencies?: Record<string, string>;
    };
    for (const dependency of Object.keys(manifest.dependencies ?? {})) visit(dependency, dir);
  };
  for (const name of Object.keys(pkg.dependencies)) visit(name, root);
  return tarballs;
}

/** A new project of the given module kind that installs the tarballs, compiles its use of the package and runs it. */
async function consume(
  kind: "commonjs" | "module",
  work: string,
  tarballs: string[],
  pgUrl: string,
): Promise<void> {
  const dir = join(work, kind === "commonjs" ? "cjs-app" : "esm-app");
  mkdirSync(join(dir, "src"), { recursive: true });
  writeFileSync(
    join(dir, "package.json"),
    JSON.stringify({ name: `${kind}-app`, private: true, type: kind }, null, 2),
  );
  npm(dir, ["install", "--offline", "--no-audit", "--no-fund", "--legacy-peer-deps", ...tarballs]);
  const installed = JSON.parse(
    readFileSync(join(dir, "node_modules", pkg.name, "package.json"), "utf8"),
  ) as { version: string };
  for (const peer of [...Object.keys(pkg.peerDependencies), "@types/node"]) {
    mkdirSync(join(dir, "node_modules", peer, ".."), { recursive: true });
    symlinkSync(join(root, "node_modules", peer), join(dir, "node_modules", peer), "dir");
  }
  writeFileSync(join(dir, "tsconfig.json"), JSON.stringify(consumerTsconfig(kind), null, 2));
  writeFileSync(join(dir, "src", "main.ts"), consumerSource(kind));
  execFileSync(process.execPath, [tsc, "-p", dir], { cwd: dir, stdio: "inherit" });

  const schema = `pack_check_${kind === "commonjs" ? "cjs" : "esm"}_${process.pid}`;
  await admin(pgUrl, `CREATE SCHEMA "${schema}"`);
  try {
    const out = execFileSync(process.execPath, [join(dir, "dist", "main.js")], {
      cwd: dir,
      env: { ...process.env, PG_URL: pgUrl, SCHEMA: schema },
      encoding: "utf8",
    });
    console.log(
      `pack-check: ${kind === "commonjs" ? "CommonJS" : "ESM"} project, ${pkg.name}@${installed.version}: ${out.trim()}`,
    );
  } finally {
    await admin(pgUrl, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  }
}

/**
 * What each kind of project would use: node10 resolution as a default NestJS project has, nodenext
 * for ESM. The CommonJS project also type-checks every .d.ts it loads (ours against typeorm's,
 * ioredis' and pg's); once is enough, and it is the slowest step.
 */
function consumerTsconfig(kind: "commonjs" | "module") {
  return {
    compilerOptions: {
      target: "ES2022",
      ...(kind === "commonjs"
        ? { module: "commonjs", moduleResolution: "node" }
        : { module: "nodenext", moduleResolution: "nodenext" }),
      strict: true,
      experimentalDecorators: true,
      emitDecoratorMetadata: true,
      esModuleInterop: true,
      skipLibCheck: kind === "module",
      types: ["node"],
      outDir: "dist",
      rootDir: "src",
    },
    include: ["src"],
  };
}

function consumerSource(kind: "commonjs" | "module"): string {
  const sameInstance =
    kind === "module"
      ? `import { createRequire } from "node:module";
import autocache from "typeorm-autocache";
const required = createRequire(import.meta.url)("typeorm-autocache") as typeof autocache;
if (required.QueryCache !== QueryCache || autocache.QueryCache !== QueryCache) throw new Error("ESM and CommonJS loaded two copies");
`
      : "";
  return `import "reflect-metadata";
import { Column, DataSource, Entity, PrimaryGeneratedColumn, Repository } from "typeorm";
import { Cached, MemoryStore, QueryCache, QueryCacheSubscriber } from "typeorm-autocache";
${sameInstance}
@Entity()
class Note {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column()
  text!: string;
}

class NoteRepository extends Repository<Note> {
  @Cached(60)
  async texts(): Promise<string[]> {
    return (await this.find({ order: { id: "ASC" } })).map((note) => note.text);
  }
}

async function main(): Promise<void> {
  const dataSource = new DataSource({
    type: "postgres",
    url: process.env.PG_URL,
    schema: process.env.SCHEMA,
    entities: [Note],
    subscribers: [QueryCacheSubscriber],
    synchronize: true,
  });
  await dataSource.initialize();
  const cache = new QueryCache({ dataSource, store: new MemoryStore(), namespace: "pack-check" });
  try {
    const notes = new NoteRepository(Note, dataSource.manager);
    await notes.save(notes.create({ text: "first" }));
    const reads = [await notes.texts(), await notes.texts(), await notes.texts()];
    const { hits } = cache.stats();
    await notes.save(notes.create({ text: "second" }));
    const after = await notes.texts();
    if (hits < 1) throw new Error(\`no hit in three reads: \${JSON.stringify(cache.stats())}\`);
    if (reads.some((r) => r.join() !== "first") || after.join() !== "first,second") {
      throw new Error(\`wrong results: \${JSON.stringify({ reads, after })}\`);
    }
    console.log(\`read, hit (\${hits} of 3 reads) and fresh after a write: \${after.join(", ")}\`);
  } finally {
    await cache.close();
    await dataSource.destroy();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
`;
}

function npm(cwd: string, args: string[]): string {
  return execFileSync("npm", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
}

async function admin(pgUrl: string, sql: string): Promise<void> {
  const client = new Client({ connectionString: pgUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

main().catch((error: unknown) => {
  console.error(`pack-check: FAILED: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
