// The tied output head and its cross-entropy as one operation, for the wasm backend
// with a native BLAS (lm/backend/wasm_blas.ts): what the model's head + loss compose
// from eight tfjs kernels over the (tokens x vocab) logits, in three passes.
//
// Forward: logits = h @ wte^T (BLAS), p = softmax(logits) (XNNPACK), and the loss of
// row i is -log p[i, t_i], read straight off the heap. A row whose target probability
// underflows (loss above ~69) is recomputed exactly from its logits as
// max + log(sum exp(z - max)) - z_t, so the loss never becomes infinite.
// Backward: dlogits = dy * p, then dy subtracted at the N targets, in place; then
// dh = dlogits @ wte and dwte = dlogits^T @ h (BLAS). Only p is kept between the two.
// rowScores does evaluation's part (loss and argmax per row) the same way, on any wasm.
import * as tf from "@tensorflow/tfjs-core";
import { activeBlas } from "./wasm_blas.ts";

/** The parts of tfjs-backend-wasm 4.22's BackendWasm used here. */
interface WasmBackend {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
}

/** Below this target probability the loss is recomputed from the row's logits. */
const UNDERFLOW = 1e-30;

function wasmBackend(): WasmBackend | null {
  if (tf.getBackend() !== "wasm") return null;
  const be = tf.backend() as unknown as Partial<WasmBackend>;
  return be.wasm?.HEAPU8 && be.dataIdMap ? be as WasmBackend : null;
}

/** Float offset of a tensor's data on the heap, and a fresh float view of the heap. */
function heapOf(be: WasmBackend, t: tf.Tensor): { heap: Float32Array; at: number } {
  const data = be.dataIdMap.get(t.dataId);
  if (!data) throw new Error("head loss: tensor data is not on the wasm heap");
  return { heap: new Float32Array(be.wasm.HEAPU8.buffer), at: data.memoryOffset / 4 };
}

/** Whether headLoss runs fused here (wasm backend with a BLAS). */
export function fusedHeadLossAvailable(): boolean {
  return activeBlas() !== null && wasmBackend() !== null;
}

/**
 * Cross-entropy of every row of h @ wte^T against targets: h (N, C), wte (V, C), targets
 * (N) int32 -> (N). Differentiable in h and wte. Only where fusedHeadLossAvailable().
 */
export function headLoss(h: tf.Tensor2D, wte: tf.Tensor2D, targets: tf.Tensor1D): tf.Tensor1D {
  const be = wasmBackend();
  if (!be || !activeBlas()) {
    throw new Error("headLoss: needs the wasm backend with a native BLAS");
  }
  const [N] = h.shape, [V] = wte.shape;
  const targetIds = targets.dataSync() as Int32Array; // N numbers, read once
  for (const t of targetIds) {
    if (!(t >= 0 && t < V)) throw new Error(`headLoss: target ${t} outside the vocabulary ${V}`);
  }
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [hIn, wIn, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    const logits = tf.matMul(hIn, wIn, false, true);
    const p = tf.softmax(logits);
    const losses = new Float32Array(N);
    {
      const { heap, at } = heapOf(be, p);
      const z = heapOf(be, logits).at;
      for (let i = 0; i < N; i++) {
        const pt = heap[at + i * V + targetIds[i]];
        if (pt >= UNDERFLOW) {
          losses[i] = -Math.log(pt);
          continue;
        }
        let max = -Infinity;
        for (let j = z + i * V; j < z + (i + 1) * V; j++) if (heap[j] > max) max = heap[j];
        let sum = 0;
        for (let j = z + i * V; j < z + (i + 1) * V; j++) sum += Math.exp(heap[j] - max);
        losses[i] = max + Math.log(sum) - heap[z + i * V + targetIds[i]];
      }
    }
    logits.dispose();
    save([p, hIn, wIn]);
    return {
      value: tf.tensor1d(losses),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [ps, hs, ws] = saved;
        const dz = tf.mul(ps, tf.reshape(dy, [N, 1])) as tf.Tensor2D; // fresh: ours to edit
        const dyv = dy.dataSync();
        const { heap, at } = heapOf(be, dz);
        for (let i = 0; i < N; i++) heap[at + i * V + targetIds[i]] -= dyv[i];
        return [tf.matMul(dz, ws), tf.matMul(dz, hs, true, false)];
      },
    };
  });
  return op(h, wte) as tf.Tensor1D;
}

/**
 * Evaluation's per-row scores of logits (N, V) against targets (N): the cross-entropy
 * (as headLoss: -log p[t] off one softmax, exact for underflowing rows) and the argmax
 * of each row (the first maximum, as tf.argMax; skipped, and returned empty, when
 * `withArgmax` is false: it is a pass over every logit). On the wasm backend (with or without a
 * BLAS) this replaces logSumExp's five passes and argMax over the logits, of which
 * tfjs-wasm's scalar Exp alone costs more than the forward pass; elsewhere null.
 */
export function rowScores(
  logits: tf.Tensor2D,
  targets: Int32Array,
  withArgmax = true,
): { nll: Float32Array; argmax: Int32Array } | null {
  const be = wasmBackend();
  if (!be || logits.dtype !== "float32") return null;
  const [N, V] = logits.shape;
  if (targets.length !== N) {
    throw new Error(`rowScores: ${targets.length} targets for ${N} rows`);
  }
  for (const t of targets) {
    if (!(t >= 0 && t < V)) throw new Error(`rowScores: target ${t} outside the vocabulary ${V}`);
  }
  const p = tf.softmax(logits);
  try {
    const nll = new Float32Array(N), argmax = new Int32Array(withArgmax ? N : 0);
    const { heap, at } = heapOf(be, p);
    const z = heapOf(be, logits).at;
    /** The first maximum of row i's logits and its value. */
    const rowMax = (row: number): [number, number] => {
      let max = heap[row], best = 0;
      for (let j = 1; j < V; j++) {
        if (heap[row + j] > max) {
          max = heap[row + j];
          best = j;
        }
      }
      return [best, max];
    };
    for (let i = 0; i < N; i++) {
      const row = z + i * V;
      if (withArgmax) argmax[i] = rowMax(row)[0];
      const pt = heap[at + i * V + targets[i]];
      if (pt >= UNDERFLOW) {
        nll[i] = -Math.log(pt);
        continue;
      }
      const max = rowMax(row)[1];
      let sum = 0;
      for (let j = row; j < row + V; j++) sum += Math.exp(heap[j] - max);
      nll[i] = max + Math.log(sum) - heap[row + targets[i]];
    }
    return { nll, argmax };
  } finally {
    p.dispose();
  }
}
