// Runs an expanded pipeline: every instance, in topological order, either found in the
// cache or executed (at most `jobs` at once). Each instance waits for its inputs; once
// they are built, its cache key is computed from their digests. A failure fails only
// its descendants (they are skipped); everything else goes on. Ctrl-C aborts the
// signal: running steps see it, nothing new starts, no partial entry is left.
import type { Instance } from "./expand.ts";
import type { ExpandedPipeline } from "./expand.ts";
import type { StepKind } from "./step.ts";
import { cacheKey, type KeyParts, type Manifest, type Store } from "./store.ts";
import type { ResultsDb, RunRecord } from "./results.ts";
import { Fingerprinter } from "./fingerprint.ts";
import {
  type ClusterExecutor,
  type ClusterResult,
  type Executor,
  inProcessExecutor,
  isClusterExecutor,
} from "./executor.ts";
import { buildInstance, type BuildResult, errorText, inputRefsOf } from "./build.ts";
import type { Reporter } from "./progress.ts";
import { estimateSuffix, Explainer, type PartialKeyParts } from "./explain.ts";
import { hashFile } from "./hash.ts";

export type OutcomeStatus =
  | "cached"
  | "ok"
  | "failed"
  | "skipped"
  | "cancelled"
  | "would-run";

export interface Outcome {
  instance: Instance;
  status: OutcomeStatus;
  /** Cache key; null when an input was not built (skipped, or a dry run upstream). */
  key: string | null;
  manifest?: Manifest;
  /** Why it would run (dry run) or why it was skipped. */
  reasons?: string[];
  error?: string;
}

export interface RunOptions {
  pipeline: ExpandedPipeline;
  store: Store;
  results: ResultsDb;
  /** Backend name, and what its numbers depend on (libraries, versions): both go into keys. */
  backend: string;
  backendVersion: (name: string) => string;
  seed: number;
  /** Most instances executing at once. */
  jobs: number;
  /** Node names or step kinds to rerun even when cached. */
  force: string[];
  dryRun: boolean;
  reporter: Reporter;
  signal: AbortSignal;
  /** In-process by default; a ClusterExecutor builds each instance in a job. */
  executor?: Executor | ClusterExecutor;
  fingerprinter?: Fingerprinter;
  /** Told each instance's cache key as soon as it is known (not in a dry run). */
  onKey?: (key: string, instance: Instance) => void;
}

export interface RunSummary {
  outcomes: Outcome[];
  /** Instances whose step ran successfully in this run. */
  executed: number;
  cached: number;
  failed: Outcome[];
  skipped: number;
  cancelled: number;
}

/** A counting semaphore for the `--jobs` pool. */
class Pool {
  #free: number;
  #waiting: (() => void)[] = [];
  constructor(size: number) {
    this.#free = Math.max(1, size);
  }
  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }
  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#free++;
  }
}

/** sha256 of every file under the given paths (folders walked, sorted), by path. */
async function hashPaths(paths: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const visit = async (path: string): Promise<void> => {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch {
      out[path] = "missing"; // the step itself reports the missing file clearly
      return;
    }
    if (info.isDirectory) {
      const names: string[] = [];
      for await (const e of Deno.readDir(path)) names.push(e.name);
      for (const name of names.sort()) await visit(`${path}/${name}`);
    } else {
      out[path] = (await hashFile(path)).sha256;
    }
  };
  for (const p of paths) await visit(p);
  return out;
}

/** Key parts of an instance given its built inputs (null inputs: not all built). */
export async function keyPartsOf(
  instance: Instance,
  upstream: Map<string, { key: string; digest: string } | null>,
  opts: Pick<RunOptions, "backend" | "backendVersion" | "seed">,
  fingerprinter: Fingerprinter,
): Promise<PartialKeyParts> {
  const kind = instance.kind;
  let inputs: KeyParts["inputs"] | null = {};
  for (const [name, ids] of Object.entries(instance.inputs)) {
    const refs = (Array.isArray(ids) ? ids : [ids]).map((id) => upstream.get(id) ?? null);
    if (refs.some((r) => r === null)) {
      inputs = null;
      break;
    }
    const built = refs as { key: string; digest: string }[];
    inputs[name] = Array.isArray(ids) ? built : built[0];
  }
  const files = kind.files ? await hashPaths(kind.files(instance.params)) : undefined;
  return {
    step: kind.name,
    code: await fingerprinter.kind(kind),
    ...(files ? { files } : {}),
    params: instance.params,
    inputs,
    backend: kind.uses?.backend === false
      ? null
      : `${opts.backend}@${opts.backendVersion(opts.backend)}`,
    seed: kind.uses?.seed === false ? null : instance.seed ?? opts.seed,
  };
}

function isForced(instance: Instance, force: string[]): boolean {
  return force.includes(instance.node) || force.includes(instance.kind.name);
}

export async function runPipeline(opts: RunOptions): Promise<RunSummary> {
  const { pipeline, store, results, reporter, signal } = opts;
  const executor = opts.executor ?? inProcessExecutor;
  const fingerprinter = opts.fingerprinter ?? new Fingerprinter();
  const explainer = new Explainer(store);
  const pool = new Pool(opts.jobs);
  await store.init();
  // Which entries already have their rows in results.duckdb (one short open).
  results.onNotice = (message) => reporter.line(`warning: ${message}`);
  const loaded = opts.dryRun ? new Set<string>() : await results.loadedKeys();

  const outcomes = new Map<string, Promise<Outcome>>();
  const built = new Map<string, { key: string; digest: string; manifest: Manifest } | null>();

  const inputRefs = (instance: Instance) =>
    inputRefsOf(instance, pipeline, (id) => built.get(id)!.key, store);

  const settle = async (instance: Instance): Promise<Outcome> => {
    const upstreamIds = Object.values(instance.inputs).flat();
    const ups = await Promise.all(upstreamIds.map((id) => outcomes.get(id)!));
    const blocked = ups.filter((o) => o.status !== "ok" && o.status !== "cached");
    const upstreamMap = new Map<string, { key: string; digest: string } | null>();
    for (const id of upstreamIds) {
      const b = built.get(id);
      upstreamMap.set(id, b ? { key: b.key, digest: b.digest } : null);
    }

    if (blocked.some((o) => o.status !== "would-run")) {
      const cause = blocked.find((o) => o.status !== "would-run")!;
      const status = signal.aborted ? "cancelled" : "skipped";
      const outcome: Outcome = {
        instance,
        status,
        key: null,
        reasons: [`input ${cause.instance.label} ${cause.status}`],
      };
      reporter.event(
        instance.label,
        status === "cancelled" ? "skipped" : status,
        outcome.reasons![0],
      );
      return outcome;
    }

    const parts = await keyPartsOf(instance, upstreamMap, opts, fingerprinter);
    const forced = isForced(instance, opts.force);
    if (parts.inputs === null) {
      // Dry run with an upstream that would run: this one would run too.
      const reasons = forced ? ["forced"] : await explainer.reasons(instance.node, parts);
      const estimate = await estimateSuffix(instance.kind, instance.params, null, {
        backend: opts.backend,
        artifacts: store.root,
      });
      reporter.line(`would run ${instance.label}: ${reasons.join(", ")}${estimate}`);
      return { instance, status: "would-run", key: null, reasons };
    }
    const key = cacheKey(parts as KeyParts);
    if (!opts.dryRun) opts.onKey?.(key, instance);
    // Checked on every use (sizes and file stamps): a damaged entry is rebuilt, never used.
    const found = await store.inspect(key);
    const existing = found.state === "ok" ? found.manifest : null;
    const damaged = found.state === "damaged"
      ? `cache entry damaged (${found.reason}), ${opts.dryRun ? "would be rebuilt" : "rebuilt"}`
      : null;
    if (damaged && !opts.dryRun) {
      reporter.line(`${instance.label} (${key.slice(0, 12)}): ${damaged}`);
    }

    if (existing && !forced) {
      built.set(instance.id, { key, digest: existing.digest, manifest: existing });
      if (opts.dryRun) reporter.line(`cached    ${instance.label} (${key.slice(0, 12)})`);
      else {
        try {
          if (!loaded.has(key)) {
            await results.loadInstance(key, instance.kind.tables ?? {}, store.entryDir(key));
          }
          await instance.kind.publish?.(store.entryDir(key), instance.params, store.root);
        } catch (e) {
          // A one-line failure of this instance, not a crash of the run.
          const error = `cached, but ${errorText(e)}`;
          reporter.event(instance.label, "failed", error);
          return { instance, status: "failed", key, manifest: existing, error };
        }
      }
      return { instance, status: "cached", key, manifest: existing };
    }
    if (opts.dryRun) {
      const reasons = forced
        ? ["forced"]
        : damaged
        ? [damaged]
        : await explainer.reasons(instance.node, parts);
      const estimate = await estimateSuffix(instance.kind, instance.params, inputRefs(instance), {
        backend: opts.backend,
        artifacts: store.root,
      });
      reporter.line(
        `would run ${instance.label} (${key.slice(0, 12)}): ${reasons.join(", ")}${estimate}`,
      );
      return { instance, status: "would-run", key, reasons };
    }
    if (signal.aborted) {
      return { instance, status: "cancelled", key };
    }

    await pool.acquire();
    try {
      if (signal.aborted) return { instance, status: "cancelled", key };
      return await execute(instance, key, parts as KeyParts, forced);
    } finally {
      pool.release();
    }
  };

  const execute = async (
    instance: Instance,
    key: string,
    parts: KeyParts,
    forced: boolean,
  ): Promise<Outcome> => {
    const kind: StepKind = instance.kind;
    const tables = kind.tables ?? {};
    const result = isClusterExecutor(executor)
      ? await executor.build({
        instance,
        key,
        upstream: Object.fromEntries(
          Object.values(instance.inputs).flat().map((id) => [id, built.get(id)!.key]),
        ),
        forced,
        reporter,
        signal,
      })
      : await buildInstance({
        instance,
        key,
        parts,
        forced,
        inputs: inputRefs(instance),
        store,
        results,
        backend: opts.backend,
        seed: instance.seed ?? opts.seed,
        executor,
        reporter,
        signal,
      });
    const { outcome, run, detail } = outcomeOf(instance, key, result);
    if (outcome.manifest) {
      built.set(instance.id, { key, digest: outcome.manifest.digest, manifest: outcome.manifest });
    }
    if (outcome.status === "failed" || outcome.status === "cancelled") {
      reporter.event(instance.label, "failed", outcome.error);
    }

    try {
      if (outcome.status === "ok") {
        await results.loadInstance(key, tables, store.entryDir(key));
        reporter.event(instance.label, "ok", detail);
      } else if (outcome.status === "cached") {
        if (!loaded.has(key)) {
          await results.loadInstance(key, tables, store.entryDir(key));
        }
      } else if (run) {
        await results.recordRun(run);
      }
      if ((outcome.status === "ok" || outcome.status === "cached") && kind.publish) {
        await kind.publish(store.entryDir(key), instance.params, store.root);
      }
    } catch (e) {
      const error = `results not stored: ${errorText(e)}`;
      reporter.event(instance.label, "failed", error);
      return { ...outcome, status: "failed", error };
    }
    return outcome;
  };

  const outcomeOf = (
    instance: Instance,
    key: string,
    result: BuildResult | ClusterResult,
  ): { outcome: Outcome; run: RunRecord | null; detail?: string } => {
    const kind = instance.kind;
    const detail = "detail" in result ? result.detail : undefined;
    if (result.status === "cached") {
      return { outcome: { instance, status: "cached", key, manifest: result.manifest }, run: null };
    }
    if (!("error" in result)) {
      // Its `runs` row is read from the manifest when the entry is loaded.
      return {
        outcome: { instance, status: "ok", key, manifest: result.manifest },
        run: null,
        detail,
      };
    }
    const base = { key, step_kind: kind.name, node: instance.node, params: instance.params };
    const error = signal.aborted ? "cancelled (interrupted)" : result.error;
    const started = "started" in result ? result.started : new Date();
    const run: RunRecord = {
      ...base,
      status: "failed",
      started,
      duration_s: (Date.now() - started.getTime()) / 1000,
      error,
    };
    const status = signal.aborted ? "cancelled" : "failed";
    return { outcome: { instance, status, key, error }, run };
  };

  for (const instance of pipeline.instances) outcomes.set(instance.id, settle(instance));
  const all = await Promise.all(pipeline.instances.map((i) => outcomes.get(i.id)!));
  // Every row written is in results.duckdb before the run ends.
  if (!opts.dryRun) await results.flush();
  return {
    outcomes: all,
    executed: all.filter((o) => o.status === "ok").length,
    cached: all.filter((o) => o.status === "cached").length,
    failed: all.filter((o) => o.status === "failed"),
    skipped: all.filter((o) => o.status === "skipped").length,
    cancelled: all.filter((o) => o.status === "cancelled").length,
  };
}
