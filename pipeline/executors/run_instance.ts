// `run-instance <pipeline> --instance ID --key KEY --artifacts DIR ...`: build one
// instance of a pipeline into the cache and exit. This is what a cluster job runs. It
// plans the instance with the same code as the coordinator (expand the pipeline, key
// each ancestor from the digests of its committed entry) and refuses to run when the
// key differs from the one the coordinator submitted: the config, the code or an
// input changed in between, and the entry would not be the one the coordinator waits
// for. The entry's manifest records the job (id and node). Results rows stay in the
// entry: the coordinator loads them into DuckDB; this process never writes it.
import type { ExpandedPipeline, Instance } from "../expand.ts";
import { cacheKey, type KeyParts, type ManifestJob, type Store } from "../store.ts";
import { keyPartsOf, type RunOptions } from "../runner.ts";
import { Fingerprinter } from "../fingerprint.ts";
import { buildInstance, inputRefsOf } from "../build.ts";
import { inProcessExecutor } from "../executor.ts";
import { createReporter } from "../progress.ts";
import { UserError } from "../errors.ts";
import { slurmJobAlive } from "./slurm_commands.ts";

export const RUN_INSTANCE_USAGE =
  "run-instance <pipeline> --instance ID --key KEY [--artifacts DIR] [--set ...] " +
  "[--backend NAME] [--seed N] [--inputs FILE] [--force NODE]";

export interface PlannedInstance {
  instance: Instance;
  key: string;
  parts: KeyParts;
  /** Instance id -> key of every ancestor (all committed). */
  upstreamKeys: Map<string, string>;
}

/**
 * Compute `id`'s key from the committed entries of its inputs: those named in
 * `upstream` (instance id -> key, what the coordinator built), else keyed here from
 * their own ancestors. Given keys make the job independent of edits to upstream code
 * made after the coordinator built those entries.
 */
export async function planInstance(
  pipeline: ExpandedPipeline,
  id: string,
  store: Store,
  opts: { backend: string; backendVersion: (name: string) => string; seed: number },
  fingerprinter = new Fingerprinter(),
  upstream: Record<string, string> = {},
): Promise<PlannedInstance> {
  const instance = pipeline.byId.get(id);
  if (!instance) {
    throw new UserError(
      `${pipeline.file}: no instance ${id}: the pipeline file or a step's params changed ` +
        `since the job was submitted`,
    );
  }
  const built = new Map<string, Promise<{ key: string; digest: string }>>();
  const upstreamKeys = new Map<string, string>();
  const partsOf = async (inst: Instance) => {
    const ids = Object.values(inst.inputs).flat();
    const ups = new Map(await Promise.all(ids.map(async (u) => [u, await builtOf(u)] as const)));
    return await keyPartsOf(inst, ups, opts, fingerprinter) as KeyParts;
  };
  const builtOf = (upId: string): Promise<{ key: string; digest: string }> => {
    let b = built.get(upId);
    if (!b) {
      b = (async () => {
        const up = pipeline.byId.get(upId);
        if (!up) throw new UserError(`${pipeline.file}: no input instance ${upId}`);
        const key = upstream[upId] ?? cacheKey(await partsOf(up));
        const manifest = await store.readManifest(key);
        if (!manifest) {
          throw new UserError(
            `input ${up.label} (key ${key.slice(0, 12)}) is not in the cache` +
              (upstream[upId] ? "" : ": its code, params or inputs changed since it was built"),
          );
        }
        upstreamKeys.set(upId, key);
        return { key, digest: manifest.digest };
      })();
      built.set(upId, b);
    }
    return b;
  };
  const parts = await partsOf(instance);
  return { instance, key: cacheKey(parts), parts, upstreamKeys };
}

/** The job this process runs in, from Slurm's environment (null outside a job). */
export function jobFromEnv(): ManifestJob | null {
  const id = Deno.env.get("SLURM_JOB_ID");
  if (!id) return null;
  return { executor: "slurm", id, node: Deno.env.get("SLURMD_NODENAME") ?? Deno.hostname() };
}

/** What `run` takes for the whole pipeline, and which instance to build. */
export interface RunInstanceOptions extends
  Pick<
    RunOptions,
    | "pipeline"
    | "store"
    | "results"
    | "backend"
    | "backendVersion"
    | "seed"
    | "signal"
    | "fingerprinter"
    | "force"
  > {
  /** `--instance`: the instance's id in the expanded pipeline. */
  instance: string | undefined;
  /** `--key`: the key the coordinator computed for it. */
  key: string | undefined;
  /** `--inputs`: a JSON file, instance id -> key of each input's committed entry. */
  inputs?: string;
}

/**
 * The `run-instance` command, after the CLI has read the pipeline the way `run` does
 * (same file, `--set` overrides, backend and seed). Returns the exit code: 0 built or
 * already cached, 1 the step failed, 130 cancelled.
 */
export async function runInstance(opts: RunInstanceOptions): Promise<number> {
  if (!opts.instance || !opts.key) {
    throw new UserError(`run-instance: missing --instance and --key\nusage: ${RUN_INSTANCE_USAGE}`);
  }
  const { pipeline, store, backend, seed } = opts;
  await store.init();
  let upstream: Record<string, string> = {};
  if (opts.inputs) {
    try {
      upstream = JSON.parse(await Deno.readTextFile(opts.inputs));
    } catch (e) {
      throw new UserError(`--inputs ${opts.inputs}: ${(e as Error).message}`);
    }
  }
  const plan = await planInstance(
    pipeline,
    opts.instance,
    store,
    opts,
    opts.fingerprinter,
    upstream,
  );
  const label = plan.instance.label;
  if (plan.key !== opts.key) {
    throw new UserError(
      `${label}: key mismatch: this job computes ${plan.key.slice(0, 12)}, the coordinator ` +
        `submitted ${opts.key.slice(0, 12)} (the pipeline file, the code or an input ` +
        `changed since submission, or the nodes run another version of the project)`,
    );
  }
  const reporter = createReporter({ live: false });
  const job = jobFromEnv();
  // scancel and a job's time limit send SIGTERM: stop the step as Ctrl-C would, so the
  // key's lock is released and a non-resumable work folder removed before Slurm's KILL.
  const stop = new AbortController();
  const onTerm = () => {
    reporter.line(`${label}: SIGTERM: stopping`);
    stop.abort();
  };
  opts.signal.addEventListener("abort", () => stop.abort(), { once: true });
  if (opts.signal.aborted) stop.abort();
  const handleTerm = Deno.build.os !== "windows";
  if (handleTerm) Deno.addSignalListener("SIGTERM", onTerm);
  try {
    const result = await buildInstance({
      instance: plan.instance,
      key: plan.key,
      parts: plan.parts,
      forced: opts.force.includes(plan.instance.node) ||
        opts.force.includes(plan.instance.kind.name),
      inputs: inputRefsOf(plan.instance, pipeline, (id) => plan.upstreamKeys.get(id)!, store),
      store,
      results: opts.results,
      backend,
      seed: plan.instance.seed ?? seed,
      executor: inProcessExecutor,
      reporter,
      signal: stop.signal,
      ...(job ? { job } : {}),
      jobAlive: slurmJobAlive,
    });
    switch (result.status) {
      case "cached":
        reporter.line(`cached  ${label} (${plan.key.slice(0, 12)}): built by another run`);
        return 0;
      case "ok":
        reporter.event(label, "ok", `committed ${plan.key.slice(0, 12)}`);
        return 0;
      case "cancelled":
        reporter.event(label, "failed", result.error);
        return 130;
      default:
        reporter.event(label, "failed", result.error);
        return 1;
    }
  } finally {
    if (handleTerm) Deno.removeSignalListener("SIGTERM", onTerm);
    reporter.close();
  }
}
