// Pipeline files: YAML or JSON, validated with zod, with `extends` for variants of a
// base experiment. This module only reads and checks the file's shape; expand.ts
// checks it against the step kinds and turns it into instances.
//
//   extends: base.yaml                 # optional, relative to this file, or a list of files
//   description: "..."
//   defaults: { seed: 0, backend: wasm }  # seed: [0, 1, 2] runs every seeded node per seed
//   steps:
//     <node>: { kind: <step kind>, inputs: { <input>: <node> | [<node>, ...] }, params: {...} }
//
// Merging with `extends`: the child overrides the parent; `steps` merge node by node,
// a node's `params` and `inputs` merge key by key; a node set to null is removed.
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { describeIssues, UserError } from "./errors.ts";

const inputSpec = z.union([
  z.string().min(1),
  z.array(z.string().min(1)).min(1, "an empty list of input nodes"),
]);
/** A seed, or a list of seeds to sweep (`seed: [0, 1, 2]`). */
const seedSpec = z.union([z.number().int(), z.array(z.number().int()).min(1)]);

const nodeSchema = z.object({
  kind: z.string().min(1),
  inputs: z.record(z.string(), inputSpec).default({}),
  params: z.record(z.string(), z.unknown()).default({}),
  description: z.string().optional(),
  /** Seeds of this node's runs, instead of `defaults.seed`. */
  seed: seedSpec.optional(),
}).strict();

const configSchema = z.object({
  description: z.string().optional(),
  defaults: z.object({
    seed: seedSpec.optional(),
    backend: z.string().min(1).optional(),
  }).strict().default({}),
  steps: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/), nodeSchema).refine(
    (steps) => Object.keys(steps).length > 0,
    "no step nodes: a pipeline needs at least one",
  ),
  /** Where instances run (pipeline/executors/slurm_config.ts checks it). */
  executor: z.record(z.string(), z.unknown()).optional(),
}).strict();

export type NodeConfig = z.infer<typeof nodeSchema>;
export type PipelineConfig = z.infer<typeof configSchema> & {
  /** The file it was read from (as given, for messages). */
  file: string;
};

const EXTENSIONS = [".yaml", ".yml", ".json"];

/** `ablation` -> `configs/ablation.yaml` (or .yml / .json); a path that exists is itself. */
export async function resolvePipelinePath(nameOrPath: string, configsDir: string): Promise<string> {
  const candidates = [nameOrPath, ...EXTENSIONS.map((e) => `${configsDir}/${nameOrPath}${e}`)];
  for (const c of candidates) {
    try {
      if ((await Deno.stat(c)).isFile) return c;
    } catch { /* try the next */ }
  }
  throw new UserError(
    `no pipeline "${nameOrPath}": looked for ${candidates.join(", ")}`,
  );
}

async function readRaw(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw new UserError(`${file}: cannot read the pipeline file (${(e as Error).message})`);
  }
  let data: unknown;
  try {
    data = file.endsWith(".json") ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    const first = String((e as Error).message).split("\n")[0];
    throw new UserError(`${file}: not valid ${file.endsWith(".json") ? "JSON" : "YAML"}: ${first}`);
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new UserError(`${file}: expected a mapping with a "steps" field at the top level`);
  }
  return data as Record<string, unknown>;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function mergeNode(parent: unknown, child: unknown): unknown {
  if (child === null) return undefined;
  if (!isObject(parent) || !isObject(child)) return child;
  const out: Record<string, unknown> = { ...parent, ...child };
  for (const field of ["params", "inputs"]) {
    if (isObject(parent[field]) && isObject(child[field])) {
      out[field] = { ...parent[field], ...child[field] };
    }
  }
  return out;
}

/** Child over parent: top-level fields replaced, `defaults` per key, `steps` per node. */
function mergeConfigs(
  parent: Record<string, unknown>,
  child: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...parent, ...child };
  if (isObject(parent.defaults) && isObject(child.defaults)) {
    out.defaults = { ...parent.defaults, ...child.defaults };
  }
  if (isObject(parent.steps) && isObject(child.steps)) {
    const steps: Record<string, unknown> = { ...parent.steps };
    for (const [name, node] of Object.entries(child.steps)) {
      const merged = mergeNode(parent.steps[name], node);
      if (merged === undefined) delete steps[name];
      else steps[name] = merged;
    }
    out.steps = steps;
  }
  return out;
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : path.slice(0, i);
}

async function loadMerged(file: string, seen: string[]): Promise<Record<string, unknown>> {
  if (seen.includes(file)) {
    throw new UserError(`${file}: "extends" forms a cycle: ${[...seen, file].join(" -> ")}`);
  }
  const raw = await readRaw(file);
  const { extends: parentRef, ...own } = raw;
  if (parentRef === undefined) return own;
  // One parent, or a list merged left to right (a later parent overrides an earlier one).
  const refs = Array.isArray(parentRef) ? parentRef : [parentRef];
  let merged: Record<string, unknown> = {};
  for (const ref of refs) {
    if (typeof ref !== "string") {
      throw new UserError(
        `${file}: extends: expected a relative file path or a list of them, got ${typeof ref}`,
      );
    }
    const parentFile = ref.startsWith("/") ? ref : `${dirOf(file)}/${ref}`;
    try {
      await Deno.stat(parentFile);
    } catch {
      throw new UserError(`${file}: extends: no file ${parentFile}`);
    }
    merged = mergeConfigs(merged, await loadMerged(parentFile, [...seen, file]));
  }
  return mergeConfigs(merged, own);
}

/** Read a pipeline file (following `extends`) and check its shape. */
export async function loadConfig(file: string): Promise<PipelineConfig> {
  const merged = await loadMerged(file, []);
  const result = configSchema.safeParse(merged);
  if (!result.success) {
    throw new UserError(`${file}: ${describeIssues(result.error.issues, merged)}`);
  }
  return { ...result.data, file };
}
