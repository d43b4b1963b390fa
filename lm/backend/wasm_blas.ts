// Matrix products of the tfjs wasm backend in a native BLAS (lm/backend/blas.ts).
//
// Re-registers the wasm BatchMatMul and _FusedMatMul kernels (MatMul is BatchMatMul in
// tfjs 4) so that, while a BLAS is switched on, every product (forward and backward,
// both transpose flags, batched or shared operands) is one cblas_sgemm per batch entry
// on Float32Array views of the operands' bytes in the wasm heap: no copies, and no
// explicit transposes, since sgemm takes the flags. The views are made after the output
// is allocated and nothing allocates during the calls, so the heap cannot move under
// the BLAS. Fused activations are applied in place after the product (which also fixes
// tfjs-wasm 4.22's own _FusedMatMul, wrong with a batched left operand and an
// activation other than linear). Also re-registered: Sum over leading axes (a product
// with a row of ones) and Identity (shares the data instead of copying it). Anything
// else (other dtypes, partial broadcasting, prelu) goes to the kernel registered before
// (lm/backend/wasm_fast.ts's).
import * as tf from "@tensorflow/tfjs-core";
import type { Blas } from "./blas.ts";
import { type KernelArgs, type KernelFn, replaceWasmKernel } from "./wasm_fast.ts";

type Info = tf.TensorInfo;

/** The parts of tfjs-backend-wasm 4.22's BackendWasm used here. */
interface WasmBackend {
  wasm: { HEAPU8: Uint8Array; _malloc(bytes: number): number; _free(pointer: number): void };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): Info;
}

let active: Blas | null = null;
let installed = false;

/** Route wasm matrix products to this BLAS (null: back to the wasm kernels). */
export function useBlas(blas: Blas | null): void {
  active = blas;
}

/** The BLAS wasm products run on now, or null. */
export function activeBlas(): Blas | null {
  return active;
}

const product = (xs: readonly number[]): number => xs.reduce((p, q) => p * q, 1);

function asWasm(backend: tf.KernelBackend): WasmBackend | null {
  const be = backend as unknown as Partial<WasmBackend>;
  return be.wasm?.HEAPU8 && be.dataIdMap && typeof be.makeOutput === "function"
    ? be as WasmBackend
    : null;
}

/** Offset in float32 elements of a tensor's data on the wasm heap. */
function at(be: WasmBackend, t: Info): number {
  const data = be.dataIdMap.get(t.dataId);
  if (!data) throw new Error("wasm BLAS kernels: tensor data is not on the wasm heap");
  return data.memoryOffset / 4;
}

interface Plan {
  M: number;
  K: number;
  N: number;
  batchA: number;
  batchB: number;
  batch: number;
  outShape: number[];
}

/** Sizes of op(A) op(B) with batch broadcasting, or null where the BLAS path does not apply. */
function plan(a: Info, b: Info, tA: boolean, tB: boolean): Plan | null {
  const ra = a.shape.length, rb = b.shape.length;
  if (a.dtype !== "float32" || b.dtype !== "float32" || ra < 2 || rb < 2) return null;
  const M = tA ? a.shape[ra - 1] : a.shape[ra - 2];
  const K = tA ? a.shape[ra - 2] : a.shape[ra - 1];
  const Kb = tB ? b.shape[rb - 1] : b.shape[rb - 2];
  const N = tB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (K !== Kb || M * N * K === 0) return null; // tfjs's own error / zero-size handling
  const batchA = product(a.shape.slice(0, -2)), batchB = product(b.shape.slice(0, -2));
  const batchShape = tf.broadcast_util.assertAndGetBroadcastShape(
    a.shape.slice(0, -2),
    b.shape.slice(0, -2),
  );
  const batch = product(batchShape);
  if ((batchA !== batch && batchA !== 1) || (batchB !== batch && batchB !== 1)) return null;
  return { M, K, N, batchA, batchB, batch, outShape: [...batchShape, M, N] };
}

/**
 * out = op(A) op(B) (+ beta * out) for every batch entry, on the heap. A shared right
 * operand with an untransposed, batched left one folds into one tall product.
 */
function run(
  blas: Blas,
  heap: Float32Array,
  p: Plan,
  a: number,
  b: number,
  out: number,
  tA: boolean,
  tB: boolean,
  beta: number,
): void {
  const { M, K, N, batchA, batchB, batch } = p;
  const lda = tA ? M : K, ldb = tB ? K : N;
  const sizeA = M * K, sizeB = K * N, sizeOut = M * N;
  if (batchB === 1 && !tA) {
    const rows = batchA * M;
    blas.sgemm(
      false,
      tB,
      rows,
      N,
      K,
      1,
      heap.subarray(a, a + rows * K),
      lda,
      heap.subarray(b, b + sizeB),
      ldb,
      beta,
      heap.subarray(out, out + batch * sizeOut),
      N,
    );
    return;
  }
  const stepA = batchA === 1 ? 0 : sizeA, stepB = batchB === 1 ? 0 : sizeB;
  for (let i = 0; i < batch; i++) {
    const ai = a + i * stepA, bi = b + i * stepB, oi = out + i * sizeOut;
    blas.sgemm(
      tA,
      tB,
      M,
      N,
      K,
      1,
      heap.subarray(ai, ai + sizeA),
      lda,
      heap.subarray(bi, bi + sizeB),
      ldb,
      beta,
      heap.subarray(oi, oi + sizeOut),
      N,
    );
  }
}

function flags(attrs?: tf.NamedAttrMap): { tA: boolean; tB: boolean } {
  const { transposeA, transposeB } = (attrs ?? {}) as {
    transposeA?: boolean;
    transposeB?: boolean;
  };
  return { tA: !!transposeA, tB: !!transposeB };
}

function blasBatchMatMul(original: KernelFn, args: KernelArgs): Info {
  const be = asWasm(args.backend);
  const blas = active;
  const { a, b } = args.inputs as { a: Info; b: Info };
  const { tA, tB } = flags(args.attrs);
  const p = blas && be ? plan(a, b, tA, tB) : null;
  if (!p || !be || !blas) return original(args) as Info;
  const out = be.makeOutput(p.outShape, "float32");
  const heap = new Float32Array(be.wasm.HEAPU8.buffer); // after the allocation
  run(blas, heap, p, at(be, a), at(be, b), at(be, out), tA, tB, 0);
  return out;
}

/** Fused activations, in place, as tfjs defines them (prelu is left to tfjs). */
const ACTIVATIONS: Record<string, (x: Float32Array, alpha: number) => void> = {
  linear: () => {},
  relu: (x) => {
    for (let i = 0; i < x.length; i++) if (x[i] < 0) x[i] = 0;
  },
  relu6: (x) => {
    for (let i = 0; i < x.length; i++) x[i] = Math.min(Math.max(x[i], 0), 6);
  },
  elu: (x) => {
    for (let i = 0; i < x.length; i++) if (x[i] < 0) x[i] = Math.expm1(x[i]);
  },
  sigmoid: (x) => {
    for (let i = 0; i < x.length; i++) x[i] = 1 / (1 + Math.exp(-x[i]));
  },
  leakyrelu: (x, alpha) => {
    for (let i = 0; i < x.length; i++) if (x[i] < 0) x[i] *= alpha;
  },
};

function blasFusedMatMul(original: KernelFn, args: KernelArgs): Info {
  const be = asWasm(args.backend);
  const blas = active;
  const { a, b, bias, preluActivationWeights } = args.inputs as {
    a: Info;
    b: Info;
    bias?: Info;
    preluActivationWeights?: Info;
  };
  const { tA, tB } = flags(args.attrs);
  const { activation = "linear", leakyreluAlpha = 0.2 } = (args.attrs ?? {}) as {
    activation?: string;
    leakyreluAlpha?: number;
  };
  const p = blas && be ? plan(a, b, tA, tB) : null;
  const biasSize = bias ? product(bias.shape) : 0;
  const act = ACTIVATIONS[activation];
  if (
    !p || !be || !blas || preluActivationWeights || !act ||
    (bias && (bias.dtype !== "float32" || (biasSize !== p.N && biasSize !== 1) ||
      (bias.shape.length > 0 && bias.shape[bias.shape.length - 1] !== biasSize)))
  ) {
    return original(args) as Info;
  }
  const out = be.makeOutput(p.outShape, "float32");
  const heap = new Float32Array(be.wasm.HEAPU8.buffer);
  const o = at(be, out), total = p.batch * p.M * p.N;
  if (bias) {
    // out starts as the bias broadcast over rows; sgemm adds the product (beta = 1).
    const bv = at(be, bias);
    if (biasSize === 1) heap.fill(heap[bv], o, o + total);
    else {
      heap.copyWithin(o, bv, bv + p.N);
      for (let filled = p.N; filled < total; filled *= 2) {
        heap.copyWithin(o + filled, o, o + Math.min(filled, total - filled));
      }
    }
  }
  run(blas, heap, p, at(be, a), at(be, b), o, tA, tB, bias ? 1 : 0);
  if (activation !== "linear") act(heap.subarray(o, o + total), leakyreluAlpha);
  return out;
}

/** A run of float32 ones on the wasm heap, grown on demand (the Sum kernel's left operand). */
let ones: { backend: WasmBackend; at: number; length: number } | null = null;

function onesOnHeap(be: WasmBackend, length: number): number {
  if (ones?.backend === be && ones.length >= length) return ones.at;
  if (ones?.backend === be) be.wasm._free(ones.at * 4);
  const at = (be.wasm._malloc(4 * length) >>> 0) / 4;
  new Float32Array(be.wasm.HEAPU8.buffer).fill(1, at, at + length);
  ones = { backend: be, at, length };
  return at;
}

/**
 * Sum over leading axes (LayerNorm's weight gradients, bias gradients): tfjs-wasm
 * transposes the reduced axes innermost first, with its slow transpose; here it is
 * ones (1, R) @ x (R, C) on the BLAS, reading x where it lies.
 */
function blasSum(original: KernelFn, args: KernelArgs): Info {
  const be = asWasm(args.backend);
  const blas = active;
  const x = args.inputs.x as Info;
  const { axis, keepDims } = (args.attrs ?? {}) as { axis: number | number[]; keepDims: boolean };
  if (!be || !blas || x.dtype !== "float32" || typeof be.wasm._malloc !== "function") {
    return original(args) as Info;
  }
  const axes = tf.util.parseAxisParam(axis, x.shape).sort((p, q) => p - q);
  const r = axes.length;
  if (r === 0 || r >= x.shape.length || axes.some((a, i) => a !== i)) {
    return original(args) as Info; // innermost or full reductions: tfjs's kernel is direct
  }
  const R = product(x.shape.slice(0, r)), C = product(x.shape.slice(r));
  if (R * C === 0) return original(args) as Info;
  const outShape = keepDims ? [...x.shape.slice(0, r).map(() => 1), ...x.shape.slice(r)] : x.shape
    .slice(r);
  const one = onesOnHeap(be, R); // may grow the heap: views come after
  const out = be.makeOutput(outShape, "float32");
  const heap = new Float32Array(be.wasm.HEAPU8.buffer);
  const xi = at(be, x), oi = at(be, out);
  blas.sgemm(
    false,
    false,
    1,
    C,
    R,
    1,
    heap.subarray(one, one + R),
    R,
    heap.subarray(xi, xi + R * C),
    C,
    0,
    heap.subarray(oi, oi + C),
    C,
  );
  return out;
}

/**
 * Identity (tf.clone; tf.customGrad clones every tensor it saves for the backward, the
 * output head's (tokens x vocab) probabilities included) shares the data, as Reshape
 * does, instead of copying it: tfjs kernels never write their inputs.
 */
function sharedIdentity(original: KernelFn, args: KernelArgs): Info {
  const x = args.inputs.x as Info;
  const be = args.backend as unknown as { incRef?: (dataId: object) => void };
  if (!active || x.dtype === "string" || typeof be.incRef !== "function") {
    return original(args) as Info;
  }
  be.incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
}

/**
 * Wrap the wasm BatchMatMul, _FusedMatMul, Sum and Identity kernels (once); they use the
 * BLAS set by useBlas, or the kernels they wrap when it is null.
 */
export function installBlasKernels(): void {
  if (installed) return;
  replaceWasmKernel("BatchMatMul", blasBatchMatMul);
  replaceWasmKernel("_FusedMatMul", blasFusedMatMul);
  replaceWasmKernel("Sum", blasSum);
  replaceWasmKernel("Identity", sharedIdentity);
  installed = true;
}
