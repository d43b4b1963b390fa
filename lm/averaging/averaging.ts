// Checkpoint averaging: LAWA (the paper's Algorithm 1), EMA and SWA (Algorithm 2), and
// the linear interpolation behind the linear-mode-connectivity figure.
//
// Everything streams (lm/averaging/accumulator.ts): a fresh LAWA window is summed chunk
// by chunk straight into its output file; consecutive LAWA windows that overlap reuse
// the accumulated sum (add the newest members, subtract the ones that left) with an
// exact recompute every `recomputeEvery` windows so rounding error cannot build up.
// Tensor names are matched after stripping `_orig_mod.` and `module.` prefixes
// (torch.compile and DDP wrappers).
import { isFloatDType } from "../checkpoints/dtypes.ts";
import { CheckpointReader } from "../checkpoints/sharded.ts";
import { checkpointFileName } from "../checkpoints/series.ts";
import { Accumulator, type OutputFile, type TensorLayout } from "./accumulator.ts";
import {
  type AverageOptions,
  type BlendStep,
  checkOnSpacing,
  type CheckpointRef,
  checkPositiveInt,
  DEFAULT_AVERAGE_OPTIONS,
  type LawaPlan,
  methodParams,
  planEmaSwa,
  planLawa,
  planLawaUpdates,
  type Window,
} from "./plan.ts";

/** Strip leading wrapper prefixes: `_orig_mod.` (torch.compile), `module.` (DDP). */
export function normalizeTensorName(name: string): string {
  let n = name;
  for (;;) {
    if (n.startsWith("_orig_mod.")) n = n.slice("_orig_mod.".length);
    else if (n.startsWith("module.")) n = n.slice("module.".length);
    else return n;
  }
}

// ---------------------------------------------------------------------------------------
// Schema: every member must hold the same tensors with the same shapes.

function describe(ref: CheckpointRef): string {
  return `checkpoint at step ${ref.step} (${ref.path})`;
}

/** Open (headers only) and cross-check the checkpoints; returns the shared layout. */
export async function openAndCheck(
  refs: CheckpointRef[],
): Promise<{ layout: TensorLayout[]; readers: Map<number, CheckpointReader> }> {
  const readers = new Map<number, CheckpointReader>();
  let layout: TensorLayout[] = [];
  let first: CheckpointRef | null = null;
  for (const ref of refs) {
    const reader = await CheckpointReader.open(ref.path, normalizeTensorName);
    readers.set(ref.step, reader);
    if (!first) {
      first = ref;
      layout = [...reader.tensors.values()]
        .map((t) => ({ name: t.name, shape: t.shape, isFloat: isFloatDType(t.dtype) }))
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      if (layout.length === 0) throw new Error(`${describe(ref)} holds no tensors`);
      continue;
    }
    for (const want of layout) {
      const got = reader.tensors.get(want.name);
      if (!got) {
        throw new Error(
          `mismatched tensor names: ${
            describe(ref)
          } lacks "${want.name}" (present at step ${first.step})`,
        );
      }
      if (got.shape.join(",") !== want.shape.join(",")) {
        throw new Error(
          `mismatched shapes: tensor "${want.name}" is [${got.shape}] in ${
            describe(ref)
          } but [${want.shape}] at step ${first.step}`,
        );
      }
      if (isFloatDType(got.dtype) !== want.isFloat) {
        throw new Error(
          `mismatched dtypes: tensor "${want.name}" is ${got.dtype} in ${
            describe(ref)
          } but not at step ${first.step}`,
        );
      }
    }
    if (reader.tensors.size !== layout.length) {
      const known = new Set(layout.map((t) => t.name));
      const extra = [...reader.tensors.keys()].filter((n) => !known.has(n));
      throw new Error(
        `mismatched tensor names: ${describe(ref)} has "${
          extra[0]
        }" which step ${first.step} lacks`,
      );
    }
  }
  return { layout, readers };
}

// ---------------------------------------------------------------------------------------
// Running a method over a list of checkpoints.

export interface AveragedCheckpoint {
  /** The step this average stands for (its newest member). */
  step: number;
  tokens?: number;
  /** File name, relative to the output folder. */
  file: string;
  /** Source steps averaged into it. */
  sources: number[];
}

export interface AverageResult {
  outputs: AveragedCheckpoint[];
  /** LAWA targets skipped for a missing member. */
  skipped: { step: number; missing: number[] }[];
  /** Checkpoint passes made (each reads every float tensor of one checkpoint once). */
  checkpointReads: number;
  bytesRead: number;
}

export interface AverageHooks {
  /** Called before the first output with the total, then after each output. */
  onProgress?: (done: number, total: number, info: string) => void;
  signal?: AbortSignal;
  /** false: the caller fsyncs the outputs itself (the pipeline's cache does on commit). */
  durable?: boolean;
}

/**
 * Run `opts.method` over `checkpoints` and write one safetensors file per output into
 * `outDir` (named by checkpointFileName(step)), each with metadata listing its sources.
 * Every header is validated and cross-checked before anything is written.
 */
export async function averageCheckpoints(
  checkpoints: CheckpointRef[],
  options: Partial<AverageOptions> & Pick<AverageOptions, "method">,
  outDir: string,
  hooks: AverageHooks = {},
): Promise<AverageResult> {
  const opts: AverageOptions = { ...DEFAULT_AVERAGE_OPTIONS, ...options };
  const byStep = new Map<number, CheckpointRef>();
  for (const c of checkpoints) {
    if (byStep.has(c.step)) {
      throw new Error(
        `two checkpoints claim step ${c.step}: ${byStep.get(c.step)!.path} and ${c.path}`,
      );
    }
    byStep.set(c.step, c);
  }
  const steps = [...byStep.keys()].sort((a, b) => a - b);

  let windows: Window[] = [];
  let blends: BlendStep[] = [];
  let skipped: LawaPlan["skipped"] = [];
  if (opts.method === "lawa") {
    checkPositiveInt("k", opts.k);
    checkPositiveInt("nu", opts.nu);
    checkPositiveInt("interval", opts.interval);
    checkOnSpacing(opts, steps);
    if (steps.length < opts.k) {
      throw new Error(
        `LAWA with k=${opts.k} needs at least ${opts.k} checkpoints, found ${steps.length}`,
      );
    }
    ({ windows, skipped } = planLawa(steps, opts));
    if (windows.length === 0) {
      throw new Error(
        `no full LAWA window: no checkpoint step t >= ${opts.start} on the interval ${opts.interval} has all of t, t-${opts.nu}, ..., t-${
          (opts.k - 1) * opts.nu
        } among the ${steps.length} checkpoints (steps ${steps[0]}..${steps[steps.length - 1]})`,
      );
    }
  } else if (opts.method === "ema" || opts.method === "swa") {
    blends = planEmaSwa(steps, opts);
    if (blends.length === 0) {
      throw new Error(`no checkpoint at or after start step ${opts.start}`);
    }
  } else {
    throw new Error(`unknown averaging method ${JSON.stringify(opts.method)} (lawa, ema or swa)`);
  }

  const used = new Set<number>();
  for (const w of windows) for (const s of w.members) used.add(s);
  for (const b of blends) used.add(b.step);
  const usedRefs = [...used].sort((a, b) => a - b).map((s) => byStep.get(s)!);
  const { layout, readers } = await openAndCheck(usedRefs);
  const acc = new Accumulator(layout, opts.accumulate);
  await Deno.mkdir(outDir, { recursive: true });

  const outputs: AveragedCheckpoint[] = [];
  const total = opts.method === "lawa" ? windows.length : blends.length;
  hooks.onProgress?.(0, total, "");
  /** Where output `step` goes, with metadata listing its sources. */
  const outputFile = (step: number, sources: number[], scale: number): OutputFile => ({
    path: `${outDir}/${checkpointFileName(step)}`,
    newest: readers.get(step)!,
    scale,
    dtype: opts.dtype,
    metadata: {
      format: "pt",
      method: opts.method,
      step: String(step),
      sources: JSON.stringify(sources),
      averaging: JSON.stringify(methodParams(opts)),
    },
    durable: hooks.durable ?? true,
  });
  const written = (step: number, sources: number[]) => {
    const tokens = byStep.get(step)!.tokens;
    const file = checkpointFileName(step);
    outputs.push({ step, ...(tokens !== undefined ? { tokens } : {}), file, sources });
    const from = sources.length <= 8
      ? `steps ${sources.join(", ")}`
      : `${sources.length} checkpoints, steps ${sources[0]}..${sources[sources.length - 1]}`;
    hooks.onProgress?.(outputs.length, total, `step ${step} <- ${from}`);
  };

  if (opts.method === "lawa") {
    const updates = planLawaUpdates(windows, opts.recomputeEvery ?? opts.k);
    for (const [i, w] of windows.entries()) {
      hooks.signal?.throwIfAborted();
      const out = outputFile(w.step, w.members, 1 / w.members.length);
      if (updates[i] === "incremental") {
        const prev = windows[i - 1].members;
        for (const s of prev.filter((s) => !w.members.includes(s))) {
          await acc.blend(readers.get(s)!, 1, -1);
        }
        for (const s of w.members.filter((s) => !prev.includes(s))) {
          await acc.blend(readers.get(s)!, 1, 1);
        }
        await acc.write(out);
      } else {
        const members = w.members.map((s) => readers.get(s)!);
        await acc.sumAndWrite(members, out, updates[i + 1] === "incremental");
      }
      written(w.step, w.members);
    }
  } else {
    for (const b of blends) {
      hooks.signal?.throwIfAborted();
      await acc.blend(readers.get(b.step)!, b.keep, b.take);
      await acc.write(outputFile(b.step, b.members, 1));
      written(b.step, b.members);
    }
  }
  return { outputs, skipped, checkpointReads: acc.checkpointReads, bytesRead: acc.bytesRead };
}
