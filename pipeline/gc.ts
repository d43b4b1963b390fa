// `gc [--dry-run] [--older-than AGE] [--keep-runs N]`: remove cache entries that no
// pipeline in the configs folder reaches and no recorded run reached, plus work folders
// that no config or recorded run would resume. Nothing a live lock protects is touched:
// gc takes each key's lock as a build would (the local flock and the cross-node owner
// file, breaking a stale owner), and names each entry it skips because it is in use.
//
// An entry is reachable when planning some config computes its key. Planning follows
// `run`: instances in order, each key from its params, code and its inputs' digests; an
// input whose entry is missing (removed by hand, damaged) gets the digest that its own
// downstream manifests recorded for it, since rebuilding it reproduces it, so what `run`
// would reuse is kept. Every (backend, seed) some entry was built with is planned too,
// so entries made with `--backend` / `--seed` overrides are kept. The work folder of an
// interrupted resumable step (training) is kept when a config reaches its key. A config
// that fails to load stops gc: deleting on a partial view could lose wanted entries.
// Recorded runs (run_records.ts) add the keys their instances had, as they were.
import { expandPipeline } from "./expand.ts";
import { loadConfig } from "./config.ts";
import { keyPartsOf } from "./runner.ts";
import type { ExpandedPipeline } from "./expand.ts";
import type { ResultsDb } from "./results.ts";
import { cacheKey, type KeyParts, type Manifest, type Store } from "./store.ts";
import type { StepKind } from "./step.ts";
import { Fingerprinter } from "./fingerprint.ts";
import { describeOwner, type LockOwner, trySharedLock, whoHolds } from "./shared_lock.ts";
import { slurmJobAlive } from "./executors/slurm_commands.ts";
import { chooseRuns, commandLine, readRunRecords, type RunCut } from "./run_records.ts";
import { formatBytes } from "./status.ts";
import { UserError } from "./errors.ts";

export interface GcOptions {
  store: Store;
  results: ResultsDb;
  kinds: StepKind[];
  configsDir: string;
  backendVersion: (name: string) => string;
  defaultBackend: string;
  dryRun: boolean;
  /** Which recorded runs count (default: the newest complete run of each command line). */
  runs?: RunCut;
  /** Whether a scheduler job holding a lock still runs (default: ask Slurm). */
  jobAlive?: (job: string) => Promise<boolean | null>;
}

export interface GcReport {
  removed: { path: string; bytes: number; why: string }[];
  kept: number;
  text: string;
}

async function configFiles(dir: string): Promise<string[]> {
  const files: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && /\.(ya?ml|json)$/.test(e.name)) files.push(`${dir}/${e.name}`);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UserError(`gc: no configs folder ${dir}`);
    throw e;
  }
  return files.sort();
}

/** Key -> why it is kept: the first config or recorded run that reaches it. */
interface Plan {
  /** Keys planning computed or runs recorded (whether or not their entries exist). */
  reachable: Map<string, string>;
  /** Of those, the keys of resumable steps (their work folders hold progress). */
  resumable: Map<string, string>;
}

function keep(plan: Plan, key: string, why: string, resumable: boolean): void {
  if (!plan.reachable.has(key)) plan.reachable.set(key, why);
  if (resumable && !plan.resumable.has(key)) plan.resumable.set(key, why);
}

/** Plan `pipeline` like `run` would, adding every key it computes to `plan`. */
async function planKeys(
  pipeline: ExpandedPipeline,
  combo: { backend: string; seed: number },
  opts: GcOptions,
  digests: Map<string, string>,
  fingerprinter: Fingerprinter,
  plan: Plan,
  why: string,
): Promise<void> {
  const upstream = new Map<string, { key: string; digest: string } | null>();
  const keyOpts = { ...combo, backendVersion: opts.backendVersion };
  for (const instance of pipeline.instances) {
    const parts = await keyPartsOf(instance, upstream, keyOpts, fingerprinter);
    if (parts.inputs === null) {
      upstream.set(instance.id, null); // an input no entry or manifest can vouch for
      continue;
    }
    const key = cacheKey(parts as KeyParts);
    keep(plan, key, why, instance.kind.resumable === true);
    const digest = digests.get(key);
    upstream.set(instance.id, digest ? { key, digest } : null);
  }
}

function ignoreNotFound(e: unknown): void {
  if (!(e instanceof Deno.errors.NotFound)) throw e;
}

/**
 * Hold `key`'s lock while removing what it protects, or learn who holds it. A dry run
 * only looks: it takes nothing and breaks no stale owner file.
 */
async function holdKey(
  opts: GcOptions,
  key: string,
): Promise<{ release: () => Promise<void> } | { holder: LockOwner | null }> {
  const path = opts.store.lockPath(key);
  const jobAlive = opts.jobAlive ?? slurmJobAlive;
  if (!opts.dryRun) return await trySharedLock(path, { jobAlive });
  const held = await whoHolds(path, { jobAlive });
  return held ? { holder: held.owner } : { release: () => Promise.resolve() };
}

/** Each config's keys, then each counted recorded run's (newest first). */
async function planAll(opts: GcOptions, keys: string[]): Promise<{
  plan: Plan;
  droppedRuns: { path: string; why: string }[];
}> {
  const { store } = opts;
  const combos = new Map<string, { backend: string; seed: number }>();
  // Each key's output digest: from its own manifest, or as its users recorded it.
  const digests = new Map<string, string>();
  const recorded = new Map<string, string>();
  for (const key of keys) {
    const m: Manifest | null = await store.readManifest(key);
    if (!m) continue;
    combos.set(`${m.backend}\u0000${m.seed}`, { backend: m.backend, seed: m.seed });
    digests.set(key, m.digest);
    for (const input of Object.values(m.keyParts?.inputs ?? {})) {
      for (const ref of Array.isArray(input) ? input : [input]) recorded.set(ref.key, ref.digest);
    }
  }
  for (const [key, digest] of recorded) if (!digests.has(key)) digests.set(key, digest);

  const fingerprinter = new Fingerprinter({ cacheFile: `${store.root}/.code-meanings.json` });
  const plan: Plan = { reachable: new Map(), resumable: new Map() };
  for (const file of await configFiles(opts.configsDir)) {
    const config = await loadConfig(file);
    const asWritten = expandPipeline(config, opts.kinds);
    const own = {
      backend: asWritten.defaults.backend ?? opts.defaultBackend,
      seed: asWritten.defaults.seed ?? 0,
    };
    for (const [i, combo] of [own, ...combos.values()].entries()) {
      // The file's own seeds first, then each seed an entry was built with (--seed N).
      const pipeline = i === 0 ? asWritten : expandPipeline(config, opts.kinds, {
        seeds: [combo.seed],
      });
      await planKeys(pipeline, combo, opts, digests, fingerprinter, plan, `config ${file}`);
    }
  }
  const runs = chooseRuns(await readRunRecords(store.root), opts.runs ?? {});
  for (const { record } of runs.counted.toReversed()) {
    const when = `${record.finished.slice(0, 16).replace("T", " ")} UTC`;
    const why = `recorded run of ${when}: ${commandLine(record)}`;
    const resumable = new Set(record.resumable);
    for (const key of record.keys) keep(plan, key, why, resumable.has(key));
  }
  return { plan, droppedRuns: runs.dropped };
}

export async function collectGarbage(opts: GcOptions): Promise<GcReport> {
  const { store, dryRun } = opts;
  await store.init();
  const keys = await store.listKeys();
  const { plan, droppedRuns } = await planAll(opts, keys);
  const verb = dryRun ? "would remove" : "removed";
  const lines: string[] = [];

  // Why each kept group is kept, in the order configs and runs were planned.
  const groups = new Map<string, { count: number; bytes: number }>();
  for (const why of plan.reachable.values()) groups.set(why, { count: 0, bytes: 0 });
  for (const key of keys) {
    const group = groups.get(plan.reachable.get(key) ?? "");
    if (!group) continue;
    group.count++;
    group.bytes += await store.sizeOf(store.entryDir(key));
  }
  for (const [why, g] of groups) {
    const entries = g.count === 1 ? "1 entry" : `${g.count} entries`;
    if (g.count) lines.push(`keep ${entries} (${formatBytes(g.bytes)}): ${why}`);
  }

  const removed: GcReport["removed"] = [];
  /** Remove `path` under `key`'s lock; false when a live lock keeps it. */
  const removeLocked = async (key: string, path: string, why: string): Promise<boolean> => {
    const held = await holdKey(opts, key);
    if ("holder" in held) {
      lines.push(`skipped ${path}: in use by ${describeOwner(held.holder)}`);
      return false;
    }
    try {
      removed.push({ path, bytes: await store.sizeOf(path), why });
      if (!dryRun) await Deno.remove(path, { recursive: true });
      return true;
    } finally {
      await held.release();
    }
  };
  const forgotten: string[] = [];
  for (const key of keys.filter((k) => !plan.reachable.has(k))) {
    if (await removeLocked(key, store.entryDir(key), "unreachable") && !dryRun) {
      forgotten.push(key);
    }
  }
  for await (const e of Deno.readDir(store.tmpDir)) {
    const path = `${store.tmpDir}/${e.name}`;
    const resumeWhy = plan.resumable.get(e.name);
    if (resumeWhy) lines.push(`keep ${path}: resume folder (${resumeWhy})`);
    else await removeLocked(e.name, path, "stale work folder");
  }
  for await (const e of Deno.readDir(store.trashDir)) {
    const path = `${store.trashDir}/${e.name}`;
    removed.push({ path, bytes: await store.sizeOf(path), why: "trash" });
    if (!dryRun) await Deno.remove(path, { recursive: true });
  }
  if (forgotten.length) {
    await opts.results.forgetInstances(forgotten);
    await opts.results.flush();
  }
  for (const run of droppedRuns) {
    lines.push(`${dryRun ? "would drop" : "dropped"} run record ${run.path} (${run.why})`);
    if (!dryRun) await Deno.remove(run.path).catch(ignoreNotFound);
  }
  if (!dryRun) {
    const left = new Set(await store.listKeys());
    for await (const e of Deno.readDir(store.stampsDir)) {
      const key = e.name.replace(/\.json$/, "");
      if (!left.has(key)) await store.dropStamps(key);
    }
  }

  const total = removed.reduce((s, r) => s + r.bytes, 0);
  lines.push(...removed.map((r) => `${verb} ${r.path} (${formatBytes(r.bytes)}, ${r.why})`));
  const kept = keys.length - removed.filter((r) => r.why === "unreachable").length;
  lines.push(`${verb} ${removed.length} folders, ${formatBytes(total)}; kept ${kept} entries`);
  return { removed, kept, text: lines.join("\n") };
}
