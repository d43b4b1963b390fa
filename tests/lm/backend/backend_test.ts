// Tests of lm/backend/backend.ts and lm/backend/wasm_fast.ts: backends start and report
// themselves, and the re-registered wasm BatchMatMul (without a BLAS) gives the same
// numbers as the cpu backend for every transpose / batch combination the model and its
// gradients use.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { backendInfo, setBackend } from "../../../lm/backend/backend.ts";
import { fastWasmMatMulInstalled } from "../../../lm/backend/wasm_fast.ts";
import { requireWebgpu, skipWebgpu } from "../../helpers/webgpu.ts";

Deno.test("cpu and wasm start and report name, version, threads, simd", async () => {
  assert.deepEqual(await setBackend("cpu", { quiet: true }), { name: "cpu", version: "4.22.0" });
  assert.equal(tf.getBackend(), "cpu");
  assert.equal(backendInfo().threads, 1);
  const wasm = await setBackend("wasm", { quiet: true });
  assert.deepEqual(wasm, { name: "wasm", version: "4.22.0" });
  assert.equal(tf.getBackend(), "wasm");
  const info = backendInfo();
  assert.ok(info.simd, "wasm SIMD should be on");
  assert.ok(info.threads >= 1);
  assert.ok(fastWasmMatMulInstalled());
});

Deno.test("unknown backend is a one-line error", async () => {
  await assert.rejects(
    () => setBackend("tpu" as "cpu"),
    /unknown backend "tpu": expected one of wasm, cpu, webgpu, tensorflow/,
  );
});

// Needs an adapter (without a GPU: Mesa's software Vulkan) and FAILS without one; the
// webgpu numerics are tested in webgpu_test.ts.
Deno.test({
  name: "webgpu starts on the adapter and reports it",
  ignore: skipWebgpu,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    await requireWebgpu();
    assert.deepEqual(await setBackend("webgpu", { quiet: true }), {
      name: "webgpu",
      version: "4.22.0",
    });
    assert.equal(tf.getBackend(), "webgpu");
    const info = backendInfo();
    assert.ok(info.adapter && info.detail.length > 0, "webgpu names no adapter");
    await setBackend("cpu", { quiet: true });
  },
});

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

const CASES: { a: number[]; b: number[]; tA: boolean; tB: boolean }[] = [
  { a: [6, 5], b: [5, 7], tA: false, tB: false }, // x @ W
  { a: [6, 5], b: [7, 5], tA: false, tB: true }, // tied head, dx = dy @ W^T
  { a: [5, 6], b: [5, 7], tA: true, tB: false }, // dW = x^T @ dy (small A)
  { a: [40, 3], b: [40, 2], tA: true, tB: false }, // dW with a tall A: the swapped form
  { a: [40, 3], b: [2, 40], tA: true, tB: true },
  { a: [2, 6, 5], b: [5, 7], tA: false, tB: false }, // batched A, shared B: one tall matmul
  { a: [2, 5, 6], b: [7, 5], tA: true, tB: true }, // batched A^T, shared B^T
  { a: [4, 6, 5], b: [4, 7, 5], tA: false, tB: true }, // attention q @ k^T
  { a: [4, 6, 6], b: [4, 6, 5], tA: true, tB: false }, // attention gradient
];

// The wasm kernels of wasm_fast.ts (the BLAS path, when a BLAS is found, is blas_test.ts's).
Deno.test("wasm BatchMatMul equals cpu for every transpose and batch layout", async () => {
  const results: Record<string, Float32Array[]> = { cpu: [], wasm: [] };
  for (const backend of ["cpu", "wasm"] as const) {
    await setBackend(backend, { quiet: true, blas: false });
    for (const [i, c] of CASES.entries()) {
      const a = tf.tensor(values(c.a.reduce((p, q) => p * q), 2 * i + 1), c.a);
      const b = tf.tensor(values(c.b.reduce((p, q) => p * q), 2 * i + 2), c.b);
      const out = tf.matMul(a, b, c.tA, c.tB);
      results[backend].push((await out.data()) as Float32Array);
      if (backend === "wasm") {
        const expectShape = [
          ...(c.a.length === 3 ? c.a.slice(0, 1) : c.b.slice(0, -2)),
          c.tA ? c.a.at(-1)! : c.a.at(-2)!,
          c.tB ? c.b.at(-2)! : c.b.at(-1)!,
        ];
        assert.deepEqual(out.shape, expectShape, `case ${i} shape`);
      }
      tf.dispose([a, b, out]);
    }
  }
  const before = tf.memory().numTensors;
  for (const [i] of CASES.entries()) {
    const got = results.wasm[i], want = results.cpu[i];
    assert.equal(got.length, want.length);
    for (let j = 0; j < want.length; j++) {
      assert.ok(Math.abs(got[j] - want[j]) < 1e-5, `case ${i} [${j}]: ${got[j]} vs ${want[j]}`);
    }
  }
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("wasm BatchMatMul frees its temporaries", async () => {
  await setBackend("wasm", { quiet: true, blas: false });
  const a = tf.tensor(values(2 * 40 * 3, 9), [2, 40, 3]);
  const b = tf.tensor(values(40 * 2, 10), [40, 2]);
  const bytesBefore = tf.memory().numBytes;
  for (let i = 0; i < 5; i++) {
    tf.tidy(() => {
      tf.matMul(a.reshape([80, 3]), b.reshape([1, 80]), true, true);
    });
  }
  assert.equal(tf.memory().numBytes, bytesBefore);
  const wasmBackend = tf.backend() as unknown as { numDataIds(): number };
  const ids = wasmBackend.numDataIds();
  tf.tidy(() => {
    tf.matMul(a.reshape([80, 3]), b.reshape([1, 80]), true, true);
  });
  assert.equal(wasmBackend.numDataIds(), ids, "wasm data ids leaked");
  tf.dispose([a, b]);
});

const PERMS: { shape: number[]; perm: number[] }[] = [
  { shape: [7, 5], perm: [1, 0] }, // 2-D: tiled copy
  { shape: [2, 9, 3, 2, 4], perm: [2, 0, 3, 1, 4] }, // attention's head split: runs of 4
  { shape: [2, 3, 9, 4], perm: [0, 2, 1, 3] }, // head merge
  { shape: [3, 1, 17, 6], perm: [0, 3, 2, 1] }, // size-1 axis, strided innermost
  { shape: [4, 6, 5], perm: [2, 1, 0] },
];

Deno.test("wasm Transpose equals cpu for float32 and int32", async () => {
  for (const dtype of ["float32", "int32"] as const) {
    const results: Record<string, (Float32Array | Int32Array)[]> = { cpu: [], wasm: [] };
    for (const backend of ["cpu", "wasm"] as const) {
      await setBackend(backend, { quiet: true });
      for (const [i, c] of PERMS.entries()) {
        const raw = values(c.shape.reduce((p, q) => p * q), 7 * i + 3);
        const data = dtype === "int32" ? Int32Array.from(raw, (v) => Math.round(v * 1e6)) : raw;
        const x = tf.tensor(data, c.shape, dtype);
        const y = tf.transpose(x, c.perm);
        assert.deepEqual(y.shape, c.perm.map((axis) => c.shape[axis]), `case ${i} shape`);
        results[backend].push((await y.data()) as Float32Array | Int32Array);
        tf.dispose([x, y]);
      }
    }
    for (const [i] of PERMS.entries()) {
      assert.deepEqual(results.wasm[i], results.cpu[i], `${dtype} case ${i}`);
    }
  }
});

Deno.test("wasm Unpack equals cpu (leading axis: block copies; others: tfjs's kernel)", async () => {
  const cases: { shape: number[]; axis: number; dtype: "float32" | "int32" }[] = [
    { shape: [3, 4, 5, 2], axis: 0, dtype: "float32" }, // attention's q, k, v split
    { shape: [1, 3, 4], axis: 1, dtype: "int32" }, // only size-1 axes before it
    { shape: [2, 3, 4], axis: -1, dtype: "float32" }, // innermost: tfjs's kernel
    { shape: [2, 3, 4], axis: 1, dtype: "float32" },
  ];
  const results: Record<string, number[][][]> = { cpu: [], wasm: [] };
  for (const backend of ["cpu", "wasm"] as const) {
    await setBackend(backend, { quiet: true });
    for (const [i, c] of cases.entries()) {
      const raw = values(c.shape.reduce((p, q) => p * q), 50 + i);
      const data = c.dtype === "int32" ? Int32Array.from(raw, (v) => Math.round(v * 1e6)) : raw;
      const x = tf.tensor(data, c.shape, c.dtype);
      const parts = tf.unstack(x, c.axis);
      results[backend].push(await Promise.all(parts.map(async (p) => Array.from(await p.data()))));
      tf.dispose([x, ...parts]);
    }
  }
  assert.deepEqual(results.wasm, results.cpu);
});
