// Faster BatchMatMul and Transpose kernels for the tfjs wasm backend.
//
// tfjs-backend-wasm 4.22 sends a matmul to XNNPACK's fast fully-connected kernel only
// when neither transpose flag is set and the batch is 1; anything else (every matmul
// gradient, the tied output head, attention's per-head products) falls to a naive
// single-threaded loop that is 5-30x slower. Its Transpose kernel is slow too (about
// 65 ns per number for attention's head split). This module re-registers both (and
// Unpack along a leading axis, as block copies):
//
// - Transpose is done in JavaScript directly on the wasm heap: axes that stay
//   neighbours are merged, runs that stay contiguous are block copies
//   (`copyWithin`), and the rest is a tiled 2-D copy. 20-40x faster than tfjs's.
// - BatchMatMul transposes explicitly where a flag is set (choosing between
//   op(A) op(B) and (op(B)^T op(A)^T)^T, whichever moves fewer numbers), folds a shared
//   right-hand matrix into one tall product, and runs a true batch (attention's 128
//   per-head products) as one XNNPACK call per batch entry on *views*: tensor ids
//   registered over slices of the operands' memory, so no tensor is created or copied
//   per entry (creating tensors per entry is what made a naive split slower than
//   tfjs's loop).
//
// Both lean on tfjs 4.22 internals (the backend's `wasm` module, `dataIdMap`,
// `registerTensor`, the 9-argument `_BatchMatMul` export); anything unexpected
// falls back to tfjs's own kernel for that call.
import * as tf from "@tensorflow/tfjs-core";

type Info = tf.TensorInfo;
export type KernelArgs = {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
};
export type KernelFn = (args: KernelArgs) => Info | Info[];

/** The parts of tfjs-backend-wasm 4.22's BackendWasm this module uses. */
interface WasmModule {
  HEAPU8: Uint8Array;
  _malloc(bytes: number): number;
  _free(pointer: number): void;
  _BatchMatMul?: (
    aId: number,
    aShape: number,
    aRank: number,
    bId: number,
    bShape: number,
    bRank: number,
    transposeA: number,
    transposeB: number,
    outId: number,
  ) => void;
  tfjs: {
    registerTensor(id: number, size: number, memoryOffset: number): void;
    disposeData(id: number): void;
  };
}
interface WasmBackend {
  wasm: WasmModule;
  dataIdNextNumber: number;
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): Info;
}

let installed = false;

/** Whether the fast kernels replaced tfjs's own on the wasm backend. */
export function fastWasmMatMulInstalled(): boolean {
  return installed;
}

const product = (xs: readonly number[]): number => xs.reduce((p, q) => p * q, 1);

function asWasm(backend: tf.KernelBackend): WasmBackend | null {
  const be = backend as unknown as Partial<WasmBackend>;
  const ok = be.wasm && typeof be.wasm._malloc === "function" &&
    typeof be.wasm.tfjs?.registerTensor === "function" && be.dataIdMap &&
    typeof be.makeOutput === "function" && typeof be.dataIdNextNumber === "number";
  return ok ? be as WasmBackend : null;
}

/** Byte offset of a tensor's data on the wasm heap. */
function offsetOf(be: WasmBackend, t: Info): number {
  const data = be.dataIdMap.get(t.dataId);
  if (!data) throw new Error("wasm kernels: tensor data is not on the wasm heap");
  return data.memoryOffset;
}

// ---------------------------------------------------------------------------------
// Transpose on the heap

/**
 * Simplify (shape, perm): drop size-1 axes and merge input axes that stay neighbours
 * in the same order. Returns the reduced input dims and the permutation over them.
 */
function reducePermutation(shape: number[], perm: number[]): { dims: number[]; perm: number[] } {
  const groups: { first: number; last: number; size: number }[] = []; // in output order
  for (const axis of perm) {
    if (shape[axis] === 1) continue;
    const prev = groups.at(-1);
    let adjacent = prev !== undefined && axis > prev.last;
    for (let k = (prev?.last ?? 0) + 1; adjacent && k < axis; k++) adjacent = shape[k] === 1;
    if (prev && adjacent) {
      prev.last = axis;
      prev.size *= shape[axis];
    } else {
      groups.push({ first: axis, last: axis, size: shape[axis] });
    }
  }
  const inputOrder = [...groups].sort((p, q) => p.first - q.first);
  return {
    dims: inputOrder.map((g) => g.size),
    perm: groups.map((g) => inputOrder.indexOf(g)),
  };
}

/** Input offsets (in elements) of every index of the given output-ordered axes. */
function baseOffsets(dims: number[], strides: number[], axes: number[]): number[] {
  let offsets = [0];
  for (const axis of axes) {
    const next: number[] = new Array(offsets.length * dims[axis]);
    let n = 0;
    for (const o of offsets) for (let i = 0; i < dims[axis]; i++) next[n++] = o + i * strides[axis];
    offsets = next;
  }
  return offsets;
}

const TILE = 8;
/** XNNPACK's weight packing, in transposed numbers per packed number. */
const PACK_COST = 2;

/**
 * heap[dst..] = transpose(heap[src..] viewed as `shape`, perm), element offsets into a
 * 4-byte view (Int32Array, so that float bit patterns are copied exactly).
 */
export function permuteOnHeap(
  heap: Int32Array,
  src: number,
  dst: number,
  shape: number[],
  perm: number[],
): void {
  const { dims, perm: p } = reducePermutation(shape, perm);
  const r = dims.length;
  const n = product(dims);
  if (p.every((axis, i) => axis === i)) {
    heap.copyWithin(dst, src, src + n);
    return;
  }
  const strides = dims.map((_, i) => product(dims.slice(i + 1)));
  if (p[r - 1] === r - 1) {
    // The innermost axis stays innermost: copy contiguous runs.
    const run = dims[r - 1];
    let out = dst;
    for (const o of baseOffsets(dims, strides, p.slice(0, r - 1))) {
      heap.copyWithin(out, src + o, src + o + run);
      out += run;
    }
    return;
  }
  // The innermost output axis is strided in the input: tiled 2-D copies.
  const rowAxis = p[r - 2], colAxis = p[r - 1];
  const rows = dims[rowAxis], cols = dims[colAxis];
  const rowStride = strides[rowAxis], colStride = strides[colAxis];
  let out = dst;
  for (const o of baseOffsets(dims, strides, p.slice(0, r - 2))) {
    const base = src + o;
    for (let i0 = 0; i0 < rows; i0 += TILE) {
      const i1 = Math.min(i0 + TILE, rows);
      for (let j0 = 0; j0 < cols; j0 += TILE) {
        const j1 = Math.min(j0 + TILE, cols);
        for (let i = i0; i < i1; i++) {
          const from = base + i * rowStride;
          const to = out + i * cols;
          for (let j = j0; j < j1; j++) heap[to + j] = heap[from + j * colStride];
        }
      }
    }
    out += rows * cols;
  }
}

function heap32(be: WasmBackend): Int32Array {
  return new Int32Array(be.wasm.HEAPU8.buffer);
}

// ---------------------------------------------------------------------------------
// Matrix products on XNNPACK through views

/**
 * out (M, N) = A (M, K) @ B (K, N), all row-major at the given byte offsets, through
 * tfjs's own wasm BatchMatMul on its fast path. The operands are registered as
 * temporary tensor ids over the memory (views), so nothing is allocated or copied.
 */
function gemm(
  be: WasmBackend,
  shapes: number,
  a: number,
  b: number,
  out: number,
  M: number,
  K: number,
  N: number,
): void {
  const { wasm } = be;
  const ia = be.dataIdNextNumber++, ib = be.dataIdNextNumber++, io = be.dataIdNextNumber++;
  wasm.tfjs.registerTensor(ia, M * K, a);
  wasm.tfjs.registerTensor(ib, K * N, b);
  wasm.tfjs.registerTensor(io, M * N, out);
  const dims = new Int32Array(wasm.HEAPU8.buffer, shapes, 6);
  dims[0] = 1, dims[1] = M, dims[2] = K, dims[3] = 1, dims[4] = K, dims[5] = N;
  try {
    wasm._BatchMatMul!(ia, shapes, 3, ib, shapes + 12, 3, 0, 0, io);
  } finally {
    // Disposing b's id also frees the XNNPACK operator cached on it.
    wasm.tfjs.disposeData(ia);
    wasm.tfjs.disposeData(ib);
    wasm.tfjs.disposeData(io);
  }
}

/**
 * out[i] = A[i] @ B[i] for i < batch, where an operand with batch 1 is shared. A shared
 * B folds the whole batch of A into one tall product.
 */
function gemmBatched(
  be: WasmBackend,
  a: number,
  batchA: number,
  b: number,
  batchB: number,
  out: number,
  batch: number,
  M: number,
  K: number,
  N: number,
): void {
  const shapes = be.wasm._malloc(24) >>> 0;
  try {
    if (batchB === 1) {
      gemm(be, shapes, a, b, out, batchA * M, K, N);
      return;
    }
    const aStep = batchA === 1 ? 0 : 4 * M * K;
    for (let i = 0; i < batch; i++) {
      gemm(be, shapes, a + i * aStep, b + i * 4 * K * N, out + i * 4 * M * N, M, K, N);
    }
  } finally {
    be.wasm._free(shapes);
  }
}

// ---------------------------------------------------------------------------------
// Kernels

function fastTranspose(original: KernelFn, args: KernelArgs): Info {
  const x = args.inputs.x as Info;
  const perm = (args.attrs as { perm: number[] }).perm;
  const be = asWasm(args.backend);
  const { perm: reduced } = reducePermutation(x.shape, perm);
  if (
    !be || (x.dtype !== "float32" && x.dtype !== "int32") ||
    reduced.every((axis, i) => axis === i)
  ) {
    return original(args) as Info; // other dtypes, and no-op permutations (a clone)
  }
  const out = be.makeOutput(perm.map((axis) => x.shape[axis]), x.dtype);
  permuteOnHeap(heap32(be), offsetOf(be, x) / 4, offsetOf(be, out) / 4, x.shape, perm);
  return out;
}

function fastBatchMatMul(original: KernelFn, args: KernelArgs): Info {
  const be = asWasm(args.backend);
  const { a, b } = args.inputs as { a: Info; b: Info };
  const { transposeA: tA, transposeB: tB } = (args.attrs ?? {}) as {
    transposeA: boolean;
    transposeB: boolean;
  };
  const ra = a.shape.length, rb = b.shape.length;
  if (
    !be || typeof be.wasm._BatchMatMul !== "function" || a.dtype !== "float32" ||
    b.dtype !== "float32" || ra < 2 || rb < 2
  ) {
    return original(args) as Info;
  }
  const M = tA ? a.shape[ra - 1] : a.shape[ra - 2];
  const K = tA ? a.shape[ra - 2] : a.shape[ra - 1];
  const Kb = tB ? b.shape[rb - 1] : b.shape[rb - 2];
  const N = tB ? b.shape[rb - 2] : b.shape[rb - 1];
  const batchA = product(a.shape.slice(0, -2)), batchB = product(b.shape.slice(0, -2));
  if (K !== Kb || M * N * K === 0) return original(args) as Info; // tfjs's error / zeros
  const batchShape = tf.broadcast_util.assertAndGetBroadcastShape(
    a.shape.slice(0, -2),
    b.shape.slice(0, -2),
  );
  const batch = product(batchShape);
  if ((batchA !== batch && batchA !== 1) || (batchB !== batch && batchB !== 1)) {
    return original(args) as Info; // partial broadcasting: rare, left to tfjs
  }
  const out = be.makeOutput([...batchShape, M, N], "float32");
  const scratch: number[] = [];
  const alloc = (floats: number): number => {
    const p = be.wasm._malloc(4 * floats) >>> 0;
    scratch.push(p);
    return p;
  };
  /** A copy of x, viewed as (batch, rows, cols), with its last two axes swapped. */
  const transposed = (x: Info, batchX: number, rows: number, cols: number): number => {
    const dst = alloc(batchX * rows * cols);
    permuteOnHeap(heap32(be), offsetOf(be, x) / 4, dst / 4, [batchX, rows, cols], [0, 2, 1]);
    return dst;
  };
  try {
    // Numbers moved: explicit transposes, plus XNNPACK's packing of the right-hand
    // operand, which was measured at about twice the cost of a transpose per number.
    const sizeA = batchA * M * K, sizeB = batchB * K * N, sizeOut = batch * M * N;
    const direct = (tA ? sizeA : 0) + (tB ? sizeB : 0) + PACK_COST * sizeB;
    const swapped = (tA ? 0 : sizeA) + (tB ? 0 : sizeB) + sizeOut + PACK_COST * sizeA;
    if (direct <= swapped) {
      // op(A) as (batchA, M, K), op(B) as (batchB, K, N), out (batch, M, N).
      const a3 = tA ? transposed(a, batchA, K, M) : offsetOf(be, a);
      const b3 = tB ? transposed(b, batchB, N, K) : offsetOf(be, b);
      gemmBatched(be, a3, batchA, b3, batchB, offsetOf(be, out), batch, M, K, N);
    } else {
      // out^T (batch, N, M) = op(B)^T (batchB, N, K) @ op(A)^T (batchA, K, M).
      const bt = tB ? offsetOf(be, b) : transposed(b, batchB, K, N);
      const at = tA ? offsetOf(be, a) : transposed(a, batchA, M, K);
      const outT = alloc(sizeOut);
      gemmBatched(be, bt, batchB, at, batchA, outT, batch, N, K, M);
      permuteOnHeap(heap32(be), outT / 4, offsetOf(be, out) / 4, [batch, N, M], [0, 2, 1]);
    }
  } finally {
    for (const p of scratch) be.wasm._free(p);
  }
  return out;
}

/**
 * Unpack (tf.unstack) along an axis with nothing before it, such as attention's q, k, v
 * split: every output is one contiguous block of the input, copied with copyWithin.
 * tfjs-wasm 4.22 slices each output through its general Slice kernel instead.
 */
function fastUnpack(original: KernelFn, args: KernelArgs): Info[] {
  const be = asWasm(args.backend);
  const value = args.inputs.value as Info;
  const rank = value.shape.length;
  const raw = (args.attrs as { axis: number }).axis;
  const axis = raw < 0 ? raw + rank : raw;
  if (
    !be || (value.dtype !== "float32" && value.dtype !== "int32") ||
    product(value.shape.slice(0, axis)) !== 1
  ) {
    return original(args) as Info[];
  }
  const outShape = value.shape.filter((_, i) => i !== axis);
  const inner = product(outShape);
  const outs = Array.from(
    { length: value.shape[axis] },
    () => be.makeOutput(outShape, value.dtype),
  );
  const heap = heap32(be); // after the allocations, which may grow the heap
  const src = offsetOf(be, value) / 4;
  outs.forEach((out, i) => {
    const dst = offsetOf(be, out) / 4;
    heap.copyWithin(dst, src + i * inner, src + (i + 1) * inner);
  });
  return outs;
}

/** Re-register a wasm kernel as `fn`, which may call the kernel it replaces (`original`). */
export function replaceWasmKernel(
  name: string,
  fn: (original: KernelFn, args: KernelArgs) => Info | Info[],
): void {
  const config = tf.getKernel(name, "wasm");
  if (!config) throw new Error(`wasm backend has no ${name} kernel to replace`);
  const original = config.kernelFunc as KernelFn;
  tf.unregisterKernel(name, "wasm");
  tf.registerKernel({
    kernelName: name,
    backendName: "wasm",
    setupFunc: config.setupFunc,
    kernelFunc: ((args: KernelArgs) => fn(original, args)) as unknown as tf.KernelFunc,
  });
}

/** Replace the wasm BatchMatMul and Transpose kernels (once the wasm backend is registered). */
export function installFastWasmMatMul(): void {
  if (installed) return;
  if (!tf.getKernel("BatchMatMul", "wasm") || !tf.getKernel("Transpose", "wasm")) {
    throw new Error("wasm backend has no BatchMatMul / Transpose kernel to replace");
  }
  replaceWasmKernel("BatchMatMul", fastBatchMatMul);
  replaceWasmKernel("Transpose", fastTranspose);
  if (tf.getKernel("Unpack", "wasm")) replaceWasmKernel("Unpack", fastUnpack);
  installed = true;
}
