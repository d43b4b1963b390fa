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
  type Window,
} from "./plan.ts";

/** A checkpoint to average: the training step it was taken at and its file (or folder/index). */
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

interface TensorLayout {
  name: string;
  shape: number[];
  isFloat: boolean;
}

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
// The accumulator: one float array per float tensor of the model.

/** Bytes of one member's chunk in Accumulator.sumOf: it and the sum stay in cache. */
const SUM_CHUNK_BYTES = 1 << 21;

/**
 * acc = xs[0] + xs[1] + ... in float64, up to four members per pass. Additions run left
 * to right in member order and a Float64Array holds a double exactly, so the result is
 * bit-identical to adding one member per pass, with fewer loads and stores of acc.
 */
function sumF32Into(acc: Float64Array, xs: Float32Array[]): void {
  const n = acc.length;
  let j = 0;
  for (let first = true; j < xs.length; first = false) {
    const m = Math.min(4, xs.length - j);
    const [a, b, c, d] = [xs[j], xs[j + 1], xs[j + 2], xs[j + 3]];
    if (first) {
      if (m === 4) { for (let i = 0; i < n; i++) acc[i] = a[i] + b[i] + c[i] + d[i]; }
      else if (m === 3) { for (let i = 0; i < n; i++) acc[i] = a[i] + b[i] + c[i]; }
      else if (m === 2) { for (let i = 0; i < n; i++) acc[i] = a[i] + b[i]; }
      else acc.set(a);
    } else {
      if (m === 4) { for (let i = 0; i < n; i++) acc[i] = acc[i] + a[i] + b[i] + c[i] + d[i]; }
      else if (m === 3) { for (let i = 0; i < n; i++) acc[i] = acc[i] + a[i] + b[i] + c[i]; }
      else if (m === 2) { for (let i = 0; i < n; i++) acc[i] = acc[i] + a[i] + b[i]; }
      else for (let i = 0; i < n; i++) acc[i] += a[i];
    }
    j += m;
  }
}

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
          if (part instanceof Float64Array && parts.every((p) => p.dtype === "F32")) {
            sumF32Into(part, got.map((b) => new Float32Array(b.buffer, 0, part.length)));
          } else {
            got.forEach((bytes, j) => blendInto(part, bytes, parts[j].dtype, j === 0 ? 0 : 1, 1));
          }
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
