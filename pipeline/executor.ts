// Where a step instance's code actually runs. The runner decides what runs and owns the
// results database; an executor carries out one instance. Two shapes:
// - an `Executor` runs the step's code in this process, into a work folder the runner
//   prepared (the default, `inProcessExecutor`; `--jobs` bounds how many at once);
// - a `ClusterExecutor` hands the whole build of an instance (lock, run, commit) to a
//   job elsewhere, which runs the project's `run-instance` command on the shared
//   artifacts folder, and resolves once the job has ended (pipeline/executors/slurm.ts).
// Keys, manifests and the results loading do not change between the two: the job
// leaves a committed entry with its rows, and the coordinator loads them.
import type { InputValue, StepContext, StepKind } from "./step.ts";
import type { Instance } from "./expand.ts";
import type { Manifest, ManifestJob } from "./store.ts";
import type { Reporter } from "./progress.ts";

export interface ExecutionJob {
  kind: StepKind;
  ctx: StepContext;
  params: Record<string, unknown>;
  inputs: Record<string, InputValue>;
}

export interface Executor {
  /** Short name for messages. */
  readonly name: string;
  /** Run the instance; throws if the step failed. */
  execute(job: ExecutionJob): Promise<void>;
}

/** Runs steps in this process; the runner bounds how many at once (`--jobs`). */
export const inProcessExecutor: Executor = {
  name: "in-process",
  execute(job) {
    return job.kind.run(job.ctx, job.params as never, job.inputs);
  },
};

export interface ClusterBuild {
  instance: Instance;
  /** The key the coordinator computed; the job recomputes and checks it. */
  key: string;
  /** Instance id -> key of the committed entry of each of its inputs. */
  upstream: Record<string, string>;
  forced: boolean;
  reporter: Reporter;
  /** Aborted on Ctrl-C: cancel the job(s) this build submitted. */
  signal: AbortSignal;
}

export type ClusterResult =
  /** The job built the entry (`ok`), or found it built by someone else (`cached`). */
  | { status: "ok" | "cached"; manifest: Manifest; job: ManifestJob | null; detail: string }
  | { status: "failed" | "cancelled"; error: string; job: ManifestJob | null };

export interface ClusterExecutor {
  readonly name: string;
  /** Submit the instance as a job (or join one already running) and wait for its end. */
  build(request: ClusterBuild): Promise<ClusterResult>;
}

export function isClusterExecutor(e: Executor | ClusterExecutor): e is ClusterExecutor {
  return "build" in e;
}
