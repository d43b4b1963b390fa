// `--set node.param=value` on the command line: a param changed for one run without
// editing a file. The value is YAML (`3e-3`, `[2, 5]`, `{decay: 0.9}`); a list where the
// step takes one value is a sweep, as in a pipeline file. Overrides apply to the merged
// config (after `extends`), before expansion checks params against the step kinds.
// A run with overrides publishes under its own name, so it never overwrites the
// figures of the file it started from.
import { parse as parseYaml } from "yaml";
import type { PipelineConfig } from "./config.ts";
import { UserError } from "./errors.ts";
import { hashJson } from "./hash.ts";
import { didYouMean } from "./suggest.ts";

export interface Override {
  /** As typed: `train.lr=3e-3`. */
  text: string;
  node: string;
  /** Param path inside the node's params: `["lr"]`, `["ema", "decay"]`. */
  path: string[];
  value: unknown;
}

/** `train.lr=3e-3` -> node "train", path ["lr"], value 0.003. */
export function parseOverride(text: string): Override {
  const eq = text.indexOf("=");
  const target = eq < 0 ? "" : text.slice(0, eq).trim();
  const parts = target.split(".");
  if (eq < 0 || parts.length < 2 || parts.some((p) => p === "")) {
    throw new UserError(
      `--set ${text}: expected <node>.<param>=<value>, e.g. --set train.lr=3e-3 or --set lawa.k=[2,5]`,
    );
  }
  let value: unknown;
  try {
    value = parseYaml(text.slice(eq + 1));
  } catch (e) {
    throw new UserError(
      `--set ${text}: the value is not YAML: ${(e as Error).message.split("\n")[0]}`,
    );
  }
  return { text, node: parts[0], path: parts.slice(1), value };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** A copy of `config` with the overrides applied (the original is left as read). */
export function applyOverrides(config: PipelineConfig, overrides: Override[]): PipelineConfig {
  if (overrides.length === 0) return config;
  const steps = structuredClone(config.steps);
  for (const o of overrides) {
    const node = steps[o.node];
    if (!node) {
      const nodes = Object.keys(steps);
      throw new UserError(
        `--set ${o.text}: ${config.file} has no step node "${o.node}"${
          didYouMean(o.node, nodes)
        } ` +
          `(nodes: ${nodes.join(", ")})`,
      );
    }
    let holder: Record<string, unknown> = node.params;
    for (const key of o.path.slice(0, -1)) {
      const next = holder[key];
      if (next !== undefined && !isObject(next)) {
        throw new UserError(`--set ${o.text}: ${o.node}.${key} is not a mapping in ${config.file}`);
      }
      holder = (holder[key] ??= {}) as Record<string, unknown>;
    }
    holder[o.path[o.path.length - 1]] = o.value;
  }
  return { ...config, steps };
}

/** The `--set` texts that touched each node. */
export function overridesByNode(overrides: Override[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const o of overrides) out.set(o.node, [...(out.get(o.node) ?? []), o.text]);
  return out;
}

/**
 * The name a run publishes under: the pipeline file's name, plus the overrides in a
 * file-name-safe form (`ablation-k-nu--train.lr_3e-3`), or their hash when long.
 */
export function publishName(file: string, overrides: Override[]): string {
  const base = file.replace(/^.*\//, "").replace(/\.(ya?ml|json)$/, "");
  if (overrides.length === 0) return base;
  const slug = overrides.map((o) => o.text.replace(/[^A-Za-z0-9._-]+/g, "_")).join("--");
  const suffix = slug.length <= 60
    ? slug
    : `set-${hashJson(overrides.map((o) => o.text)).slice(0, 10)}`;
  return `${base}--${suffix}`;
}
