// A faster BatchMatMul for the tfjs wasm backend.
//
// tfjs-backend-wasm 4.22 sends a matmul to XNNPACK's fast, threaded fully-connected
// kernel only when neither transpose flag is set and the batch is 1; anything else
// (every matmul gradient, the tied output head, attention's per-head products) falls
// to a naive single-threaded loop that is 10-30x slower. This module re-registers the
// kernel so that it transposes explicitly (choosing between op(A) op(B) and
// (op(B)^T op(A)^T)^T, whichever moves fewer numbers: wasm's Transpose is slow) and folds
// a shared right-hand matrix into one tall matmul, so every non-batched product takes the
// fast path. True batches (attention's per-head products) stay on tfjs's loop: splitting
// them into batch-1 fast calls was measured 3x slower for 128 heads of 128x32. Tied to tfjs 4.22's kernel registry; `installFastWasmMatMul` refuses
// to run twice and leaves the original kernel in place if a kernel it needs is absent.
import * as tf from "@tensorflow/tfjs-core";

type Info = tf.TensorInfo;
type KernelFn = (args: {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
}) => Info | Info[];

let installed = false;

/** Whether the fast BatchMatMul replaced tfjs's own on the wasm backend. */
export function fastWasmMatMulInstalled(): boolean {
  return installed;
}

function kernel(name: string): KernelFn {
  const config = tf.getKernel(name, "wasm");
  if (!config) throw new Error(`wasm backend has no ${name} kernel to build BatchMatMul on`);
  return config.kernelFunc as KernelFn;
}

/** Replace the wasm BatchMatMul kernel (call once the wasm backend is registered). */
export function installFastWasmMatMul(): void {
  if (installed) return;
  const original = tf.getKernel("BatchMatMul", "wasm");
  if (!original) throw new Error("wasm backend has no BatchMatMul kernel to replace");
  const matmul = original.kernelFunc as KernelFn;
  const transpose = kernel("Transpose");
  const reshape = kernel("Reshape");

  function fastBatchMatMul(
    args: { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap },
  ): Info {
    const { inputs, backend } = args;
    const { a, b } = inputs as { a: Info; b: Info };
    const { transposeA, transposeB } = (args.attrs ?? {}) as {
      transposeA: boolean;
      transposeB: boolean;
    };
    const temps: Info[] = [];
    const keep = (t: Info): Info => {
      temps.push(t);
      return t;
    };
    const to3d = (x: Info): Info => {
      const r = x.shape.length;
      const batch = x.shape.slice(0, -2).reduce((p, q) => p * q, 1);
      return keep(
        reshape({
          inputs: { x },
          backend,
          attrs: { shape: [batch, x.shape[r - 2], x.shape[r - 1]] },
        }) as Info,
      );
    };
    const transposed = (x: Info): Info => {
      const r = x.shape.length;
      const perm = [...Array(r - 2).keys(), r - 1, r - 2];
      return keep(transpose({ inputs: { x }, backend, attrs: { perm } }) as Info);
    };
    const size = (x: Info): number => x.shape.reduce((p, q) => p * q, 1);
    const as3d = (x: Info): Info =>
      x.shape.length === 3
        ? x
        : keep(reshape({ inputs: { x }, backend, attrs: { shape: [1, ...x.shape] } }) as Info);
    /**
     * op(A) @ op(B) for one matrix pair (A, B as 2-D or batch-1 3-D) on the fast path.
     * Either transpose the flagged operands, or use op(A) op(B) = (op(B)^T op(A)^T)^T,
     * which transposes the other operands and the output: whichever moves fewer numbers.
     */
    const product = (A: Info, tA: boolean, Bm: Info, tB: boolean): Info => {
      const M = tA ? A.shape.at(-1)! : A.shape.at(-2)!;
      const N = tB ? Bm.shape.at(-2)! : Bm.shape.at(-1)!;
      const direct = (tA ? size(A) : 0) + (tB ? size(Bm) : 0);
      const swapped = (tA ? 0 : size(A)) + (tB ? 0 : size(Bm)) + M * N;
      const noFlags = { transposeA: false, transposeB: false };
      if (direct <= swapped) {
        const a3 = as3d(tA ? transposed(A) : A), b3 = as3d(tB ? transposed(Bm) : Bm);
        return matmul({ inputs: { a: a3, b: b3 }, backend, attrs: noFlags }) as Info;
      }
      const bt = as3d(tB ? Bm : transposed(Bm)), at = as3d(tA ? A : transposed(A));
      const outT = keep(matmul({ inputs: { a: bt, b: at }, backend, attrs: noFlags }) as Info); // (1, N, M)
      return transpose({ inputs: { x: outT }, backend, attrs: { perm: [0, 2, 1] } }) as Info;
    };

    try {
      const batchA = a.shape.slice(0, -2).reduce((p, q) => p * q, 1);
      const batchB = b.shape.slice(0, -2).reduce((p, q) => p * q, 1);
      if (batchB !== 1) {
        // A true batch (attention's per-head products): tfjs's own loop is still the
        // fastest here; one fast call per batch entry costs more in set-up than it saves.
        return matmul(args) as Info;
      }
      const batchShape = tf.broadcast_util.assertAndGetBroadcastShape(
        a.shape.slice(0, -2),
        b.shape.slice(0, -2),
      );
      // op(A) (M, K) @ op(B) (K, N) with A folded to 2-D rows when B is shared.
      const a2 = keep(reshape({
        inputs: { x: a },
        backend,
        attrs: {
          shape: transposeA
            ? [batchA, ...a.shape.slice(-2)]
            : [batchA * a.shape.at(-2)!, a.shape.at(-1)!],
        },
      }) as Info);
      const b2 = to3d(b);
      const M = transposeA ? a.shape.at(-1)! : a.shape.at(-2)!;
      const N = transposeB ? b.shape.at(-2)! : b.shape.at(-1)!;
      const outShape = [...batchShape, M, N];
      let out2: Info;
      if (transposeA && batchA !== 1) {
        // Rare (a batched A^T against a shared B): transpose each explicitly.
        const a3 = transposed(a2);
        const tall = keep(
          reshape({
            inputs: { x: a3 },
            backend,
            attrs: { shape: [1, batchA * M, a3.shape[2]] },
          }) as Info,
        );
        out2 = product(tall, false, b2, transposeB);
      } else {
        out2 = product(a2, transposeA, b2, transposeB);
      }
      const out = reshape({ inputs: { x: out2 }, backend, attrs: { shape: outShape } }) as Info;
      temps.push(out2);
      return out;
    } finally {
      for (const t of temps) backend.disposeData(t.dataId);
    }
  }

  tf.unregisterKernel("BatchMatMul", "wasm");
  tf.registerKernel({
    kernelName: "BatchMatMul",
    backendName: "wasm",
    setupFunc: original.setupFunc,
    kernelFunc: fastBatchMatMul as unknown as tf.KernelFunc,
  });
  installed = true;
}
