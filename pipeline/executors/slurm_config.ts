// The `executor:` section of a pipeline file: which executor runs it by default, and
// the Slurm resources of its jobs, as defaults plus entries per step kind or per node
// (a node's entry wins over its kind's, which wins over the defaults, field by field):
//
//   executor:
//     type: slurm            # default for `run` (`--executor local|slurm` overrides)
//     retries: 2             # resubmissions after NODE_FAIL / BOOT_FAIL / PREEMPTED
//     poll_s: 5              # how often squeue is asked
//     defaults: { partition: cpu, time: "01:00:00", cpus: 2, mem: 8G }
//     train: { partition: gpu, gres: "gpu:1", cpus: 8, mem: 64G, time: "24:00:00" }
//     eval-lawa: { extra: ["--qos=short"] }
import { z } from "zod";
import { describeIssues, UserError } from "../errors.ts";
import type { ExpandedPipeline, Instance } from "../expand.ts";

const resourcesSchema = z.object({
  partition: z.string().min(1),
  account: z.string().min(1),
  qos: z.string().min(1),
  gres: z.string().min(1),
  constraint: z.string().min(1),
  cpus: z.number().int().positive(),
  mem: z.union([z.string().regex(/^\d+[KMGT]?$/), z.number().int().positive()]),
  time: z.string().min(1),
  /** More sbatch arguments, verbatim (`--exclusive`, `--nice=10`). */
  extra: z.array(z.string()),
  /** Shell lines run in the job before the command (`module load deno`, `cd` ...). */
  setup: z.array(z.string()),
  /** The deno executable on the nodes (default: the coordinator's). */
  deno: z.string().min(1),
}).partial().strict();

export type SlurmResources = z.infer<typeof resourcesSchema>;

const sectionSchema = z.object({
  type: z.enum(["local", "slurm"]).optional(),
  retries: z.number().int().min(0).optional(),
  poll_s: z.number().positive().optional(),
  defaults: resourcesSchema.optional(),
}).catchall(resourcesSchema);

export interface ExecutorSettings {
  type?: "local" | "slurm";
  retries: number;
  pollMs: number;
  defaults: SlurmResources;
  /** Step kind or node name -> resources. */
  entries: Record<string, SlurmResources>;
}

export const DEFAULT_RETRIES = 1;
export const DEFAULT_POLL_S = 5;
const RESERVED = new Set(["type", "retries", "poll_s", "defaults"]);

/** Check the `executor:` section against the pipeline's nodes and step kinds. */
export function parseExecutorSection(
  raw: unknown,
  pipeline: ExpandedPipeline,
): ExecutorSettings {
  const where = `${pipeline.file}: executor`;
  if (raw === undefined || raw === null) {
    return { retries: DEFAULT_RETRIES, pollMs: DEFAULT_POLL_S * 1000, defaults: {}, entries: {} };
  }
  const parsed = sectionSchema.safeParse(raw);
  if (!parsed.success) {
    throw new UserError(`${where}.${describeIssues(parsed.error.issues, raw)}`);
  }
  const nodes = new Set(pipeline.instances.map((i) => i.node));
  const kinds = new Set(pipeline.instances.map((i) => i.kind.name));
  const entries: Record<string, SlurmResources> = {};
  for (const [name, value] of Object.entries(parsed.data)) {
    if (RESERVED.has(name)) continue;
    if (!nodes.has(name) && !kinds.has(name)) {
      throw new UserError(
        `${where}.${name}: no node or step kind named "${name}" in the pipeline ` +
          `(nodes: ${[...nodes].join(", ")}; kinds: ${[...kinds].join(", ")})`,
      );
    }
    entries[name] = value as SlurmResources;
  }
  return {
    type: parsed.data.type,
    retries: parsed.data.retries ?? DEFAULT_RETRIES,
    pollMs: (parsed.data.poll_s ?? DEFAULT_POLL_S) * 1000,
    defaults: parsed.data.defaults ?? {},
    entries,
  };
}

/** Defaults, then the instance's step kind's entry, then its node's entry. */
export function resourcesFor(settings: ExecutorSettings, instance: Instance): SlurmResources {
  return {
    ...settings.defaults,
    ...settings.entries[instance.kind.name],
    ...(instance.node !== instance.kind.name ? settings.entries[instance.node] : {}),
  };
}

/** The sbatch arguments for the resources (the script and its paths come separately). */
export function sbatchArgs(r: SlurmResources): string[] {
  const args: string[] = [];
  if (r.partition) args.push(`--partition=${r.partition}`);
  if (r.account) args.push(`--account=${r.account}`);
  if (r.qos) args.push(`--qos=${r.qos}`);
  if (r.gres) args.push(`--gres=${r.gres}`);
  if (r.constraint) args.push(`--constraint=${r.constraint}`);
  if (r.cpus) args.push(`--cpus-per-task=${r.cpus}`);
  if (r.mem !== undefined) args.push(`--mem=${r.mem}`);
  if (r.time) args.push(`--time=${r.time}`);
  return [...args, ...(r.extra ?? [])];
}
