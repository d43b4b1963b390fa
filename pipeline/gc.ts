// `gc [--dry-run]`: remove cache entries that no pipeline in the configs folder reaches,
// plus work folders that no running process holds and no config would resume.
//
// An entry is reachable when planning some config computes its key. Planning follows
// `run`: instances in order, each key from its params, code and its inputs' digests; an
// input whose entry is missing (removed by hand, damaged) gets the digest that its own
// downstream manifests recorded for it, since rebuilding it reproduces it, so what `run`
// would reuse is kept. Every (backend, seed) some entry was built with is planned too,
// so entries made with `--backend` / `--seed` overrides are kept. The work folder of an
// interrupted resumable step (training) is kept when a config reaches its key. A config
// that fails to load stops gc: deleting on a partial view could lose wanted entries.
import { expandPipeline } from "./expand.ts";
import { loadConfig } from "./config.ts";
import { keyPartsOf } from "./runner.ts";
import type { ExpandedPipeline } from "./expand.ts";
import type { ResultsDb } from "./results.ts";
import { cacheKey, type KeyParts, type Manifest, type Store } from "./store.ts";
import type { StepKind } from "./step.ts";
import { Fingerprinter } from "./fingerprint.ts";
import { tryFileLock } from "./lock.ts";
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

interface Plan {
  /** Keys planning computed (whether or not their entries exist). */
  reachable: Set<string>;
  /** Of those, the keys of resumable steps (their work folders hold progress). */
  resumable: Set<string>;
}

/** Plan `pipeline` like `run` would, adding every key it computes to `plan`. */
async function planKeys(
  pipeline: ExpandedPipeline,
  combo: { backend: string; seed: number },
  opts: GcOptions,
  digests: Map<string, string>,
  fingerprinter: Fingerprinter,
  plan: Plan,
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
    plan.reachable.add(key);
    if (instance.kind.resumable) plan.resumable.add(key);
    const digest = digests.get(key);
    upstream.set(instance.id, digest ? { key, digest } : null);
  }
}

export async function collectGarbage(opts: GcOptions): Promise<GcReport> {
  const { store } = opts;
  await store.init();
  const keys = await store.listKeys();
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

  const fingerprinter = new Fingerprinter({ cacheFile: `${opts.store.root}/.code-meanings.json` });
  const plan: Plan = { reachable: new Set(), resumable: new Set() };
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
      await planKeys(pipeline, combo, opts, digests, fingerprinter, plan);
    }
  }
  const reachable = plan.reachable;

  const removed: GcReport["removed"] = [];
  const unreachable = keys.filter((k) => !reachable.has(k));
  const forgotten: string[] = [];
  for (const key of unreachable) {
    const dir = store.entryDir(key);
    const release = await tryFileLock(store.lockPath(key));
    if (!release) continue; // being rebuilt by a running process right now
    try {
      removed.push({ path: dir, bytes: await store.sizeOf(dir), why: "unreachable" });
      if (!opts.dryRun) {
        await Deno.remove(dir, { recursive: true });
        forgotten.push(key);
      }
    } finally {
      release();
    }
  }
  for (const [parent, why] of [[store.tmpDir, "stale work folder"], [store.trashDir, "trash"]]) {
    for await (const e of Deno.readDir(parent)) {
      const path = `${parent}/${e.name}`;
      if (parent === store.tmpDir && plan.resumable.has(e.name)) continue; // resumes there
      const release = parent === store.tmpDir
        ? await tryFileLock(store.lockPath(e.name))
        : () => {};
      if (!release) continue; // a running process is writing it
      try {
        removed.push({ path, bytes: await store.sizeOf(path), why });
        if (!opts.dryRun) await Deno.remove(path, { recursive: true });
      } finally {
        release();
      }
    }
  }
  if (forgotten.length) {
    await opts.results.forgetInstances(forgotten);
    await opts.results.flush();
  }
  if (!opts.dryRun) {
    const left = new Set(await store.listKeys());
    for await (const e of Deno.readDir(store.stampsDir)) {
      const key = e.name.replace(/\.json$/, "");
      if (!left.has(key)) await store.dropStamps(key);
    }
  }

  const total = removed.reduce((s, r) => s + r.bytes, 0);
  const verb = opts.dryRun ? "would remove" : "removed";
  const lines = removed.map((r) => `${verb} ${r.path} (${formatBytes(r.bytes)}, ${r.why})`);
  const kept = keys.length - removed.filter((r) => r.why === "unreachable").length;
  lines.push(`${verb} ${removed.length} folders, ${formatBytes(total)}; kept ${kept} entries`);
  return { removed, kept, text: lines.join("\n") };
}
