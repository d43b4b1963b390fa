// Tests of lm/backend/head_loss.ts: the fused tied head + cross-entropy on wasm with a
// BLAS gives the losses and both gradients of an independent float64 computation in
// plain JavaScript, stays finite where a target's probability underflows float32, and
// says clearly where it does not apply (skipped, by name, where no BLAS is installed);
// evaluation's rowScores gives the same losses and tf.argMax's argmax on plain wasm.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { setBackend } from "../../../lm/backend/backend.ts";
import { findBlas } from "../../../lm/backend/blas.ts";
import { fusedHeadLossAvailable, headLoss, rowScores } from "../../../lm/backend/head_loss.ts";

const noBlas = findBlas().blas === null;

function values(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

/** Losses, dL/dh and dL/dwte of sum_i dy_i * CE_i in float64, straight from the definition. */
function reference(
  h: Float32Array,
  w: Float32Array,
  t: Int32Array,
  dy: Float32Array,
  N: number,
  C: number,
  V: number,
): { loss: number[]; dh: number[]; dw: number[] } {
  const loss: number[] = [], dh = new Array(N * C).fill(0), dw = new Array(V * C).fill(0);
  for (let i = 0; i < N; i++) {
    const z = Array.from({ length: V }, (_, v) => {
      let s = 0;
      for (let c = 0; c < C; c++) s += h[i * C + c] * w[v * C + c];
      return s;
    });
    const max = Math.max(...z);
    const lse = max + Math.log(z.reduce((s, zv) => s + Math.exp(zv - max), 0));
    loss.push(lse - z[t[i]]);
    for (let v = 0; v < V; v++) {
      const g = dy[i] * (Math.exp(z[v] - lse) - (v === t[i] ? 1 : 0));
      for (let c = 0; c < C; c++) {
        dh[i * C + c] += g * w[v * C + c];
        dw[v * C + c] += g * h[i * C + c];
      }
    }
  }
  return { loss, dh, dw };
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    assert.ok(d <= tol * Math.max(1, Math.abs(want[i])), `${what}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}

Deno.test({
  name: "fused head loss: losses and both gradients equal a float64 reference",
  ignore: noBlas,
  fn: async () => {
    await setBackend("wasm", { quiet: true });
    assert.ok(fusedHeadLossAvailable());
    const N = 6, C = 8, V = 50;
    const hData = values(N * C, 1);
    // Row 5 is scaled so that its logits span hundreds: its target's probability underflows.
    for (let c = 0; c < C; c++) hData[5 * C + c] *= 400;
    const wData = values(V * C, 2);
    const tData = Int32Array.from([3, 0, 49, 17, 3, 25]);
    const dyData = Float32Array.from([0.5, -1, 2, 0.25, 1, 0.125]);
    const h = tf.tensor2d(hData, [N, C]), w = tf.tensor2d(wData, [V, C]);
    const t = tf.tensor1d(tData, "int32"), dy = tf.tensor1d(dyData);
    const f = (hh: tf.Tensor, ww: tf.Tensor) =>
      tf.sum(tf.mul(headLoss(hh as tf.Tensor2D, ww as tf.Tensor2D, t), dy));
    const [dh, dw] = tf.grads(f)([h, w]);
    const losses = tf.tidy(() => headLoss(h, w, t));
    const want = reference(hData, wData, tData, dyData, N, C, V);
    const got = await losses.data();
    assert.ok(want.loss[5] > 69, `row 5 should underflow float32 (loss ${want.loss[5]})`);
    assert.ok(Number.isFinite(got[5]), `row 5 loss ${got[5]}`);
    assertClose(got, want.loss, 1e-5, "loss");
    assertClose(await dh.data(), want.dh, 1e-5, "dh");
    assertClose(await dw.data(), want.dw, 1e-5, "dwte");
    tf.dispose([h, w, t, dy, dh, dw, losses]);
  },
});

Deno.test({
  name: "fused head loss: no leaked tensors; clear errors off wasm and for bad targets",
  ignore: noBlas,
  fn: async () => {
    await setBackend("wasm", { quiet: true });
    const h = tf.tensor2d(values(4 * 3, 3), [4, 3]), w = tf.tensor2d(values(5 * 3, 4), [5, 3]);
    const t = tf.tensor1d([0, 1, 2, 4], "int32");
    const hv = tf.variable(h);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const { value, grads } = tf.variableGrads(() => tf.mean(headLoss(hv, w, t)) as tf.Scalar, [
        hv,
      ]);
      tf.dispose([value, ...Object.values(grads)]);
    }
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
    hv.dispose();
    const bad = tf.tensor1d([0, 1, 2, 5], "int32");
    assert.throws(() => headLoss(h, w, bad), /target 5 outside the vocabulary 5/);
    await setBackend("cpu", { quiet: true });
    assert.ok(!fusedHeadLossAvailable());
    assert.throws(() => headLoss(h, w, t), /needs the wasm backend with a native BLAS/);
    await setBackend("wasm", { quiet: true, blas: false });
    assert.ok(!fusedHeadLossAvailable());
    tf.dispose([h, w, t, bad]);
  },
});

Deno.test("rowScores: losses of a float64 reference and tf.argMax's argmax, on wasm only", async () => {
  await setBackend("wasm", { quiet: true, blas: false });
  const N = 5, V = 40;
  const z = values(N * V, 9, 3);
  for (let v = 0; v < V; v++) z[2 * V + v] *= 100; // row 2: its target underflows float32
  z[3 * V + 7] = z[3 * V + 30] = 50; // row 3: a tie, the first maximum wins
  const t = Int32Array.from([0, 39, 5, 7, 12]);
  const logits = tf.tensor2d(z, [N, V]);
  const got = rowScores(logits, t)!;
  assert.ok(got, "rowScores is null on wasm");
  const wantArgmax = await tf.argMax(logits, 1).data();
  assert.deepEqual(Array.from(got.argmax), Array.from(wantArgmax));
  assert.equal(got.argmax[3], 7);
  for (let i = 0; i < N; i++) {
    const row = Array.from(z.subarray(i * V, (i + 1) * V));
    const max = Math.max(...row);
    const want = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0)) - row[t[i]];
    assert.ok(
      Math.abs(got.nll[i] - want) <= 1e-5 * Math.max(1, want),
      `row ${i}: ${got.nll[i]} vs ${want}`,
    );
  }
  assert.ok(got.nll[2] > 100 && Number.isFinite(got.nll[2]));
  // Losses alone (no argmax pass): the same bits, the underflowing row included.
  const lossOnly = rowScores(logits, t, false)!;
  assert.deepEqual(lossOnly.nll, got.nll);
  assert.equal(lossOnly.argmax.length, 0);
  assert.throws(() => rowScores(logits, Int32Array.from([0, 1, 2, 3, 40])), /target 40 outside/);
  await setBackend("cpu", { quiet: true });
  assert.equal(rowScores(logits, t), null);
  logits.dispose();
});
