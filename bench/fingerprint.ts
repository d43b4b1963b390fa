// Code fingerprints of every step kind of the project (the code part of each cache key):
// - cold: in a fresh process, no cache of parsed modules (loads the TypeScript parser and
//   parses every module a step reaches: once after an edit);
// - cached: in a fresh process with the cache file a previous run wrote (a rerun);
// - warm: again in the same process (the per-process cache);
// against the baseline of the old byte fingerprint: reading and hashing the same files,
// in the same run. Goal: the cached fingerprint costs at most a few times the raw hash,
// and well under the 1 s budget of a no-op rerun.
//
//   deno run --allow-all bench/fingerprint.ts [--reps N]
import { Fingerprinter } from "../pipeline/fingerprint.ts";
import { sha256Hex } from "../pipeline/hash.ts";
import { STEP_KINDS } from "../steps/registry.ts";

const repsFlag = Deno.args.indexOf("--reps");
const REPS = repsFlag >= 0 ? Number(Deno.args[repsFlag + 1]) : 5;
const ROOT = new URL("../", import.meta.url).pathname;

function median(samples: number[]): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function fingerprintAll(fp: Fingerprinter): Promise<number> {
  const t0 = performance.now();
  for (const kind of STEP_KINDS) await fp.kind(kind);
  return performance.now() - t0;
}

if (Deno.args[0] === "--child") {
  // One fresh process: prints the milliseconds of fingerprinting every step kind.
  const cacheFile = Deno.args[1] === "-" ? undefined : Deno.args[1];
  console.log(await fingerprintAll(new Fingerprinter({ cacheFile })));
  Deno.exit(0);
}

async function child(cacheFile: string | undefined): Promise<number> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL(import.meta.url).pathname, "--child", cacheFile ?? "-"],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error("bench child failed");
  return Number(new TextDecoder().decode(out.stdout).trim());
}

/** Every .ts file of the project's source folders (what the byte fingerprint read). */
async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await sourceFiles(path));
    else if (e.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

const files = (await Promise.all(
  ["pipeline", "steps", "lm", "report"].map((d) => sourceFiles(`${ROOT}${d}`)),
)).flat();
const dir = await Deno.makeTempDir({ prefix: "bench-fingerprint-" });
try {
  const cacheFile = `${dir}/meanings.json`;
  const cold: number[] = [];
  const cached: number[] = [];
  const raw: number[] = [];
  for (let i = 0; i < REPS; i++) {
    cold.push(await child(undefined));
    await Deno.remove(cacheFile).catch(() => {});
    await child(cacheFile); // writes the cache file
    cached.push(await child(cacheFile));
    const t0 = performance.now();
    for (const f of files) sha256Hex(await Deno.readTextFile(f));
    raw.push(performance.now() - t0);
  }
  const fp = new Fingerprinter();
  await fingerprintAll(fp);
  const warm: number[] = [];
  for (let i = 0; i < REPS; i++) warm.push(await fingerprintAll(new Fingerprinter()));

  const ms = (x: number) => `${x.toFixed(1)} ms`;
  console.log(`code fingerprints of ${STEP_KINDS.length} step kinds (median of ${REPS}):`);
  console.log(`  cold (parser loaded, every module parsed)  ${ms(median(cold))}`);
  console.log(`  cached (fresh process, meanings file)      ${ms(median(cached))}`);
  console.log(`  warm (same process)                        ${ms(median(warm))}`);
  console.log(`  baseline: read + sha256 of ${files.length} source files  ${ms(median(raw))}`);
  console.log(
    `  ratio cached / baseline: ${(median(cached) / median(raw)).toFixed(2)}x ` +
      `(goal: well under the 1 s no-op rerun: ${median(cached) < 200 ? "met" : "NOT met"})`,
  );
} finally {
  await Deno.remove(dir, { recursive: true });
}
