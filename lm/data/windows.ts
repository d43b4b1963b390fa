// Token files and the windows training and evaluation read from them.
//
// A token file is nanoGPT's layout: raw little-endian uint16 (vocab <= 65536) or uint32
// ids, nothing else. `openTokens` keeps small files in memory and reads big ones through
// a file handle (seek + read of just the window asked for), so a corpus larger than memory
// still trains. Windows are (B, T+1) slices: inputs x = tokens[o .. o+T), targets
// y = tokens[o+1 .. o+T+1).
//
// Random training offsets come from a small hand-written PRNG (mulberry32 seeded by a
// hash of (seed, step, micro)) rather than Math.random, so that the batch for a given
// step is the same on every run and after a resume, with nothing to save.

export type TokenDtype = "uint16" | "uint32";

/** meta.json of a tokenize step's output. */
export interface TokenMeta {
  format: "tokens/1";
  vocab_size: number;
  dtype: TokenDtype;
  tokenizer: { kind: "gpt2" | "compact" | "hf"; [detail: string]: unknown };
  /** Held-out domains, each with a `val-<domain>.bin`. */
  domains: string[];
  /** Tokens per file: { train: n, "val-<domain>": n }. */
  counts: Record<string, number>;
  /** End-of-text id (appended after every document). */
  eot_id: number;
  /** Id that stands for every GPT-2 id outside a compact vocabulary (null for gpt2). */
  unk_id: number | null;
  /** Compact id -> GPT-2 id for ids below unk_id (null for gpt2, whose ids are GPT-2's). */
  decode: number[] | null;
}

/** File name of a split in a tokenize output: "train" -> "train.bin", "val-news" -> "val-news.bin". */
export function tokenFileName(split: string): string {
  return `${split}.bin`;
}

export function dtypeFor(vocabSize: number): TokenDtype {
  return vocabSize <= 65536 ? "uint16" : "uint32";
}

export async function readMeta(dir: string): Promise<TokenMeta> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${dir}/meta.json`);
  } catch {
    throw new Error(`tokens: ${dir}/meta.json not found (is this the output of a tokenize step?)`);
  }
  const meta = JSON.parse(text) as TokenMeta;
  if (meta.format !== "tokens/1") {
    throw new Error(`tokens: ${dir}/meta.json has unknown format ${JSON.stringify(meta.format)}`);
  }
  if (meta.dtype !== "uint16" && meta.dtype !== "uint32") {
    throw new Error(`tokens: ${dir}/meta.json: dtype must be uint16 or uint32, got ${meta.dtype}`);
  }
  return meta;
}

export interface TokenFile {
  /** Number of tokens in the file. */
  length: number;
  /** Tokens [start, start + count) as int32. */
  read(start: number, count: number): Int32Array;
  close(): void;
}

const IN_MEMORY_LIMIT_BYTES = 64 * 1024 * 1024;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Little-endian bytes -> int32 ids. */
function decodeIds(bytes: Uint8Array, dtype: TokenDtype, out: Int32Array): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dtype === "uint16") {
    if (LITTLE_ENDIAN_HOST && bytes.byteOffset % 2 === 0) {
      out.set(new Uint16Array(bytes.buffer, bytes.byteOffset, out.length));
    } else for (let i = 0; i < out.length; i++) out[i] = view.getUint16(2 * i, true);
  } else {
    for (let i = 0; i < out.length; i++) out[i] = view.getUint32(4 * i, true);
  }
}

/** Number of ids in a token file; one clear error when it is missing or cut mid-id. */
export async function tokenCount(path: string, dtype: TokenDtype): Promise<number> {
  const width = dtype === "uint16" ? 2 : 4;
  let size: number;
  try {
    size = (await Deno.stat(path)).size;
  } catch {
    throw new Error(`tokens: file not found: ${path}`);
  }
  if (size % width !== 0) {
    throw new Error(`tokens: ${path} has ${size} bytes, not a whole number of ${dtype} ids`);
  }
  return size / width;
}

/**
 * Open a token file. `opts.inMemoryLimitBytes` (default 64 MiB): files up to this size
 * are read whole, larger ones window by window through a file handle.
 */
export async function openTokens(
  path: string,
  dtype: TokenDtype,
  opts: { inMemoryLimitBytes?: number } = {},
): Promise<TokenFile> {
  const width = dtype === "uint16" ? 2 : 4;
  const length = await tokenCount(path, dtype);
  const size = length * width;
  const check = (start: number, count: number) => {
    if (!Number.isInteger(start) || !Number.isInteger(count) || start < 0 || count < 0) {
      throw new Error(`tokens: bad read(${start}, ${count}) of ${path}`);
    }
    if (start + count > length) {
      throw new Error(
        `tokens: read(${start}, ${count}) past the end of ${path} (${length} tokens)`,
      );
    }
  };

  if (size <= (opts.inMemoryLimitBytes ?? IN_MEMORY_LIMIT_BYTES)) {
    const all = new Int32Array(length);
    decodeIds(await Deno.readFile(path), dtype, all);
    return {
      length,
      read(start, count) {
        check(start, count);
        return all.slice(start, start + count);
      },
      close() {},
    };
  }

  const file = await Deno.open(path, { read: true });
  return {
    length,
    read(start, count) {
      check(start, count);
      const bytes = new Uint8Array(count * width);
      file.seekSync(start * width, Deno.SeekMode.Start);
      let filled = 0;
      while (filled < bytes.length) {
        const n = file.readSync(bytes.subarray(filled));
        if (n === null || n === 0) throw new Error(`tokens: ${path} ended early (truncated?)`);
        filled += n;
      }
      const out = new Int32Array(count);
      decodeIds(bytes, dtype, out);
      return out;
    },
    close() {
      file.close();
    },
  };
}

// ---------------------------------------------------------------------------------------
// Deterministic randomness

/** 32-bit integer hash (lowbias32 by Chris Wellons): spreads nearby inputs far apart. */
function hash32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** mulberry32: a tiny PRNG with a 32-bit state; returns uint32 values. */
export function mulberry32(state: number): () => number {
  let s = state >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** The PRNG state for a (seed, step, micro) triple. */
export function batchState(seed: number, step: number, micro: number): number {
  let h = hash32(seed >>> 0);
  h = hash32((h ^ (step >>> 0)) >>> 0);
  h = hash32((h ^ (micro >>> 0)) >>> 0);
  return h;
}

/** Uniform integer in [0, n) from two 32-bit draws (53 bits: fine for any file length). */
function uniformBelow(next: () => number, n: number): number {
  const hi = next() >>> 5; // 27 bits
  const lo = next() >>> 6; // 26 bits
  const u = (hi * 67108864 + lo) / 9007199254740992; // [0, 1)
  return Math.floor(u * n);
}

// ---------------------------------------------------------------------------------------
// Windows

export interface Batch {
  /** (B, T) inputs, row-major. */
  x: Int32Array;
  /** (B, T) next-token targets, row-major. */
  y: Int32Array;
}

function copyWindow(window: Int32Array, row: number, seqLen: number, batch: Batch): void {
  batch.x.set(window.subarray(0, seqLen), row * seqLen);
  batch.y.set(window.subarray(1, seqLen + 1), row * seqLen);
}

/**
 * B random windows of T+1 tokens. Offsets depend only on (seed, step, micro) and the
 * file length, so the same call gives the same batch on every run.
 */
export function trainBatch(
  file: TokenFile,
  batchSize: number,
  seqLen: number,
  seed: number,
  step: number,
  micro = 0,
): Batch {
  if (file.length < seqLen + 1) {
    throw new Error(
      `tokens: training file has ${file.length} tokens, fewer than seq_len + 1 = ${seqLen + 1}`,
    );
  }
  const next = mulberry32(batchState(seed, step, micro));
  const starts = file.length - seqLen; // valid offsets: 0 .. length - T - 1
  const batch: Batch = {
    x: new Int32Array(batchSize * seqLen),
    y: new Int32Array(batchSize * seqLen),
  };
  for (let b = 0; b < batchSize; b++) {
    const offset = uniformBelow(next, starts);
    copyWindow(file.read(offset, seqLen + 1), b, seqLen, batch);
  }
  return batch;
}

/** Same as trainBatch (the name used in the data-flow description). */
export const trainWindows = trainBatch;

/** Start offsets of the evaluation windows: slot i covers tokens [i*T, i*T + T]. */
export function evalOffsets(length: number, seqLen: number, maxWindows: number): number[] {
  const slots = Math.floor((length - 1) / seqLen);
  const count = Math.min(slots, maxWindows);
  const offsets: number[] = [];
  for (let i = 0; i < count; i++) offsets.push(Math.floor((i * slots) / count) * seqLen);
  return offsets;
}

/**
 * A fixed, ordered set of non-overlapping windows: all of them from the start when the
 * file holds at most `maxWindows`, else `maxWindows` evenly spaced ones. (count, T) each.
 */
export function evalWindows(
  file: TokenFile,
  seqLen: number,
  maxWindows: number,
): Batch & { count: number } {
  if (file.length < seqLen + 1) {
    throw new Error(
      `tokens: evaluation file has ${file.length} tokens, fewer than seq_len + 1 = ${seqLen + 1}`,
    );
  }
  const offsets = evalOffsets(file.length, seqLen, maxWindows);
  const batch: Batch = {
    x: new Int32Array(offsets.length * seqLen),
    y: new Int32Array(offsets.length * seqLen),
  };
  offsets.forEach((o, i) => copyWindow(file.read(o, seqLen + 1), i, seqLen, batch));
  return { ...batch, count: offsets.length };
}

/** Write ids as a token file (little-endian, nanoGPT layout). */
export async function writeTokens(path: string, ids: ArrayLike<number>, dtype: TokenDtype) {
  const width = dtype === "uint16" ? 2 : 4;
  const bytes = new Uint8Array(ids.length * width);
  if (LITTLE_ENDIAN_HOST) {
    const typed = dtype === "uint16"
      ? new Uint16Array(bytes.buffer)
      : new Uint32Array(bytes.buffer);
    typed.set(ids);
  } else {
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < ids.length; i++) {
      if (dtype === "uint16") view.setUint16(2 * i, ids[i], true);
      else view.setUint32(4 * i, ids[i], true);
    }
  }
  await Deno.writeFile(path, bytes);
}
