// Where a step instance's code actually runs. The runner decides what runs and owns the
// cache and the results; an executor only runs one prepared instance and resolves when
// its outputs are in `ctx.outDir`. The in-process executor is the only one today. A
// cluster executor (Slurm `sbatch`, Kubernetes Jobs) plugs in here: with the artifacts
// folder on shared storage it would submit a job that runs this one instance into the
// same work folder, and wait for it; keys, manifests and results loading stay as they are.
import type { InputValue, StepContext, StepKind } from "./step.ts";

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
