// Building one instance into the cache: take its key's lock, check again that no one
// built it meanwhile, run its step into a fresh work folder, commit the entry. The
// runner calls it for in-process execution and the `run-instance` command calls it
// inside a cluster job, so an entry is made the same way wherever it runs. Result rows
// stay in the entry (`_rows/`): loading them into DuckDB is the coordinator's business.
import type { ExpandedPipeline, Instance } from "./expand.ts";
import type { InputRef, InputValue, StepKind } from "./step.ts";
import type { KeyParts, Manifest, ManifestJob, Store } from "./store.ts";
import { ROWS_DIR } from "./store.ts";
import type { ResultsDb } from "./results.ts";
import { readRowFiles } from "./results.ts";
import type { Executor } from "./executor.ts";
import { withSharedLock } from "./shared_lock.ts";
import { createSink } from "./sink.ts";
import { stepErrorText } from "./errors.ts";
import type { Reporter } from "./progress.ts";
import { codePartsOf } from "./fingerprint.ts";

export interface BuildRequest {
  instance: Instance;
  key: string;
  parts: KeyParts;
  /** Rebuild even when an entry exists. */
  forced: boolean;
  /** Input name -> where the built upstream entries are. */
  inputs: Record<string, InputValue>;
  store: Store;
  /** Only read by steps that query results (plot); never written here. */
  results: ResultsDb;
  backend: string;
  seed: number;
  executor: Executor;
  reporter: Reporter;
  signal: AbortSignal;
  /** The scheduler job this build runs in, recorded in the manifest. */
  job?: ManifestJob;
  /** Lock options (a cluster job passes how to ask the scheduler about other jobs). */
  jobAlive?: (job: string) => Promise<boolean | null>;
}

export type BuildResult =
  | { status: "cached"; manifest: Manifest }
  | { status: "ok"; manifest: Manifest; started: Date }
  | { status: "failed" | "cancelled"; error: string; started: Date };

export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Where each input's built entry is, given the keys of the built upstream instances. */
export function inputRefsOf(
  instance: Instance,
  pipeline: ExpandedPipeline,
  keyOf: (id: string) => string,
  store: Store,
): Record<string, InputValue> {
  const refs: Record<string, InputValue> = {};
  for (const [name, ids] of Object.entries(instance.inputs)) {
    const toRef = (id: string): InputRef => {
      const up = pipeline.byId.get(id)!;
      const key = keyOf(id);
      return {
        key,
        step: up.kind.name,
        node: up.node,
        params: up.params,
        dir: store.entryDir(key),
      };
    };
    refs[name] = Array.isArray(ids) ? ids.map(toRef) : toRef(ids);
  }
  return refs;
}

/** Build `req.instance` into the cache (or find that someone else just did). */
export async function buildInstance(req: BuildRequest): Promise<BuildResult> {
  const { instance, key, parts, store, signal, reporter } = req;
  const kind: StepKind = instance.kind;
  const tables = kind.tables ?? {};
  return await withSharedLock(store.lockPath(key), async (): Promise<BuildResult> => {
    // Another process may have built it while this one waited for the lock (checked as
    // on every use: a damaged entry is rebuilt).
    const found = await store.inspect(key);
    const now = found.state === "ok" ? found.manifest : null;
    if (now && !req.forced) return { status: "cached", manifest: now };
    const outDir = await store.prepareWorkDir(key, kind.resumable === true);
    reporter.event(
      instance.label,
      "running",
      req.job ? `job ${req.job.id} on ${req.job.node}` : "",
    );
    const started = new Date();
    try {
      await req.executor.execute({
        kind,
        params: instance.params,
        inputs: req.inputs,
        ctx: {
          key,
          node: instance.node,
          outDir,
          backend: req.backend,
          seed: req.seed,
          results: createSink(kind.name, outDir, tables, req.results),
          progress: reporter.progressFor(instance.label),
          signal,
        },
      });
      if (signal.aborted) throw new Error("cancelled (interrupted)");
    } catch (e) {
      if (!kind.resumable) await store.discardWorkDir(key);
      if (signal.aborted) return { status: "cancelled", error: "cancelled (interrupted)", started };
      // A full disk or a read-only folder names the folder (Deno's message may not).
      return { status: "failed", error: stepErrorText(e, outDir), started };
    }
    const finished = new Date();
    const rows = await readRowFiles(`${outDir}/${ROWS_DIR}`);
    const manifest = await store.commit(key, {
      step: kind.name,
      node: instance.node,
      params: instance.params,
      inputs: Object.fromEntries(
        Object.entries(parts.inputs).map((
          [n, v],
        ) => [n, Array.isArray(v) ? v.map((x) => x.key) : v.key]),
      ),
      keyParts: parts,
      codeParts: codePartsOf(parts.code),
      started: started.toISOString(),
      finished: finished.toISOString(),
      duration_s: (finished.getTime() - started.getTime()) / 1000,
      backend: req.backend,
      seed: req.seed,
      host: Deno.hostname(),
      ...(req.job ? { job: req.job } : {}),
      rows: Object.fromEntries(Object.entries(rows).map(([t, r]) => [t, r.length])),
    });
    return { status: "ok", manifest, started };
  }, { signal, jobAlive: req.jobAlive });
}
