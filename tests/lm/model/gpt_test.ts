// Tests of lm/model/gpt.ts: loss and every gradient of a tiny GPT-2 against an independent
// PyTorch implementation (tests/fixtures/gpt/generate.py) on the cpu and wasm backends,
// Hugging Face tensor names, the causal mask, weight loading errors, that evaluation's
// layer-by-layer forward gives the one-scope forward's logits bit for bit with the
// memory of one layer, and that training lowers the loss on a tiny repeated text.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { setBackend } from "../../../lm/backend/backend.ts";
import {
  exportWeights,
  forward,
  type GPTConfig,
  initWeights,
  isDecayed,
  meanLoss,
  modelConfig,
  parameterNames,
  PRESETS,
  tensorSeed,
  tokenLosses,
  trainableNames,
  weightsFromArrays,
} from "../../../lm/model/gpt.ts";

interface Fixture {
  config: GPTConfig;
  idx: number[][];
  targets: number[][];
  weights: Record<string, { shape: number[]; data: number[] }>;
  loss: number;
  token_losses: number[];
  logits_first_row: number[];
  grads: Record<string, number[]>;
}

const FIXTURE: Fixture = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/gpt/tiny.json", import.meta.url)),
);

function fixtureArrays(): Record<string, { shape: number[]; data: Float32Array }> {
  const out: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [name, { shape, data }] of Object.entries(FIXTURE.weights)) {
    out[name] = { shape, data: Float32Array.from(data) };
  }
  return out;
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  let worst = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= worst)) [worst, at] = [d, i];
  }
  assert.ok(
    worst <= tol,
    `${what}: |diff| ${worst} at ${at} (got ${got[at]}, want ${want[at]}) > ${tol}`,
  );
}

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`loss and every gradient match PyTorch on ${backend}`, async () => {
    await setBackend(backend, { quiet: true });
    const cfg = FIXTURE.config;
    const w = weightsFromArrays(cfg, fixtureArrays());
    const idx = tf.tensor2d(FIXTURE.idx, undefined, "int32");
    const targets = tf.tensor2d(FIXTURE.targets, undefined, "int32");
    const names = trainableNames(cfg);
    assert.equal(names.length, Object.keys(FIXTURE.grads).length);
    const { value, grads } = tf.variableGrads(
      () => meanLoss(cfg, w, idx, targets),
      names.map((n) => w[n]),
    );
    assertClose(await value.data(), [FIXTURE.loss], 1e-4, "loss");
    // variableGrads keys gradients by the variables' own (auto) names.
    for (const name of names) {
      const g = grads[w[name].name];
      assert.ok(g, `no gradient for ${name}`);
      assertClose(await g.data(), FIXTURE.grads[name], 1e-4, `grad ${name}`);
    }
    const perToken = tf.tidy(() => tokenLosses(cfg, w, idx, targets));
    assertClose(await perToken.data(), FIXTURE.token_losses, 1e-4, "token losses");
    const logits = tf.tidy(() => forward(cfg, w, idx));
    assert.deepEqual(logits.shape, [2, 8, cfg.vocab_size]);
    const firstRow = (await logits.data()).slice(0, cfg.vocab_size);
    assertClose(firstRow, FIXTURE.logits_first_row, 1e-4, "logits[0, 0]");
    tf.dispose([
      value,
      ...Object.values(grads),
      perToken,
      logits,
      idx,
      targets,
      ...Object.values(w),
    ]);
  });
}

Deno.test("tensor names and shapes are Hugging Face GPT-2's", async () => {
  await setBackend("cpu", { quiet: true });
  const cfg = modelConfig("cpu-tiny", 50, { n_layer: 1 });
  const C = cfg.n_embd;
  const expected: Record<string, number[]> = {
    "transformer.wte.weight": [50, C],
    "transformer.wpe.weight": [64, C],
    "transformer.h.0.ln_1.weight": [C],
    "transformer.h.0.ln_1.bias": [C],
    "transformer.h.0.attn.c_attn.weight": [C, 3 * C],
    "transformer.h.0.attn.c_attn.bias": [3 * C],
    "transformer.h.0.attn.c_proj.weight": [C, C],
    "transformer.h.0.attn.c_proj.bias": [C],
    "transformer.h.0.ln_2.weight": [C],
    "transformer.h.0.ln_2.bias": [C],
    "transformer.h.0.mlp.c_fc.weight": [C, 4 * C],
    "transformer.h.0.mlp.c_fc.bias": [4 * C],
    "transformer.h.0.mlp.c_proj.weight": [4 * C, C],
    "transformer.h.0.mlp.c_proj.bias": [C],
    "transformer.ln_f.weight": [C],
    "transformer.ln_f.bias": [C],
  };
  const w = initWeights(cfg, 3);
  const exported = await exportWeights(w);
  assert.deepEqual(Object.keys(exported).sort(), Object.keys(expected).sort());
  for (const [name, shape] of Object.entries(expected)) {
    assert.deepEqual(exported[name].shape, shape, name);
    assert.equal(exported[name].dtype, "F32");
  }
  // The fixture, written by the PyTorch generator with HF names, has exactly these names too.
  assert.deepEqual(Object.keys(FIXTURE.weights).sort(), parameterNames(FIXTURE.config).sort());
  // bias=false: biases are stored (zeros) but not trained; decay only on matmul weights.
  assert.ok(!trainableNames(cfg).some((n) => n.endsWith(".bias")));
  assert.ok(exported["transformer.h.0.mlp.c_fc.bias"].data.every((v) => v === 0));
  assert.deepEqual(
    Object.keys(expected).filter(isDecayed).sort(),
    [
      "transformer.h.0.attn.c_attn.weight",
      "transformer.h.0.attn.c_proj.weight",
      "transformer.h.0.mlp.c_fc.weight",
      "transformer.h.0.mlp.c_proj.weight",
    ],
  );
  tf.dispose(Object.values(w));
});

Deno.test("initialisation: GPT-2 std, residual projections scaled, same seed same weights", async () => {
  await setBackend("cpu", { quiet: true });
  const cfg = modelConfig("cpu-small", 256);
  const a = await exportWeights(initWeights(cfg, 7));
  const b = await exportWeights(initWeights(cfg, 7));
  const c = await exportWeights(initWeights(cfg, 8));
  const std = (x: Float32Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
  assert.ok(Math.abs(std(a["transformer.h.0.mlp.c_fc.weight"].data) - 0.02) < 0.001);
  const residual = 0.02 / Math.sqrt(2 * cfg.n_layer);
  assert.ok(Math.abs(std(a["transformer.h.0.mlp.c_proj.weight"].data) - residual) < 0.0005);
  assert.ok(a["transformer.h.1.ln_1.weight"].data.every((v) => v === 1));
  assert.deepEqual(a["transformer.wte.weight"].data, b["transformer.wte.weight"].data);
  assert.notDeepEqual(a["transformer.wte.weight"].data, c["transformer.wte.weight"].data);
});

Deno.test("initialisation at seed 0 is seeded too: every tensor equal run to run", async () => {
  await setBackend("cpu", { quiet: true });
  const cfg = modelConfig("cpu-tiny", 64);
  const a = await exportWeights(initWeights(cfg, 0));
  const b = await exportWeights(initWeights(cfg, 0));
  for (const name of Object.keys(a)) assert.deepEqual(a[name].data, b[name].data, name);
  assert.notDeepEqual(a["transformer.wte.weight"].data, a["transformer.wpe.weight"].data);
  assert.throws(() => tensorSeed(-1, 0), /non-negative integer/);
});

Deno.test("causal: changing a future token leaves earlier logits unchanged", async () => {
  for (const backend of ["cpu", "wasm"] as const) {
    await setBackend(backend, { quiet: true });
    const cfg = FIXTURE.config;
    const w = weightsFromArrays(cfg, fixtureArrays());
    const base = FIXTURE.idx.map((row) => [...row]);
    const changed = base.map((row) => [...row]);
    changed[0][5] = (changed[0][5] + 1) % cfg.vocab_size;
    const run = async (ids: number[][]) => {
      const out = tf.tidy(() => forward(cfg, w, tf.tensor2d(ids, undefined, "int32")));
      const data = await out.data();
      out.dispose();
      return data;
    };
    const [a, b] = [await run(base), await run(changed)];
    const V = cfg.vocab_size, T = base[0].length;
    for (let t = 0; t < T; t++) {
      const rowA = a.slice(t * V, (t + 1) * V), rowB = b.slice(t * V, (t + 1) * V);
      const diff = Math.max(...rowA.map((v, i) => Math.abs(v - rowB[i])));
      if (t < 5) assert.ok(diff < 1e-6, `${backend}: position ${t} changed by ${diff}`);
      else assert.ok(diff > 1e-4, `${backend}: position ${t} did not see token 5 (${diff})`);
    }
    // The other sequence in the batch is untouched entirely.
    const second = a.slice(T * V), secondB = b.slice(T * V);
    assert.ok(second.every((v, i) => v === secondB[i]), `${backend}: batch rows interact`);
    tf.dispose(Object.values(w));
  }
});

/** The bits of a float32 tensor's values, so that equality means bit for bit. */
async function bits(t: tf.Tensor): Promise<Uint32Array> {
  const values = await t.data() as Float32Array;
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`the layer-by-layer forward equals the one-scope forward bit for bit (${backend})`, async () => {
    await setBackend(backend, { quiet: true });
    // The PyTorch fixture (biases set) and a random 3-layer model without biases.
    const models: [GPTConfig, Record<string, tf.Tensor>][] = [
      [FIXTURE.config, weightsFromArrays(FIXTURE.config, fixtureArrays())],
    ];
    const random = modelConfig("cpu-tiny", 97, { n_layer: 3, block_size: 16 });
    models.push([random, initWeights(random, 5)]);
    for (const [cfg, w] of models) {
      const T = Math.min(cfg.block_size, 16);
      const ids = [0, 1].map((b) =>
        Array.from({ length: T }, (_, t) => (b * 31 + t * 7) % cfg.vocab_size)
      );
      const idx = tf.tensor2d(ids, undefined, "int32");
      const layered = tf.tidy(() => forward(cfg, w, idx)); // the default without a tape
      const oneScope = tf.tidy(() => forward(cfg, w, idx, { freeEachLayer: false }));
      const [a, b] = [await bits(layered), await bits(oneScope)];
      assert.ok(a.some((v) => v !== 0), "logits are all zero");
      assert.deepEqual(a, b, `${cfg.n_layer}-layer logits differ`);
      tf.dispose([idx, layered, oneScope, ...Object.values(w)]);
    }
  });
}

/** Peak bytes of tensors above those alive before, during one forward in tf.tidy. */
async function forwardPeakBytes(cfg: GPTConfig, freeEachLayer?: boolean): Promise<number> {
  const w = initWeights(cfg, 2);
  const ids = Array.from({ length: 2 }, () => Array.from({ length: 64 }, (_, t) => t));
  const idx = tf.tensor2d(ids, undefined, "int32");
  const before = tf.memory().numBytes;
  const profile = await tf.profile(() => {
    tf.tidy(() => forward(cfg, w, idx, freeEachLayer === undefined ? {} : { freeEachLayer }));
  });
  tf.dispose([idx, ...Object.values(w)]);
  return profile.peakBytes - before;
}

Deno.test("an evaluation forward's memory grows with one layer, not with the depth", async () => {
  await setBackend("cpu", { quiet: true });
  const shape = (n_layer: number) =>
    modelConfig("cpu-micro", 64, { n_layer, n_head: 4, block_size: 64 });
  const layered = [await forwardPeakBytes(shape(4)), await forwardPeakBytes(shape(8))];
  const oneScope = [
    await forwardPeakBytes(shape(4), false),
    await forwardPeakBytes(shape(8), false),
  ];
  // One scope holds every layer's activations: twice the layers, about twice the bytes.
  assert.ok(oneScope[1] > 1.7 * oneScope[0], `one scope: ${oneScope[0]} -> ${oneScope[1]} bytes`);
  assert.ok(layered[1] < 1.1 * layered[0], `layer by layer: ${layered[0]} -> ${layered[1]} bytes`);
  assert.ok(layered[0] < 0.5 * oneScope[0], `4 layers: ${layered[0]} vs ${oneScope[0]} bytes`);
});

Deno.test("loss falls on a tiny repeated text within a few dozen Adam steps (wasm)", async () => {
  await setBackend("wasm", { quiet: true });
  const cfg = modelConfig("cpu-tiny", 16, { block_size: 16 });
  const w = initWeights(cfg, 1);
  const text = Array.from({ length: 64 }, (_, i) => (i * 5) % 16); // a period-16 pattern
  const rows = (off: number) => [0, 1, 2, 3].map((b) => text.slice(off + b * 8, off + b * 8 + 16));
  const idx = tf.tensor2d(rows(0), undefined, "int32");
  const targets = tf.tensor2d(rows(1), undefined, "int32");
  const vars = trainableNames(cfg).map((n) => w[n]);
  const optimizer = tf.train.adam(1e-2);
  const losses: number[] = [];
  for (let step = 0; step < 40; step++) {
    const loss = optimizer.minimize(() => meanLoss(cfg, w, idx, targets), true, vars)!;
    losses.push((await loss.data())[0]);
    loss.dispose();
  }
  assert.ok(Math.abs(losses[0] - Math.log(16)) < 0.3, `initial loss ${losses[0]} far from ln 16`);
  assert.ok(losses.at(-1)! < 0.5 * losses[0], `loss ${losses[0]} -> ${losses.at(-1)}`);
  optimizer.dispose();
  tf.dispose([idx, targets, ...Object.values(w)]);
});

Deno.test("presets and config errors are clear", () => {
  for (
    const name of ["gpt2-small", "gpt2-medium", "gpt2-large", "cpu-tiny", "cpu-small", "cpu-base"]
  ) {
    assert.ok(PRESETS[name], name);
  }
  assert.deepEqual(
    [PRESETS["gpt2-small"].n_layer, PRESETS["gpt2-small"].n_head, PRESETS["gpt2-small"].n_embd],
    [12, 12, 768],
  );
  const cfg = modelConfig("cpu-base", 8192, { block_size: 128 });
  assert.deepEqual(cfg, {
    n_layer: 6,
    n_head: 8,
    n_embd: 256,
    block_size: 128,
    bias: false,
    vocab_size: 8192,
  });
  assert.throws(
    () => modelConfig("gpt5", 100),
    /unknown model preset "gpt5": expected one of gpt2-small/,
  );
  assert.throws(() => modelConfig("cpu-tiny", 100, { n_head: 3 }), /not divisible by n_head 3/);
});

Deno.test("weightsFromArrays names the missing, unexpected or misshapen tensor", async () => {
  await setBackend("cpu", { quiet: true });
  const cfg = FIXTURE.config;
  const arrays = fixtureArrays();
  const { ["transformer.ln_f.bias"]: _dropped, ...missing } = arrays;
  assert.throws(() => weightsFromArrays(cfg, missing), /missing .*transformer\.ln_f\.bias/);
  assert.throws(
    () =>
      weightsFromArrays(cfg, {
        ...arrays,
        "transformer.h.9.attn.c_attn.weight": arrays["transformer.wte.weight"],
      }),
    /unexpected tensor\(s\) transformer\.h\.9\.attn\.c_attn\.weight/,
  );
  const bad = {
    ...arrays,
    "transformer.wpe.weight": { shape: [4, 16], data: new Float32Array(64) },
  };
  assert.throws(
    () => weightsFromArrays(cfg, bad),
    /transformer\.wpe\.weight has shape \[4,16\].*expected \[8,16\]/,
  );
  // HF's lm_head (tied) and attention-mask buffers are accepted and ignored.
  const w = weightsFromArrays(cfg, {
    ...arrays,
    "lm_head.weight": arrays["transformer.wte.weight"],
  });
  const idx = tf.tensor2d([[1, 2, 3, 4, 5, 6, 7, 8, 9]], undefined, "int32");
  assert.throws(() => forward(cfg, w, idx), /sequence length 9 exceeds the model's block_size 8/);
  tf.dispose([idx, ...Object.values(w)]);
});
