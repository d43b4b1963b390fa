// From a checked pipeline file and the registry of step kinds to the DAG of step
// instances: sweep lists become grids, mapped inputs pair instances of the same
// lineage, gathered inputs collect every instance of their nodes. Instances that would
// compute the same thing (same kind, params and input instances) become one.
// Seeds sweep like params: a node whose kind uses the seed runs once per seed of its
// `seed:` (or `defaults.seed`, or the command line's `--seeds`) unless a mapped input
// already fixes it, in which case it inherits that run's seed; kinds that do not use the
// seed (corpus, tokenize) stay shared by every seed.
// Cache keys are not computed here: they need the digests of upstream outputs (runner.ts).
import type { z } from "zod";
import type { StepKind } from "./step.ts";
import type { PipelineConfig } from "./config.ts";
import { checkInstanceParams, checkParamValues, describeIssues, UserError } from "./errors.ts";
import { hashJson } from "./hash.ts";
import { didYouMean } from "./suggest.ts";

export interface Instance {
  /** Structural id: hash of kind, params and input instance ids (not the cache key). */
  id: string;
  /** The pipeline node it belongs to (the first one, when two nodes coincide). */
  node: string;
  kind: StepKind;
  /** Params after the step's zod schema applied defaults. */
  params: Record<string, unknown>;
  /** Input name -> upstream instance id (mapped) or ids (gathered). */
  inputs: Record<string, string | string[]>;
  /** Sweep values that make this instance, its own and those of mapped upstreams. */
  coords: Record<string, unknown>;
  /** Node name -> instance id, for itself and every mapped ancestor. */
  lineage: Record<string, string>;
  /** `node[lr=0.006 k=2]`, for display. */
  label: string;
  /** The seed this instance runs with, when the pipeline fixes one (else the run's). */
  seed?: number;
}

export interface ExpandOptions {
  /** Seeds for every seeded node, overriding the file's (`--seed N`, `--seeds N`). */
  seeds?: number[];
}

export interface ExpandedPipeline {
  file: string;
  description?: string;
  /** `seed` is the first of the file's default seeds. */
  defaults: { seed?: number; backend?: string };
  /** Every seed some instance runs with (empty: none fixed by the pipeline). */
  seeds: number[];
  /** Every instance in a topological order (inputs before their users). */
  instances: Instance[];
  byId: Map<string, Instance>;
}

function knownKinds(registry: Map<string, StepKind>): string {
  return [...registry.keys()].sort().join(", ") || "(none registered)";
}

/** Node names in an order where each comes after the nodes it reads. */
function orderNodes(config: PipelineConfig): string[] {
  const nodes = Object.keys(config.steps);
  const state = new Map<string, "visiting" | "done">();
  const order: string[] = [];
  const visit = (name: string, path: string[]) => {
    if (state.get(name) === "done") return;
    if (state.get(name) === "visiting") {
      throw new UserError(
        `${config.file}: steps: the inputs form a cycle: ${[...path, name].join(" -> ")}`,
      );
    }
    state.set(name, "visiting");
    for (const [input, spec] of Object.entries(config.steps[name].inputs)) {
      for (const up of Array.isArray(spec) ? spec : [spec]) {
        if (!(up in config.steps)) {
          throw new UserError(
            `${config.file}: steps.${name}.inputs.${input}: no step node named "${up}"` +
              `${didYouMean(up, nodes)} ` +
              `(nodes: ${nodes.join(", ")})`,
          );
        }
        visit(up, [...path, name]);
      }
    }
    state.set(name, "done");
    order.push(name);
  };
  for (const n of nodes) visit(n, []);
  return order;
}

function objectShape(schema: z.ZodType): Record<string, z.ZodType> | undefined {
  const shape = (schema as unknown as { shape?: unknown }).shape;
  return shape && typeof shape === "object" ? shape as Record<string, z.ZodType> : undefined;
}

/** Params keys whose list value is a sweep axis (the schema does not take the list as is). */
function sweepAxes(kind: StepKind, params: Record<string, unknown>): string[] {
  const shape = objectShape(kind.params);
  const axes: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    if (!Array.isArray(value)) continue;
    const field = shape?.[key];
    let takesList: boolean;
    if (field) {
      takesList = field.safeParse(value).success;
    } else {
      const r = kind.params.safeParse(params);
      takesList = r.success || !r.error.issues.some((i) => i.path[0] === key);
    }
    if (!takesList) axes.push(key);
  }
  return axes;
}

function gridOf(params: Record<string, unknown>, axes: string[]): Record<string, unknown>[] {
  let points: Record<string, unknown>[] = [{ ...params }];
  for (const axis of axes) {
    const values = params[axis] as unknown[];
    points = points.flatMap((p) => values.map((v) => ({ ...p, [axis]: v })));
  }
  return points;
}

function formatCoord(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** Expand a checked pipeline file into instances. Throws UserError for any mismatch. */
export function expandPipeline(
  config: PipelineConfig,
  kinds: StepKind[],
  opts: ExpandOptions = {},
): ExpandedPipeline {
  const registry = new Map(kinds.map((k) => [k.name, k]));
  const seedList = (v: number | number[] | undefined) =>
    v === undefined ? undefined : [...new Set(Array.isArray(v) ? v : [v])];
  const defaultSeeds = seedList(config.defaults.seed);
  if (opts.seeds && opts.seeds.length === 0) {
    throw new UserError("the list of seeds to run is empty");
  }
  const byId = new Map<string, Instance>();
  const ordered: Instance[] = [];
  const ofNode = new Map<string, Instance[]>();

  for (const node of orderNodes(config)) {
    const spec = config.steps[node];
    const where = `${config.file}: steps.${node}`;
    const kind = registry.get(spec.kind);
    if (!kind) {
      throw new UserError(
        `${where}.kind: unknown step kind "${spec.kind}"${
          didYouMean(spec.kind, registry.keys())
        } ` +
          `(known kinds: ${knownKinds(registry)})`,
      );
    }
    const declared = kind.inputs.map((i) => i.replace(/\?$/, ""));
    for (const input of Object.keys(spec.inputs)) {
      if (!declared.includes(input)) {
        throw new UserError(
          `${where}.inputs.${input}: step kind "${kind.name}" takes no input "${input}"` +
            `${didYouMean(input, declared)} ` +
            `(it takes: ${declared.join(", ") || "none"})`,
        );
      }
    }
    for (const input of kind.inputs) {
      if (!input.endsWith("?") && !(input in spec.inputs)) {
        throw new UserError(
          `${where}.inputs: missing input "${input}" of step kind "${kind.name}"`,
        );
      }
    }

    // Zod drops keys it does not know; a misspelt param would be silently ignored.
    const shape = objectShape(kind.params);
    if (shape) {
      for (const key of Object.keys(spec.params)) {
        if (!(key in shape)) {
          throw new UserError(
            `${where}.params.${key}: step kind "${kind.name}" has no param "${key}"` +
              `${didYouMean(key, Object.keys(shape))} ` +
              `(it takes: ${Object.keys(shape).join(", ")})`,
          );
        }
      }
    }

    // Params grid, each point checked (and given its defaults) by the step's schema.
    const axes = sweepAxes(kind, spec.params);
    checkParamValues(spec.params, axes, where);
    const paramPoints = gridOf(spec.params, axes).map((point) => {
      const parsed = kind.params.safeParse(point);
      if (!parsed.success) {
        throw new UserError(`${where}.params.${describeIssues(parsed.error.issues, point)}`);
      }
      const own: Record<string, unknown> = {};
      for (const a of axes) own[a] = point[a];
      checkInstanceParams(kind.check, parsed.data as Record<string, unknown>, where, own);
      return { params: parsed.data as Record<string, unknown>, own };
    });

    // Mapped inputs: cross product, keeping only combinations of one shared lineage.
    type Combo = {
      picks: Record<string, Instance>;
      lineage: Record<string, string>;
      seed?: number;
    };
    let combos: Combo[] = [{ picks: {}, lineage: {} }];
    const gathered: Record<string, string[]> = {};
    for (const [input, ups] of Object.entries(spec.inputs)) {
      if (Array.isArray(ups)) {
        const ids = ups.flatMap((u) => ofNode.get(u)!.map((i) => i.id));
        gathered[input] = [...new Set(ids)];
        continue;
      }
      const next: Combo[] = [];
      for (const combo of combos) {
        for (const up of ofNode.get(ups)!) {
          const agrees = Object.entries(up.lineage).every(
            ([n, id]) => combo.lineage[n] === undefined || combo.lineage[n] === id,
          ) && (combo.seed === undefined || up.seed === undefined || combo.seed === up.seed);
          if (agrees) {
            next.push({
              picks: { ...combo.picks, [input]: up },
              lineage: { ...combo.lineage, ...up.lineage },
              seed: combo.seed ?? up.seed,
            });
          }
        }
      }
      combos = next;
    }

    // Seeds: inherited from a mapped input's run, else this node's own list (a sweep
    // axis when it has several); none for kinds that do not use the seed.
    const usesSeed = kind.uses?.seed !== false;
    const ownSeeds = opts.seeds ?? seedList(spec.seed) ?? defaultSeeds;
    const gathersOnly = Object.keys(gathered).length > 0 &&
      Object.keys(combos[0].picks).length === 0;
    const seedsOf = (combo: Combo): (number | undefined)[] => {
      if (!usesSeed) return [undefined];
      if (combo.seed !== undefined) return [combo.seed];
      if (!ownSeeds) return [undefined];
      return gathersOnly ? [ownSeeds[0]] : ownSeeds;
    };

    const mine: Instance[] = [];
    for (const combo of combos) {
      for (const point of paramPoints) {
        for (const seed of seedsOf(combo)) {
          const inputs: Record<string, string | string[]> = { ...gathered };
          const coords: Record<string, unknown> = {};
          for (const [input, up] of Object.entries(combo.picks)) {
            inputs[input] = up.id;
            Object.assign(coords, up.coords);
          }
          Object.assign(coords, point.own);
          if (seed !== undefined && combo.seed === undefined && seedsOf(combo).length > 1) {
            coords.seed = seed;
          }
          const id = hashJson({
            kind: kind.name,
            params: point.params,
            inputs,
            ...(seed === undefined ? {} : { seed }),
          });
          const existing = byId.get(id);
          if (existing) {
            if (!mine.includes(existing)) mine.push(existing);
            continue;
          }
          const coordText = Object.entries(coords).map(([k, v]) => `${k}=${formatCoord(v)}`);
          const instance: Instance = {
            id,
            node,
            kind,
            params: point.params,
            inputs,
            coords,
            lineage: { ...combo.lineage, [node]: id },
            label: coordText.length ? `${node}[${coordText.join(" ")}]` : node,
            ...(seed === undefined ? {} : { seed }),
          };
          byId.set(id, instance);
          ordered.push(instance);
          mine.push(instance);
        }
      }
    }
    ofNode.set(node, mine);
  }
  return {
    file: config.file,
    description: config.description,
    defaults: { ...config.defaults, seed: defaultSeeds?.[0] },
    seeds: [...new Set(ordered.flatMap((i) => i.seed === undefined ? [] : [i.seed]))].sort(
      (a, b) => a - b,
    ),
    instances: ordered,
    byId,
  };
}
