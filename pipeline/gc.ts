// `gc [--dry-run]`: remove cache entries that no pipeline in the configs folder reaches,
// plus work folders that no running process holds. Reachability is computed like a
// dry run, for every config and every (backend, seed) that some entry was built with,
// so entries made with `--backend` / `--seed` overrides are kept. A config that fails to
// load stops gc: deleting on a partial view could lose wanted entries.
import { expandPipeline } from "./expand.ts";
import { loadConfig } from "./config.ts";
import { runPipeline } from "./runner.ts";
import type { ResultsDb } from "./results.ts";
import type { Store } from "./store.ts";
import type { StepKind } from "./step.ts";
import { Fingerprinter } from "./fingerprint.ts";
import { tryFileLock } from "./lock.ts";
import { formatBytes, silentReporter } from "./status.ts";
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

export async function collectGarbage(opts: GcOptions): Promise<GcReport> {
  const { store } = opts;
  await store.init();
  const keys = await store.listKeys();
  const combos = new Map<string, { backend: string; seed: number }>();
  for (const key of keys) {
    const m = await store.readManifest(key).catch(() => null);
    if (m) combos.set(`${m.backend}\u0000${m.seed}`, { backend: m.backend, seed: m.seed });
  }
  const fingerprinter = new Fingerprinter();
  const reachable = new Set<string>();
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
      const summary = await runPipeline({
        pipeline,
        store,
        results: opts.results,
        backend: combo.backend,
        backendVersion: opts.backendVersion,
        seed: combo.seed,
        jobs: 1,
        force: [],
        dryRun: true,
        reporter: silentReporter,
        signal: new AbortController().signal,
        fingerprinter,
      });
      for (const o of summary.outcomes) if (o.status === "cached" && o.key) reachable.add(o.key);
    }
  }

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
  if (forgotten.length) await opts.results.forgetInstances(forgotten);

  const total = removed.reduce((s, r) => s + r.bytes, 0);
  const verb = opts.dryRun ? "would remove" : "removed";
  const lines = removed.map((r) => `${verb} ${r.path} (${formatBytes(r.bytes)}, ${r.why})`);
  const kept = keys.length - removed.filter((r) => r.why === "unreachable").length;
  lines.push(`${verb} ${removed.length} folders, ${formatBytes(total)}; kept ${kept} entries`);
  return { removed, kept, text: lines.join("\n") };
}
