// AdamW against torch.optim.AdamW on a committed fixture (three steps, decay on some
// parameters, clipping on and off), gradient accumulation against one big batch, the
// optimizer state round trip, and the in-training weight averages.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import {
  accumulateGradients,
  AdamW,
  type Grads,
  type Params,
  toArray,
  WeightAverage,
} from "../../../lm/train/optim.ts";

await tf.setBackend("cpu");

interface AdamWCase {
  shapes: Record<string, number[]>;
  decayed: string[];
  weight_decay: number;
  grad_clip: number;
  lrs: number[];
  init: Record<string, number[]>;
  grads: Record<string, number[]>[];
  grad_norms: number[];
  after: Record<string, number[]>[];
}

const fixture = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/optim/fixture.json", import.meta.url)),
) as { adamw: AdamWCase[] };

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

function paramsOf(c: AdamWCase): Params {
  const params: Params = {};
  for (const [name, shape] of Object.entries(c.shapes)) {
    params[name] = tf.variable(
      tf.tensor(c.init[name], shape, "float32"),
      true,
      `fx-${name}-${Math.random()}`,
    );
  }
  return params;
}

fixture.adamw.forEach((c, caseIndex) => {
  Deno.test(`AdamW matches torch.optim.AdamW (case ${caseIndex}, clip ${c.grad_clip})`, async () => {
    const params = paramsOf(c);
    const opt = new AdamW(params, {
      weight_decay: c.weight_decay,
      grad_clip: c.grad_clip,
      decayed: (name) => c.decayed.includes(name),
    });
    for (let step = 0; step < c.lrs.length; step++) {
      const grads: Grads = {};
      for (const [name, shape] of Object.entries(c.shapes)) {
        grads[name] = tf.tensor(c.grads[step][name], shape, "float32");
      }
      const norm = opt.update(grads, c.lrs[step]);
      const n = (await norm.data())[0];
      assert.ok(Math.abs(n - c.grad_norms[step]) <= 1e-5 * c.grad_norms[step], `norm ${n}`);
      for (const name of Object.keys(c.shapes)) {
        const got = await params[name].data();
        const diff = maxAbsDiff(got, c.after[step][name]);
        assert.ok(diff <= 1e-6, `step ${step} ${name}: max |diff| ${diff}`);
      }
      tf.dispose([norm, ...Object.values(grads)]);
    }
    assert.equal(opt.step, c.lrs.length);
    opt.dispose();
    tf.dispose(Object.values(params));
  });
});

Deno.test("AdamW state export/import continues exactly", async () => {
  const c = fixture.adamw[0];
  const gradsAt = (step: number): Grads => {
    const g: Grads = {};
    for (const [name, shape] of Object.entries(c.shapes)) {
      g[name] = tf.tensor(c.grads[step][name], shape, "float32");
    }
    return g;
  };
  const decayed = (name: string) => c.decayed.includes(name);
  // Run 1: two steps, save state and weights.
  const p1 = paramsOf(c);
  const o1 = new AdamW(p1, { decayed });
  for (const s of [0, 1]) tf.dispose(o1.update(gradsAt(s), c.lrs[s]));
  const state = await o1.exportState();
  const weights: Record<string, Float32Array> = {};
  for (const [name, p] of Object.entries(p1)) weights[name] = (await toArray(p)).data;
  tf.dispose(o1.update(gradsAt(2), c.lrs[2]));
  // Run 2: a fresh optimizer restored from the saved state does the same third step.
  const p2 = paramsOf(c);
  for (const [name, p] of Object.entries(p2)) p.assign(tf.tensor(weights[name], p.shape));
  const o2 = new AdamW(p2, { decayed });
  o2.importState(state);
  assert.equal(o2.step, 2);
  tf.dispose(o2.update(gradsAt(2), c.lrs[2]));
  for (const name of Object.keys(c.shapes)) {
    assert.deepEqual(await p2[name].data(), await p1[name].data(), name);
  }
  assert.throws(
    () =>
      o2.importState({
        ...state,
        m: { ...state.m, w1: { shape: [2], data: new Float32Array(2) } },
      }),
    /w1.*shape/,
  );
  o1.dispose();
  o2.dispose();
});

Deno.test("8 accumulated micro-batches equal one batch 8x larger", () => {
  // A tiny model: logits = tanh(x @ W1) @ W2, mean softmax cross-entropy.
  const W1 = tf.variable(tf.randomNormal([6, 16], 0, 0.5, "float32", 7), true, "acc-W1");
  const W2 = tf.variable(tf.randomNormal([16, 5], 0, 0.5, "float32", 8), true, "acc-W2");
  const params: Params = { W1, W2 };
  const x = tf.randomNormal([64, 6], 0, 1, "float32", 9);
  const labels = tf.oneHot(
    tf.tensor1d(Array.from({ length: 64 }, (_, i) => (i * 7) % 5), "int32"),
    5,
  );
  const lossOn = (xs: tf.Tensor, ys: tf.Tensor) =>
    tf.losses.softmaxCrossEntropy(ys, tf.matMul(tf.tanh(tf.matMul(xs, W1)), W2)) as tf.Scalar;
  const big = accumulateGradients(params, ["W1", "W2"], 1, () => lossOn(x, labels));
  const acc = accumulateGradients(
    params,
    ["W1", "W2"],
    8,
    (i) => lossOn(x.slice([8 * i, 0], [8, 6]), labels.slice([8 * i, 0], [8, 5])),
  );
  for (const name of ["W1", "W2"]) {
    const d = maxAbsDiff(big.grads[name].dataSync(), acc.grads[name].dataSync());
    assert.ok(d < 1e-6, `${name} gradient max |diff| ${d}`);
    assert.ok(tf.max(tf.abs(big.grads[name])).dataSync()[0] > 1e-3, "gradients are not trivial");
  }
  assert.ok(Math.abs(big.loss.dataSync()[0] - acc.loss.dataSync()[0]) < 1e-6);
  // And the updated weights agree.
  const before = { W1: W1.clone(), W2: W2.clone() };
  new AdamW(params).update(big.grads, 1e-2).dispose();
  const afterBig = { W1: W1.clone(), W2: W2.clone() };
  W1.assign(before.W1);
  W2.assign(before.W2);
  new AdamW(params).update(acc.grads, 1e-2).dispose();
  for (const name of ["W1", "W2"] as const) {
    const d = maxAbsDiff(afterBig[name].dataSync(), params[name].dataSync());
    assert.ok(d < 1e-5, `${name} updated weights max |diff| ${d}`);
  }
  tf.dispose([
    x,
    labels,
    big.loss,
    acc.loss,
    ...Object.values(big.grads),
    ...Object.values(acc.grads),
  ]);
});

Deno.test("accumulateGradients keeps no tensors alive beyond its results", () => {
  const W = tf.variable(tf.ones([4, 3]), true, "leak-W");
  const x = tf.ones([4, 4]);
  const before = tf.memory().numTensors;
  const { grads, loss } = accumulateGradients({ W }, ["W"], 4, () => tf.mean(tf.matMul(x, W)));
  assert.equal(tf.memory().numTensors, before + 2); // one gradient and the loss
  tf.dispose([loss, ...Object.values(grads)]);
  tf.dispose([W, x]);
});

Deno.test("WeightAverage: EMA and SWA (uniform mean) of a weight sequence", async () => {
  const w = tf.variable(tf.zeros([3]), true, "avg-w");
  const ema = new WeightAverage("ema", 0.9);
  const swa = new WeightAverage("swa");
  const values = [1, 2, 4, 8];
  let expectedEma = 0;
  values.forEach((value, i) => {
    w.assign(tf.fill([3], value));
    ema.update({ w });
    swa.update({ w });
    expectedEma = i === 0 ? value : 0.9 * expectedEma + 0.1 * value;
  });
  const mean = values.reduce((a, b) => a + b) / values.length;
  for (const got of await ema.weights.w.data()) assert.ok(Math.abs(got - expectedEma) < 1e-6);
  for (const got of await swa.weights.w.data()) assert.ok(Math.abs(got - mean) < 1e-6);
  assert.equal(swa.count, 4);
  // The average owns its copy: changing the weights later does not change it.
  w.assign(tf.fill([3], 100));
  for (const got of await swa.weights.w.data()) assert.ok(Math.abs(got - mean) < 1e-6);
  ema.dispose();
  swa.dispose();
  w.dispose();
});
