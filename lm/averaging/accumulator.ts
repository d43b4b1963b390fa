// The running sum behind every averaging method, and how an average reaches its file.
//
// Memory is what bounds averaging a large model, and touching fresh memory is what
// bounds its speed (first-touching a 400 MB accumulator costs more than summing into
// it), so the model-sized sums exist only when a method needs them: EMA/SWA, and a LAWA
// window whose sum the next window updates incrementally. A fresh LAWA window that is
// not reused is summed chunk by chunk across its members and each chunk's average goes
// straight to the output file: a few MiB of buffers, whatever the model's size.
//
// Every float dtype (F32, F64, F16, BF16) is decoded and accumulated in float64 (or
// float32 if asked); additions run in member order, so the streamed and the kept sums
// are bit-identical. Integer tensors are copied from the newest member.
import { SafetensorsWriter, type TensorSpec } from "../checkpoints/safetensors.ts";
import {
  blendInto,
  type DType,
  DTYPE_BYTES,
  encodeFloats,
  numelOf,
} from "../checkpoints/dtypes.ts";
import type { CheckpointReader } from "../checkpoints/sharded.ts";

/** One tensor of the checkpoints being averaged (the same in every member). */
export interface TensorLayout {
  name: string;
  shape: number[];
  isFloat: boolean;
}

/** One averaged checkpoint to write: scale * sum, with the newest member's dtypes. */
export interface OutputFile {
  path: string;
  /** The newest member: source of the stored dtypes and of the integer tensors. */
  newest: CheckpointReader;
  scale: number;
  /** Float tensors keep the newest member's dtype, or become float32. */
  dtype: "source" | "float32";
  metadata: Record<string, string>;
  /** false: the caller fsyncs the file itself (the pipeline's cache does on commit). */
  durable: boolean;
}

/** Elements per chunk: one member's chunk, the sum's chunk and the output's stay in cache. */
const CHUNK_ELEMENTS = 1 << 17;

type Sums = Float64Array | Float32Array;

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

/** acc = the sum of members' chunks (`bytes[j]` stored as `dtypes[j]`), in member order. */
function sumChunkInto(acc: Sums, bytes: Uint8Array[], dtypes: DType[]): void {
  if (acc instanceof Float64Array && dtypes.every((d) => d === "F32")) {
    sumF32Into(acc, bytes.map((b) => new Float32Array(b.buffer, b.byteOffset, acc.length)));
  } else {
    bytes.forEach((b, j) => blendInto(acc, b, dtypes[j], j === 0 ? 0 : 1, 1));
  }
}

export class Accumulator {
  /** Model-sized sums, made on first need (EMA/SWA, or a LAWA window that is reused). */
  private readonly sums = new Map<string, Sums>();
  /** Per member: two chunk buffers (one being read while the other is summed). */
  private readonly memberChunks: [ArrayBuffer, ArrayBuffer][] = [];
  /** Two output pieces (one being written while the next is encoded). */
  private readonly pieces: [ArrayBuffer, ArrayBuffer] = [
    new ArrayBuffer(CHUNK_ELEMENTS * 8),
    new ArrayBuffer(CHUNK_ELEMENTS * 8),
  ];
  /** The sum of a chunk that is written and not kept. */
  private readonly scratch: Sums;
  bytesRead = 0;
  checkpointReads = 0;

  constructor(
    private readonly layout: TensorLayout[],
    private readonly precision: "float64" | "float32",
  ) {
    this.scratch = precision === "float64"
      ? new Float64Array(CHUNK_ELEMENTS)
      : new Float32Array(CHUNK_ELEMENTS);
  }

  private sumOf(t: TensorLayout): Sums {
    let sum = this.sums.get(t.name);
    if (!sum) {
      const n = numelOf(t.shape);
      sum = this.precision === "float64" ? new Float64Array(n) : new Float32Array(n);
      this.sums.set(t.name, sum);
    }
    return sum;
  }

  /** sums = keep * sums + take * checkpoint, chunk by chunk (the next read meanwhile). */
  async blend(reader: CheckpointReader, keep: number, take: number): Promise<void> {
    try {
      for (const t of this.layout) {
        if (!t.isFloat) continue;
        const sum = this.sumOf(t);
        const dtype = reader.tensors.get(t.name)!.dtype;
        for await (const { from, to, bytes: [b] } of this.chunksOf([reader], t)) {
          blendInto(sum.subarray(from, to), b, dtype, keep, take);
        }
      }
    } finally {
      reader.close();
    }
    this.checkpointReads++;
  }

  /** Write scale * sums (as kept by `blend` or `sumAndWrite(..., keep)`). */
  async write(out: OutputFile): Promise<void> {
    await this.writeFile(out, (t, dtype) => this.encodePieces(this.sumOf(t), dtype, out.scale));
  }

  /**
   * Write scale * (the sum of `members`), a fresh LAWA window, summing chunk by chunk:
   * the same chunk of every member is read (all members at once, the next chunk while
   * this one is added), added up in cache, scaled, encoded and written. With `keep`, the
   * sum also stays in the accumulator for the next window's incremental update.
   */
  async sumAndWrite(members: CheckpointReader[], out: OutputFile, keep: boolean): Promise<void> {
    try {
      await this.writeFile(out, (t, dtype) => this.sumPieces(members, t, keep, dtype, out.scale));
    } finally {
      for (const m of members) m.close();
    }
    this.checkpointReads += members.length;
  }

  private async writeFile(
    out: OutputFile,
    floatPieces: (t: TensorLayout, dtype: DType) => AsyncIterable<Uint8Array>,
  ): Promise<void> {
    const specs: [string, TensorSpec][] = this.layout.map((t) => {
      const stored = out.newest.tensors.get(t.name)!.dtype;
      const dtype: DType = t.isFloat && out.dtype === "float32" ? "F32" : stored;
      return [t.name, { dtype, shape: t.shape }];
    });
    const writer = await SafetensorsWriter.create(out.path, specs, out.metadata);
    try {
      for (const [i, t] of this.layout.entries()) {
        if (t.isFloat) await writer.writePieces(t.name, floatPieces(t, specs[i][1].dtype));
        else await writer.write(t.name, await out.newest.readBytes(t.name));
      }
    } catch (e) {
      await writer.abort();
      throw e;
    } finally {
      out.newest.close();
    }
    await writer.close({ durable: out.durable });
  }

  /** scale * values encoded as `dtype`, a chunk at a time, in the two piece buffers. */
  private async *encodePieces(values: Sums, dtype: DType, scale: number) {
    for (let from = 0, c = 0; from < values.length; from += CHUNK_ELEMENTS, c++) {
      const part = values.subarray(from, Math.min(values.length, from + CHUNK_ELEMENTS));
      yield encodeFloats(part, dtype, scale, this.pieces[c % 2]);
    }
  }

  /** scale * (the members' sum of tensor t), a chunk at a time; kept in sums if `keep`. */
  private async *sumPieces(
    members: CheckpointReader[],
    t: TensorLayout,
    keep: boolean,
    dtype: DType,
    scale: number,
  ) {
    const kept = keep ? this.sumOf(t) : null;
    const dtypes = members.map((m) => m.tensors.get(t.name)!.dtype);
    for await (const { from, to, bytes, index } of this.chunksOf(members, t)) {
      const sum = kept ? kept.subarray(from, to) : this.scratch.subarray(0, to - from);
      sumChunkInto(sum, bytes, dtypes);
      yield encodeFloats(sum, dtype, scale, this.pieces[index % 2]);
    }
  }

  /**
   * Tensor t of every reader, a chunk of elements [from, to) at a time: the same chunk of
   * all readers at once, the next chunk read while the caller works on this one.
   */
  private async *chunksOf(readers: CheckpointReader[], t: TensorLayout) {
    while (this.memberChunks.length < readers.length) {
      const bytes = CHUNK_ELEMENTS * 8; // an F64 member's chunk fits too
      this.memberChunks.push([new ArrayBuffer(bytes), new ArrayBuffer(bytes)]);
    }
    const n = numelOf(t.shape);
    const sizes = readers.map((r) => DTYPE_BYTES[r.tensors.get(t.name)!.dtype]);
    const range = (c: number) => [c * CHUNK_ELEMENTS, Math.min(n, (c + 1) * CHUNK_ELEMENTS)];
    const read = (c: number) => {
      const [from, to] = range(c);
      return Promise.all(readers.map((r, j) => {
        const into = new Uint8Array(this.memberChunks[j][c % 2], 0, (to - from) * sizes[j]);
        return r.readSlice(t.name, from * sizes[j], into);
      }));
    };
    const nChunks = Math.ceil(n / CHUNK_ELEMENTS);
    let pending: Promise<Uint8Array[]> | null = nChunks > 0 ? read(0) : null;
    try {
      for (let c = 0; c < nChunks; c++) {
        const bytes = await pending!;
        pending = c + 1 < nChunks ? read(c + 1) : null;
        for (const b of bytes) this.bytesRead += b.length;
        const [from, to] = range(c);
        yield { from, to, bytes, index: c };
      }
    } finally {
      await pending?.catch(() => {});
    }
  }
}
