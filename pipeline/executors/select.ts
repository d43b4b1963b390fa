// Choosing the executor of a `run`: `--executor local|slurm`, else the pipeline file's
// `executor.type`, else local (in-process). Builds the Slurm executor from the file's
// `executor:` section and says how many instances may be in flight by default (one
// at a time in-process; every ready instance when a scheduler queues them).
import type { ClusterExecutor } from "../executor.ts";
import type { ExpandedPipeline } from "../expand.ts";
import type { Store } from "../store.ts";
import { UserError } from "../errors.ts";
import { parseExecutorSection } from "./slurm_config.ts";
import { SlurmExecutor } from "./slurm.ts";

export const EXECUTORS = ["local", "slurm"] as const;
/** Most jobs one run keeps submitted at once unless `--jobs` says otherwise. */
export const DEFAULT_CLUSTER_JOBS = 1000;

function absolute(path: string): string {
  return path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
}

export interface ExecutorChoice {
  name: "local" | "slurm";
  /** Undefined for local (the runner's in-process default). */
  executor?: ClusterExecutor;
  defaultJobs: number;
}

export function chooseExecutor(opts: {
  flag: string | undefined;
  section: unknown;
  pipeline: ExpandedPipeline;
  store: Store;
  /** Arguments the jobs' `run-instance` needs to read the same pipeline (`--set`, `--seed` ...). */
  cliArgs?: string[];
  /** The module that has the `run-instance` command (default: this process's main module). */
  mainModule?: string;
}): ExecutorChoice {
  if (opts.flag !== undefined && !(EXECUTORS as readonly string[]).includes(opts.flag)) {
    throw new UserError(`--executor: expected one of ${EXECUTORS.join(", ")}, got "${opts.flag}"`);
  }
  const settings = parseExecutorSection(opts.section, opts.pipeline);
  const name = (opts.flag ?? settings.type ?? "local") as "local" | "slurm";
  if (name === "local") return { name, defaultJobs: 1 };
  const main = opts.mainModule ?? Deno.mainModule;
  const executor = new SlurmExecutor({
    store: opts.store,
    pipelineFile: absolute(opts.pipeline.file),
    mainModule: main.startsWith("file:") ? decodeURIComponent(new URL(main).pathname) : main,
    cwd: Deno.cwd(),
    cliArgs: opts.cliArgs ?? [],
    settings,
  });
  return { name, executor, defaultJobs: DEFAULT_CLUSTER_JOBS };
}
