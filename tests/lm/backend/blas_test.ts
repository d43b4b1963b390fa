// Tests of lm/backend/blas.ts and lm/backend/wasm_blas.ts: the wasm backend's matrix
// products in a native BLAS equal the cpu backend's for every layout the model uses,
// training on them is bit-identical run to run, and without the library (or with it
// turned off) everything runs on plain wasm after one line saying why.
//
// The tests that need the library are skipped, by name, where none is installed (the
// suite must pass without it); Debian: apt-get install libopenblas0-pthread.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { backendIdentity, backendInfo, setBackend } from "../../../lm/backend/backend.ts";
import { blasLabel, findBlas, SMALL_PRODUCT } from "../../../lm/backend/blas.ts";
import { activeBlas } from "../../../lm/backend/wasm_blas.ts";
import { initWeights, meanLoss, modelConfig, trainableNames } from "../../../lm/model/gpt.ts";

const found = findBlas();
const noBlas = found.blas === null;

/** Deterministic values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = (s / 2 ** 32) * 2 - 1;
  }
  return out;
}

const size = (shape: number[]) => shape.reduce((p, q) => p * q, 1);

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

Deno.test("the BLAS lookup ends in a library or a one-line reason", () => {
  if (found.blas) {
    assert.ok(found.blas.config.length > 0);
    assert.ok(found.blas.threads >= 0);
  } else {
    assert.ok(found.reason.length > 0 && !found.reason.includes("\n"), found.reason);
  }
});

const CASES: { a: number[]; b: number[]; tA: boolean; tB: boolean }[] = [
  { a: [6, 5], b: [5, 7], tA: false, tB: false }, // x @ W
  { a: [6, 5], b: [7, 5], tA: false, tB: true }, // tied head, dx = dy @ W^T
  { a: [5, 6], b: [5, 7], tA: true, tB: false }, // dW = x^T @ dy
  { a: [40, 3], b: [2, 40], tA: true, tB: true },
  { a: [2, 6, 5], b: [5, 7], tA: false, tB: false }, // batched A, shared B: one tall product
  { a: [2, 5, 6], b: [7, 5], tA: true, tB: true }, // batched A^T, shared B^T: per entry
  { a: [6, 5], b: [3, 5, 7], tA: false, tB: false }, // shared A, batched B
  { a: [4, 6, 5], b: [4, 7, 5], tA: false, tB: true }, // attention q @ k^T
  { a: [4, 6, 6], b: [4, 6, 5], tA: true, tB: false }, // attention gradient
  { a: [2, 2, 3, 4], b: [2, 2, 4, 5], tA: false, tB: false }, // two batch axes
  // Above SMALL_PRODUCT: the product runs on every BLAS thread.
  { a: [96, 160], b: [300, 160], tA: false, tB: true },
];

Deno.test({
  name: "BLAS BatchMatMul equals cpu for every transpose and batch layout",
  ignore: noBlas,
  fn: async () => {
    assert.ok(96 * 160 * 300 >= SMALL_PRODUCT, "the last case should be a threaded product");
    const results: Record<string, Float32Array[]> = { cpu: [], wasm: [] };
    for (const backend of ["cpu", "wasm"] as const) {
      await setBackend(backend, { quiet: true });
      if (backend === "wasm") assert.ok(activeBlas(), "BLAS not in use on wasm");
      for (const [i, c] of CASES.entries()) {
        const a = tf.tensor(values(size(c.a), 2 * i + 1), c.a);
        const b = tf.tensor(values(size(c.b), 2 * i + 2), c.b);
        const out = tf.matMul(a, b, c.tA, c.tB);
        results[backend].push((await out.data()) as Float32Array);
        if (backend === "wasm") {
          const batch = c.a.length > 2 ? c.a.slice(0, -2) : c.b.slice(0, -2);
          const rows = c.tA ? c.a.at(-1)! : c.a.at(-2)!, cols = c.tB ? c.b.at(-2)! : c.b.at(-1)!;
          assert.deepEqual(out.shape, [...batch, rows, cols], `case ${i} shape`);
        }
        tf.dispose([a, b, out]);
      }
    }
    for (const [i, c] of CASES.entries()) {
      const tol = 1e-6 * c.a.at(-1)! * 8; // float32 sums of K products of numbers in [-1, 1)
      const d = maxAbsDiff(results.wasm[i], results.cpu[i]);
      assert.ok(d <= tol, `case ${i}: max |diff| ${d} > ${tol}`);
    }
  },
});

Deno.test({
  name: "BLAS _FusedMatMul (bias, every activation) equals cpu, and gradients flow",
  ignore: noBlas,
  fn: async () => {
    const out: Record<string, Float32Array[]> = { cpu: [], wasm: [] };
    for (const backend of ["cpu", "wasm"] as const) {
      await setBackend(backend, { quiet: true });
      const a = tf.tensor(values(3 * 6 * 5, 1), [3, 6, 5]);
      const b = tf.tensor(values(5 * 7, 2), [5, 7]);
      const bias = tf.tensor(values(7, 3), [7]);
      const scalarBias = tf.scalar(0.25);
      const results = [
        tf.fused.matMul({ a, b, bias, activation: "relu" }),
        tf.fused.matMul({ a, b, bias: scalarBias, activation: "linear" }),
        tf.fused.matMul({ a: b, b: a.reshape([18, 5]), transposeA: true, transposeB: true }),
        // tfjs-wasm's own kernel gets these wrong with a batched left operand.
        tf.fused.matMul({ a, b, bias, activation: "elu" }),
        tf.fused.matMul({ a, b, bias, activation: "sigmoid" }),
        tf.fused.matMul({ a, b, bias, activation: "leakyrelu", leakyreluAlpha: 0.1 }),
        tf.fused.matMul({ a, b, bias, activation: "relu6" }),
        // prelu is left to the wasm kernel (right for 2-D operands).
        tf.fused.matMul({
          a: a.reshape([18, 5]),
          b,
          activation: "prelu",
          preluActivationWeights: tf.fill([7], 0.3),
        }),
        // The gradient of a fused product (relu, bias) through the BLAS products.
        tf.grad((x: tf.Tensor) => tf.sum(tf.fused.matMul({ a: x, b, bias, activation: "relu" })))(
          a,
        ),
      ];
      for (const r of results) out[backend].push((await r.data()) as Float32Array);
      tf.dispose([a, b, bias, scalarBias, ...results]);
    }
    for (const [i, want] of out.cpu.entries()) {
      const d = maxAbsDiff(out.wasm[i], want);
      assert.ok(d < 1e-5, `result ${i}: max |diff| ${d}`);
    }
  },
});

Deno.test({
  name: "BLAS Sum over leading axes equals cpu (and other reductions still work)",
  ignore: noBlas,
  fn: async () => {
    const cases: { shape: number[]; axis: number | number[]; keepDims?: boolean }[] = [
      { shape: [40, 7], axis: 0 }, // LayerNorm weight gradient
      { shape: [3, 5, 7], axis: [0, 1] },
      { shape: [3, 5, 7], axis: [1, 0], keepDims: true },
      { shape: [3, 5, 7], axis: -1 }, // innermost: tfjs's kernel
      { shape: [3, 5, 7], axis: 1 }, // a middle axis: tfjs's kernel
      { shape: [3, 5], axis: [0, 1] }, // everything
    ];
    const out: Record<string, { shape: number[]; data: Float32Array }[]> = { cpu: [], wasm: [] };
    for (const backend of ["cpu", "wasm"] as const) {
      await setBackend(backend, { quiet: true });
      for (const [i, c] of cases.entries()) {
        const x = tf.tensor(values(size(c.shape), 40 + i), c.shape);
        const y = tf.sum(x, c.axis, c.keepDims);
        out[backend].push({ shape: y.shape, data: (await y.data()) as Float32Array });
        tf.dispose([x, y]);
      }
    }
    for (const [i, want] of out.cpu.entries()) {
      assert.deepEqual(out.wasm[i].shape, want.shape, `case ${i} shape`);
      const d = maxAbsDiff(out.wasm[i].data, want.data);
      assert.ok(d < 1e-5, `case ${i}: max |diff| ${d}`);
    }
  },
});

Deno.test({
  name: "BLAS products allocate nothing per call and leak no tensors",
  ignore: noBlas,
  fn: async () => {
    await setBackend("wasm", { quiet: true });
    const a = tf.tensor(values(8 * 16 * 12, 5), [8, 16, 12]);
    const b = tf.tensor(values(8 * 16 * 12, 6), [8, 16, 12]);
    tf.tidy(() => {
      tf.matMul(a, b, false, true); // first call: any set-up
    });
    const before = tf.memory();
    const be = tf.backend() as unknown as { numDataIds(): number };
    const ids = be.numDataIds();
    for (let i = 0; i < 5; i++) {
      tf.tidy(() => {
        tf.matMul(a, b, true, false);
      });
    }
    assert.equal(tf.memory().numBytes, before.numBytes);
    assert.equal(tf.memory().numTensors, before.numTensors);
    assert.equal(be.numDataIds(), ids, "wasm data ids leaked");
    tf.dispose([a, b]);
  },
});

/** The bytes of every weight after a few Adam steps of a small GPT on wasm. */
async function trainedBytes(steps: number): Promise<Uint8Array> {
  const cfg = modelConfig("cpu-small", 1024, { n_layer: 2 });
  const B = 8, T = 128;
  const w = initWeights(cfg, 5);
  const vars = trainableNames(cfg).map((n) => w[n]);
  const optimizer = tf.train.adam(1e-3);
  const ids = (k: number) => Int32Array.from({ length: B * T }, (_, i) => (i * k + 11) % 1024);
  const idx = tf.tensor2d(ids(7919), [B, T], "int32");
  const targets = tf.tensor2d(ids(104729), [B, T], "int32");
  for (let s = 0; s < steps; s++) {
    const loss = optimizer.minimize(() => meanLoss(cfg, w, idx, targets), true, vars)!;
    loss.dispose();
  }
  const parts = await Promise.all(trainableNames(cfg).map((n) => w[n].data()));
  const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    all.set(p as Float32Array, offset);
    offset += p.length;
  }
  optimizer.dispose();
  tf.dispose([idx, targets, ...Object.values(w)]);
  return new Uint8Array(all.buffer);
}

Deno.test({
  name: "training on the BLAS is bit-identical run to run at a fixed thread count",
  ignore: noBlas,
  fn: async () => {
    await setBackend("wasm", { quiet: true });
    const blas = activeBlas()!;
    const threads = blas.threads;
    try {
      for (const n of new Set([1, Math.max(1, navigator.hardwareConcurrency)])) {
        blas.setThreads(n);
        const first = await trainedBytes(2);
        const second = await trainedBytes(2);
        assert.ok(
          first.every((v, i) => v === second[i]),
          `${n} thread(s): two runs differ`,
        );
      }
    } finally {
      blas.setThreads(threads);
    }
  },
});

Deno.test({
  name: "backendIdentity names the BLAS, its kernels and threads for wasm",
  ignore: noBlas,
  fn: () => {
    const blas = found.blas!;
    const id = backendIdentity("wasm");
    assert.ok(id.startsWith("wasm 4.22.0 + "), id);
    assert.ok(id.includes(blas.config), id);
    if (blas.corename) assert.ok(id.includes(blas.corename), id);
    if (blas.threads > 0) assert.ok(id.endsWith(`, ${blas.threads} thread(s)`), id);
    assert.equal(backendIdentity("cpu"), "cpu 4.22.0");
  },
});

/** Runs a small script in a fresh Deno with the given environment; stdout JSON, stderr. */
async function probe(env: Record<string, string>): Promise<{ out: unknown; err: string }> {
  const backend = new URL("../../../lm/backend/backend.ts", import.meta.url).href;
  const script = `
    import * as tf from "@tensorflow/tfjs-core";
    import { backendIdentity, backendInfo, setBackend } from "${backend}";
    await setBackend("wasm");
    await setBackend("wasm"); // the notice comes once per process
    const y = tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5], [6]]));
    console.log(JSON.stringify({
      blas: backendInfo().blas, identity: backendIdentity("wasm"), y: Array.from(await y.data()),
    }));`;
  const config = new URL("../../../deno.json", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--config", config, script],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(out.stderr);
  assert.ok(out.success, `probe failed: ${err}`);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return { out: JSON.parse(lines.at(-1)!), err };
}

/** stderr lines of the backend (Deno's npm notices are not ours). */
const ourLines = (err: string) => err.split("\n").filter((l) => l.startsWith("wasm backend"));

Deno.test("without the library: plain wasm, same products, one line saying why", async () => {
  const missing = await probe({ LAWA_BLAS_LIB: "/nonexistent/libopenblas.so.0" });
  assert.deepEqual(missing.out, { blas: null, identity: "wasm 4.22.0", y: [17, 39] });
  const lines = ourLines(missing.err);
  assert.equal(lines.length, 1, missing.err);
  assert.match(
    lines[0],
    /^wasm backend: no native BLAS, matrix products on wasm \(LAWA_BLAS_LIB=\/nonexistent\/libopenblas\.so\.0 does not load/,
  );
  const off = await probe({ LAWA_BLAS_LIB: "none" });
  assert.deepEqual(off.out, { blas: null, identity: "wasm 4.22.0", y: [17, 39] });
  assert.deepEqual(ourLines(off.err), [
    "wasm backend: no native BLAS, matrix products on wasm (turned off by LAWA_BLAS_LIB)",
  ]);
  const badThreads = await probe({ LAWA_THREADS: "two" });
  assert.match(ourLines(badThreads.err)[0], /LAWA_THREADS must be a positive integer, got "two"/);
});

Deno.test({
  name: "LAWA_THREADS sets the BLAS threads, and they are in the identity",
  ignore: noBlas,
  fn: async () => {
    const one = await probe({ LAWA_THREADS: "1" });
    const { blas, identity, y } = one.out as { blas: string; identity: string; y: number[] };
    assert.equal(blas, blasLabel(found.blas!));
    assert.deepEqual(y, [17, 39]);
    if (found.blas!.threads > 0) assert.ok(identity.endsWith(", 1 thread(s)"), identity);
    assert.deepEqual(ourLines(one.err), []);
    await setBackend("wasm", { quiet: true });
    assert.equal(backendInfo().blas, blasLabel(found.blas!));
  },
});
