// Checkpoint averaging: LAWA (the paper's Algorithm 1), EMA and SWA (Algorithm 2), and
// the linear interpolation behind the linear-mode-connectivity figure.
//
// Everything streams: one accumulator the size of the model plus one tensor being read
// (a fresh window: 4 MiB per member, its members summed chunk by chunk in one pass).
// Consecutive LAWA windows reuse the accumulated sum (add the newest members, subtract
// the ones that left) with an exact recompute every `recomputeEvery` windows so rounding
// error cannot build up. Every float dtype (F32, F64, F16, BF16) is
// decoded and accumulated in float64 (or float32 if asked); integer tensors are copied
// from the newest member. Tensor names are matched after stripping `_orig_mod.` and
// `module.` prefixes (torch.compile and DDP wrappers).
import {
  blendInto,
  type DType,
  DTYPE_BYTES,
  encodeFloats,
  isFloatDType,
  numelOf,
  SafetensorsWriter,
  type TensorSpec,
} from "../checkpoints/safetensors.ts";
import { CheckpointReader } from "../checkpoints/sharded.ts";
import { checkpointFileName } from "../checkpoints/series.ts";

/** A checkpoint to average: the training step it was taken at and its file (or folder/index). */
export interface CheckpointRef {
  step: number;
  path: string;
  tokens?: number;
}

export type AverageMethod = "lawa" | "ema" | "swa";

export interface AverageOptions {
  method: AverageMethod;
  /** LAWA: number of checkpoints per window. */
  k: number;
  /** LAWA: distance between window members, in training steps. */
  nu: number;
  /** LAWA: a window ends at every checkpoint step t with (t - start) % interval == 0. */
  interval: number;
  /** First training step considered: LAWA targets and EMA/SWA members are >= start. */
  start: number;
  /** EMA (Algorithm 2 notation): weight of the newest checkpoint; decay is 1 - alpha. */
  alpha: number;
  /** EMA/SWA: update at list index i only when i % stepSize == 0 (Algorithm 2). */
  stepSize: number;
  /** EMA/SWA: update at list index i only when i > initPoint (Algorithm 2). */
  initPoint: number;
  /** Output dtype of float tensors: that of the newest member, or float32. */
  dtype: "source" | "float32";
  /** Accumulator precision. */
  accumulate: "float64" | "float32";
  /** LAWA: exact recompute after this many incremental windows (default k). */
  recomputeEvery?: number;
}

export const DEFAULT_AVERAGE_OPTIONS: AverageOptions = {
  method: "lawa",
  k: 5,
  nu: 1,
  interval: 1,
  start: 0,
  alpha: 0.1,
  stepSize: 1,
  initPoint: 0,
  dtype: "source",
  accumulate: "float64",
};

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
// Planning: which checkpoints go into which output. Pure functions of the step list.

/** One output: the step it stands for and the source steps averaged into it (ascending). */
export interface Window {
  step: number;
  members: number[];
}

export interface LawaPlan {
  windows: Window[];
  /** Targets on the interval grid that were skipped because a member was missing. */
  skipped: { step: number; missing: number[] }[];
}

/**
 * LAWA windows (Algorithm 1, sliding): for every available checkpoint step t with
 * t >= start and (t - start) % interval == 0, the window is t, t-ν, ..., t-(k-1)ν.
 * Membership rule: every one of those k steps must exist exactly; a window with a
 * missing member is skipped (reported in `skipped` when at least its first member
 * t-(k-1)ν is not before the first checkpoint), never filled with a neighbour.
 */
export function planLawa(
  steps: number[],
  opts: Pick<AverageOptions, "k" | "nu" | "interval" | "start">,
): LawaPlan {
  checkPositiveInt("k", opts.k);
  checkPositiveInt("nu", opts.nu);
  checkPositiveInt("interval", opts.interval);
  const have = new Set(steps);
  const sorted = [...have].sort((a, b) => a - b);
  const windows: Window[] = [];
  const skipped: { step: number; missing: number[] }[] = [];
  for (const t of sorted) {
    if (t < opts.start || (t - opts.start) % opts.interval !== 0) continue;
    const members: number[] = [];
    for (let j = opts.k - 1; j >= 0; j--) members.push(t - j * opts.nu);
    const missing = members.filter((s) => !have.has(s));
    if (missing.length === 0) windows.push({ step: t, members });
    else if (members[0] >= sorted[0]) skipped.push({ step: t, missing });
  }
  return { windows, skipped };
}

/** One EMA/SWA update: acc = keep * acc + take * checkpoint(step), then an output. */
export interface BlendStep {
  step: number;
  keep: number;
  take: number;
  /** Every source step that has contributed so far (ascending). */
  members: number[];
}

/**
 * EMA/SWA per Algorithm 2 over the checkpoints with step >= start, in step order:
 * the series starts with ckpt[0]; at list index i >= 1 with i % stepSize == 0 and
 * i > initPoint it updates, and each update is one output checkpoint.
 * EMA: value = (1 - alpha) * series + alpha * ckpt[i].
 * SWA: the running uniform mean of ckpt[0] and every updated ckpt[i]
 * (value = n/(n+1) * series + 1/(n+1) * ckpt[i]; the paper's pseudocode prints the two
 * factors swapped, which would not be a mean).
 */
export function planEmaSwa(
  steps: number[],
  opts: Pick<AverageOptions, "method" | "alpha" | "stepSize" | "initPoint" | "start">,
): BlendStep[] {
  checkPositiveInt("step_size", opts.stepSize);
  if (!Number.isInteger(opts.initPoint) || opts.initPoint < 0) {
    throw new Error(`init_point must be an integer >= 0, got ${opts.initPoint}`);
  }
  if (opts.method === "ema" && !(opts.alpha > 0 && opts.alpha <= 1)) {
    throw new Error(`alpha must be in (0, 1] for EMA, got ${opts.alpha}`);
  }
  const list = [...new Set(steps)].filter((s) => s >= opts.start).sort((a, b) => a - b);
  if (list.length === 0) return [];
  const plan: BlendStep[] = [{ step: list[0], keep: 0, take: 1, members: [list[0]] }];
  let n = 1;
  for (let i = 1; i < list.length; i++) {
    if (i % opts.stepSize !== 0 || i <= opts.initPoint) continue;
    const members = [...plan[plan.length - 1].members, list[i]];
    if (opts.method === "swa") {
      plan.push({ step: list[i], keep: n / (n + 1), take: 1 / (n + 1), members });
      n++;
    } else {
      plan.push({ step: list[i], keep: 1 - opts.alpha, take: opts.alpha, members });
    }
  }
  return plan;
}

function checkPositiveInt(name: string, value: number): void {
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`${name} must be a positive integer, got ${value}`);
  }
}

/**
 * ν and the window interval are training steps; a value that is not a multiple of the
 * checkpoint spacing would ask for checkpoints that were never saved.
 */
export function checkOnSpacing(
  opts: Pick<AverageOptions, "nu" | "interval">,
  steps: number[],
): void {
  const spacing = typicalSpacing(steps);
  for (const [name, value] of [["ν (nu)", opts.nu], ["interval", opts.interval]] as const) {
    if (value % spacing !== 0) {
      throw new Error(
        `LAWA ${name} = ${value} training steps is not a multiple of the checkpoint spacing, ` +
          `${spacing} steps: use a multiple of ${spacing} (e.g. ${
            spacing * Math.max(1, Math.round(value / spacing))
          })`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------
// Schema: every member must hold the same tensors with the same shapes.

interface TensorLayout {
  name: string;
  shape: number[];
  isFloat: boolean;
}

function describe(ref: CheckpointRef): string {
  return `checkpoint at step ${ref.step} (${ref.path})`;
}

/** Open (headers only) and cross-check the checkpoints; returns the shared layout. */
async function openAndCheck(
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
// The accumulator: one float array per float tensor of the model.

/** Bytes of one member's chunk in Accumulator.sumOf: it and the sum stay in cache. */
const SUM_CHUNK_BYTES = 1 << 21;

/** Read exactly `into.length` bytes at `position` of an open file. */
async function readAt(file: Deno.FsFile, position: number, into: Uint8Array, path: string) {
  await file.seek(position, Deno.SeekMode.Start);
  let done = 0;
  while (done < into.length) {
    const n = await file.read(into.subarray(done));
    if (n === null) throw new Error(`${path}: truncated file at offset ${position + done}`);
    done += n;
  }
}

class Accumulator {
  private readonly sums = new Map<string, Float64Array | Float32Array>();
  /** Two scratch buffers, shared by reading (prefetch) and writing (encode while writing). */
  private buffers: [ArrayBuffer, ArrayBuffer];
  bytesRead = 0;
  checkpointReads = 0;

  constructor(
    private readonly layout: TensorLayout[],
    precision: "float64" | "float32",
    maxTensorBytes: number,
  ) {
    for (const t of layout) {
      if (!t.isFloat) continue;
      const n = numelOf(t.shape);
      this.sums.set(t.name, precision === "float64" ? new Float64Array(n) : new Float32Array(n));
    }
    this.buffers = [new ArrayBuffer(maxTensorBytes), new ArrayBuffer(maxTensorBytes)];
  }

  /**
   * acc = keep * acc + take * checkpoint, tensor by tensor. Two read buffers: the next
   * tensor is read while the current one is blended.
   */
  async blend(reader: CheckpointReader, keep: number, take: number): Promise<void> {
    const floats = this.layout.filter((t) => t.isFloat);
    const buffers = this.buffers.map((b) => new Uint8Array(b));
    let pending: Promise<Uint8Array> | null = null;
    try {
      if (floats.length > 0) pending = reader.readBytes(floats[0].name, buffers[0]);
      for (let i = 0; i < floats.length; i++) {
        const bytes: Uint8Array = await pending!;
        pending = i + 1 < floats.length
          ? reader.readBytes(floats[i + 1].name, buffers[(i + 1) % 2])
          : null;
        const dtype = reader.tensors.get(floats[i].name)!.dtype;
        blendInto(this.sums.get(floats[i].name)!, bytes, dtype, keep, take);
        this.bytesRead += bytes.length;
      }
    } finally {
      await pending?.catch(() => {});
      reader.close();
    }
    this.checkpointReads++;
  }

  /**
   * acc = the sum of `members` (a fresh LAWA window), chunk by chunk of each float
   * tensor: the same chunk of every member is read (all members at once, the next chunk
   * while this one is added), then added up while it is in cache. The accumulator is
   * written once instead of once per member, which is what bounded averaging speed (a
   * memory-bound pass per member); the sums are the same, in the same order, as member
   * by member. Memory: two chunk buffers per member, whatever the model's size.
   */
  async sumOf(members: CheckpointReader[]): Promise<void> {
    const files = new Map<string, Deno.FsFile>();
    const fileOf = async (path: string) => {
      let f = files.get(path);
      if (!f) files.set(path, f = await Deno.open(path, { read: true }));
      return f;
    };
    const chunks = members.map(
      () => [new ArrayBuffer(SUM_CHUNK_BYTES), new ArrayBuffer(SUM_CHUNK_BYTES)],
    );
    try {
      for (const t of this.layout) {
        if (!t.isFloat) continue;
        const acc = this.sums.get(t.name)!;
        const parts = members.map((m) => m.tensors.get(t.name)!);
        const perChunk = SUM_CHUNK_BYTES / 8; // elements: an F64 member's chunk fits too
        const read = (c: number) =>
          Promise.all(parts.map(async (p, j) => {
            const size = DTYPE_BYTES[p.dtype];
            const from = c * perChunk, to = Math.min(acc.length, from + perChunk);
            const bytes = new Uint8Array(chunks[j][c % 2], 0, (to - from) * size);
            await readAt(await fileOf(p.file), p.begin + from * size, bytes, p.file);
            return bytes;
          }));
        const nChunks = Math.ceil(acc.length / perChunk);
        let pending = read(0);
        for (let c = 0; c < nChunks; c++) {
          const got = await pending;
          if (c + 1 < nChunks) pending = read(c + 1);
          const part = acc.subarray(c * perChunk, Math.min(acc.length, (c + 1) * perChunk));
          got.forEach((bytes, j) => blendInto(part, bytes, parts[j].dtype, j === 0 ? 0 : 1, 1));
        }
        for (const p of parts) this.bytesRead += p.end - p.begin;
      }
    } finally {
      for (const f of files.values()) f.close();
    }
    this.checkpointReads += members.length;
  }

  /**
   * Write scale * acc as a safetensors file. Float tensors take the newest member's dtype
   * (or F32); integer tensors are copied from the newest member.
   */
  async write(
    path: string,
    newest: CheckpointReader,
    scale: number,
    dtype: "source" | "float32",
    metadata: Record<string, string>,
  ): Promise<void> {
    const specs: [string, TensorSpec][] = this.layout.map((t) => {
      const stored = newest.tensors.get(t.name)!.dtype;
      const out: DType = t.isFloat && dtype === "float32" ? "F32" : stored;
      return [t.name, { dtype: out, shape: t.shape }];
    });
    const writer = await SafetensorsWriter.create(path, specs, metadata);
    // Two output buffers: tensor i is written while tensor i+1 is encoded.
    let pendingWrite: Promise<void> | null = null;
    try {
      for (const [i, [name, spec]] of specs.entries()) {
        const need = numelOf(spec.shape) * DTYPE_BYTES[spec.dtype];
        if (this.buffers[i % 2].byteLength < need) this.buffers[i % 2] = new ArrayBuffer(need);
        const into = this.buffers[i % 2];
        const sum = this.sums.get(name);
        const bytes = sum
          ? encodeFloats(sum, spec.dtype, scale, into)
          : await newest.readBytes(name, new Uint8Array(into));
        await pendingWrite;
        pendingWrite = writer.write(name, bytes);
      }
      await pendingWrite;
    } catch (e) {
      await pendingWrite?.catch(() => {});
      await writer.abort();
      throw e;
    } finally {
      newest.close();
    }
    await writer.close();
  }
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
  let maxBytes = 0;
  for (const r of readers.values()) {
    for (const t of r.tensors.values()) maxBytes = Math.max(maxBytes, t.end - t.begin);
  }
  const acc = new Accumulator(layout, opts.accumulate, maxBytes);
  await Deno.mkdir(outDir, { recursive: true });

  const outputs: AveragedCheckpoint[] = [];
  const total = opts.method === "lawa" ? windows.length : blends.length;
  hooks.onProgress?.(0, total, "");
  const emit = async (step: number, sources: number[], scale: number) => {
    const file = checkpointFileName(step);
    const metadata: Record<string, string> = {
      format: "pt",
      method: opts.method,
      step: String(step),
      sources: JSON.stringify(sources),
      averaging: JSON.stringify(methodParams(opts)),
    };
    await acc.write(`${outDir}/${file}`, readers.get(step)!, scale, opts.dtype, metadata);
    const tokens = byStep.get(step)!.tokens;
    outputs.push({ step, ...(tokens !== undefined ? { tokens } : {}), file, sources });
    const from = sources.length <= 8
      ? `steps ${sources.join(", ")}`
      : `${sources.length} checkpoints, steps ${sources[0]}..${sources[sources.length - 1]}`;
    hooks.onProgress?.(outputs.length, total, `step ${step} <- ${from}`);
  };

  if (opts.method === "lawa") {
    const recomputeEvery = opts.recomputeEvery ?? opts.k;
    let inAcc: number[] | null = null;
    let incremental = 0;
    for (const w of windows) {
      hooks.signal?.throwIfAborted();
      const add = inAcc ? w.members.filter((s) => !inAcc!.includes(s)) : w.members;
      const remove = inAcc ? inAcc.filter((s) => !w.members.includes(s)) : [];
      const cheaper = add.length + remove.length < w.members.length;
      if (inAcc && cheaper && incremental < recomputeEvery) {
        for (const s of remove) await acc.blend(readers.get(s)!, 1, -1);
        for (const s of add) await acc.blend(readers.get(s)!, 1, 1);
        incremental++;
      } else {
        await acc.sumOf(w.members.map((s) => readers.get(s)!));
        incremental = 0;
      }
      inAcc = w.members;
      await emit(w.step, w.members, 1 / w.members.length);
    }
  } else {
    for (const b of blends) {
      hooks.signal?.throwIfAborted();
      await acc.blend(readers.get(b.step)!, b.keep, b.take);
      await emit(b.step, b.members, 1);
    }
  }
  return { outputs, skipped, checkpointReads: acc.checkpointReads, bytesRead: acc.bytesRead };
}

/** The params that define a method's output, for metadata and series.json. */
export function methodParams(opts: AverageOptions): Record<string, unknown> {
  const common = { dtype: opts.dtype, accumulate: opts.accumulate, start: opts.start };
  if (opts.method === "lawa") {
    return { method: "lawa", k: opts.k, nu: opts.nu, interval: opts.interval, ...common };
  }
  const blend = { step_size: opts.stepSize, init_point: opts.initPoint, ...common };
  if (opts.method === "ema") return { method: "ema", alpha: opts.alpha, ...blend };
  return { method: "swa", ...blend };
}

/** The most common gap between consecutive steps (the smallest one on a tie). */
export function typicalSpacing(steps: number[]): number {
  const sorted = [...steps].sort((a, b) => a - b);
  const counts = new Map<number, number>();
  for (let i = 1; i < sorted.length; i++) {
    const gap = sorted[i] - sorted[i - 1];
    if (gap > 0) counts.set(gap, (counts.get(gap) ?? 0) + 1);
  }
  let best = 1;
  let bestCount = 0;
  for (const [gap, count] of [...counts.entries()].sort((a, b) => a[0] - b[0])) {
    if (count > bestCount) [best, bestCount] = [gap, count];
  }
  return best;
}

/**
 * A series label such as "LAWA k=5 ν=2", "LAWA k=5 ν=1000 from step 21000", "EMA α=0.1",
 * "SWA from step 3000". A LAWA start is named so that two grids over the same revisions
 * (Pythia's Fig. 5 setting and its ablation) never share a label.
 */
export function seriesLabel(
  opts: Pick<AverageOptions, "method" | "k" | "nu" | "alpha" | "start">,
): string {
  if (opts.method === "lawa") {
    return `LAWA k=${opts.k} ν=${opts.nu}` + (opts.start > 0 ? ` from step ${opts.start}` : "");
  }
  if (opts.method === "ema") return `EMA α=${opts.alpha}`;
  return opts.start > 0 ? `SWA from step ${opts.start}` : "SWA";
}

// ---------------------------------------------------------------------------------------
// Linear interpolation (linear mode connectivity).

/**
 * Write alpha * θ_a + (1 - alpha) * θ_b to `outPath`. Float tensors are combined in
 * float64 and written in a's dtype (or float32); integer tensors are copied from a.
 */
export async function interpolate(
  a: string,
  b: string,
  alpha: number,
  outPath: string,
  options: { dtype?: "source" | "float32"; metadata?: Record<string, string> } = {},
): Promise<void> {
  if (!Number.isFinite(alpha)) throw new Error(`interpolate: alpha must be finite, got ${alpha}`);
  const { layout, readers } = await openAndCheck([{ step: 0, path: a }, { step: 1, path: b }]);
  const [ra, rb] = [readers.get(0)!, readers.get(1)!];
  const specs: [string, TensorSpec][] = layout.map((t) => {
    const stored = ra.tensors.get(t.name)!.dtype;
    return [t.name, {
      dtype: t.isFloat && options.dtype === "float32" ? "F32" : stored,
      shape: t.shape,
    }];
  });
  const metadata = {
    format: "pt",
    method: "interpolate",
    alpha: String(alpha),
    a,
    b,
    ...options.metadata,
  };
  const writer = await SafetensorsWriter.create(outPath, specs, metadata);
  try {
    for (const [i, [name, spec]] of specs.entries()) {
      if (!layout[i].isFloat) {
        await writer.write(name, await ra.readBytes(name));
        continue;
      }
      const acc = new Float64Array(numelOf(spec.shape)); // (numel,) one tensor at a time
      blendInto(acc, await ra.readBytes(name), ra.tensors.get(name)!.dtype, 0, alpha);
      blendInto(acc, await rb.readBytes(name), rb.tensors.get(name)!.dtype, 1, 1 - alpha);
      await writer.write(name, encodeFloats(acc, spec.dtype));
    }
  } catch (e) {
    await writer.abort();
    throw e;
  } finally {
    ra.close();
    rb.close();
  }
  await writer.close();
}
