// Tests of lm/backend/webgpu.ts and of training on the webgpu backend, run on whatever
// adapter WebGPU finds (without a GPU: Mesa's software Vulkan). webgpu is compared with
// the cpu backend and the PyTorch fixture: loss and every gradient to 1e-4, a few AdamW
// steps to 2e-3, and a 6-step run of the train step at seed 1 to 2e-3 per step.
// Without an adapter these tests fail (tests/helpers/webgpu.ts says how to skip them).
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { backendInfo, setBackend } from "../../../lm/backend/backend.ts";
import {
  checkLogitsFit,
  describeAdapter,
  softwareAdapterWarning,
  summarizeAdapter,
  takeWebgpuError,
  webgpuAddNFixed,
} from "../../../lm/backend/webgpu.ts";
import {
  type GPTConfig,
  initWeights,
  isDecayed,
  meanLoss,
  modelConfig,
  trainableNames,
  weightsFromArrays,
} from "../../../lm/model/gpt.ts";
import { accumulateGradients, AdamW } from "../../../lm/train/optim.ts";
import { trainStep } from "../../../steps/train.ts";
import { trainParams } from "../../../lm/train/params.ts";
import { writeTokens } from "../../../lm/data/windows.ts";
import { fakeContext } from "../../helpers/fake_ctx.ts";
import { requireWebgpu, skipWebgpu } from "../../helpers/webgpu.ts";

function maxDiff(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= worst)) worst = d; // NaN counts as worst
  }
  return worst;
}

Deno.test("adapters are named, and software ones recognised and warned about", () => {
  const lavapipe = summarizeAdapter({
    info: { vendor: "65541", architecture: "", device: "0", description: "llvmpipe (LLVM 15)" },
    limits: { maxStorageBufferBindingSize: 134217728, maxStorageBuffersPerShaderStage: 8 },
  });
  assert.equal(lavapipe.software, true);
  assert.equal(lavapipe.maxStorageBufferBindingSize, 134217728);
  assert.equal(describeAdapter(lavapipe), "llvmpipe (LLVM 15) (vendor 65541, software)");
  assert.match(softwareAdapterWarning(lavapipe)!, /^warning: webgpu runs on a software adapter/);
  assert.ok(!softwareAdapterWarning(lavapipe)!.includes("\n"));
  const swiftshader = summarizeAdapter({ info: { vendor: "google", description: "SwiftShader" } });
  assert.equal(swiftshader.software, true);
  const fallback = summarizeAdapter({ info: { vendor: "x", isFallbackAdapter: true } });
  assert.equal(fallback.software, true);
  const nvidia = summarizeAdapter({
    info: { vendor: "nvidia", architecture: "hopper", description: "NVIDIA H100" },
  });
  assert.equal(nvidia.software, false);
  assert.equal(softwareAdapterWarning(nvidia), null);
  assert.equal(describeAdapter(nvidia), "NVIDIA H100 (vendor nvidia, architecture hopper)");
});

const webgpuTest = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: skipWebgpu, fn, sanitizeResources: false, sanitizeOps: false });

webgpuTest("webgpu starts on an adapter and names it", async () => {
  await requireWebgpu();
  const r = await setBackend("webgpu", { quiet: true });
  assert.equal(r.name, "webgpu");
  const info = backendInfo();
  assert.ok(info.adapter, "no adapter summary");
  assert.equal(info.detail, describeAdapter(info.adapter));
  assert.ok(info.detail.length > 0);
  assert.ok(webgpuAddNFixed());
});

webgpuTest("webgpu AddN sums any number of tensors (more than a shader can bind)", async () => {
  await requireWebgpu();
  await setBackend("webgpu", { quiet: true });
  takeWebgpuError();
  for (const n of [1, 2, 7, 8, 9, 15, 16, 31, 50]) {
    const xs = Array.from({ length: n }, (_, i) => tf.fill([3], i + 1));
    const sum = tf.addN(xs);
    const want = (n * (n + 1)) / 2;
    assert.deepEqual(Array.from(await sum.data()), [want, want, want], `addN of ${n}`);
    tf.dispose([...xs, sum]);
  }
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(takeWebgpuError(), null);
});

interface Fixture {
  config: GPTConfig;
  idx: number[][];
  targets: number[][];
  weights: Record<string, { shape: number[]; data: number[] }>;
  loss: number;
  grads: Record<string, number[]>;
}

const FIXTURE: Fixture = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/gpt/tiny.json", import.meta.url)),
);

/** Loss and every gradient of the PyTorch fixture on one backend. */
async function fixtureGradients(
  backend: "cpu" | "webgpu",
): Promise<{ loss: number; grads: Record<string, Float32Array> }> {
  await setBackend(backend, { quiet: true });
  const cfg = FIXTURE.config;
  const arrays: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [name, { shape, data }] of Object.entries(FIXTURE.weights)) {
    arrays[name] = { shape, data: Float32Array.from(data) };
  }
  const w = weightsFromArrays(cfg, arrays);
  const idx = tf.tensor2d(FIXTURE.idx, undefined, "int32");
  const targets = tf.tensor2d(FIXTURE.targets, undefined, "int32");
  const names = trainableNames(cfg);
  // Through accumulateGradients, as training does (two micro-batches of one row each).
  const { grads, loss } = accumulateGradients(w, names, 2, (i) =>
    meanLoss(
      cfg,
      w,
      tf.slice(idx, [i, 0], [1, -1]) as tf.Tensor2D,
      tf.slice(targets, [i, 0], [1, -1]) as tf.Tensor2D,
    ));
  const out: Record<string, Float32Array> = {};
  for (const name of names) out[name] = (await grads[name].data()) as Float32Array;
  const lossValue = (await loss.data())[0];
  tf.dispose([loss, idx, targets, ...Object.values(grads), ...Object.values(w)]);
  return { loss: lossValue, grads: out };
}

webgpuTest("webgpu: loss and every gradient of the PyTorch fixture equal cpu's", async () => {
  await requireWebgpu();
  const cpu = await fixtureGradients("cpu");
  const gpu = await fixtureGradients("webgpu");
  assert.equal(takeWebgpuError(), null);
  assert.ok(Math.abs(gpu.loss - FIXTURE.loss) < 1e-4, `loss ${gpu.loss} vs ${FIXTURE.loss}`);
  assert.ok(Math.abs(gpu.loss - cpu.loss) < 1e-4, `loss ${gpu.loss} vs cpu ${cpu.loss}`);
  for (const name of Object.keys(FIXTURE.grads)) {
    const d = maxDiff(gpu.grads[name], cpu.grads[name]);
    assert.ok(d < 1e-4, `grad ${name}: webgpu vs cpu differ by ${d}`);
    const t = maxDiff(gpu.grads[name], FIXTURE.grads[name]);
    assert.ok(t < 1e-4, `grad ${name}: webgpu vs PyTorch differ by ${t}`);
  }
});

/** Losses and grad norms of a few AdamW steps of a bias-free tiny GPT (as train does). */
async function adamSteps(backend: "cpu" | "webgpu", steps: number) {
  await setBackend(backend, { quiet: true });
  const cfg = modelConfig("cpu-tiny", 64, { block_size: 16 });
  const w = initWeights(cfg, 1);
  const names = trainableNames(cfg);
  const params = Object.fromEntries(names.map((n) => [n, w[n]]));
  const optimizer = new AdamW(params, { decayed: isDecayed });
  const ids = Array.from({ length: 80 }, (_, i) => (i * 7 + (i >> 3)) % 64);
  const losses: number[] = [], norms: number[] = [];
  for (let s = 0; s < steps; s++) {
    const { grads, loss } = accumulateGradients(w, names, 2, (i) => {
      const rows = (shift: number) =>
        [0, 1].map((r) => ids.slice(shift + 8 * (2 * i + r) + s, shift + 8 * (2 * i + r) + s + 16));
      return meanLoss(
        cfg,
        w,
        tf.tensor2d(rows(0), undefined, "int32"),
        tf.tensor2d(rows(1), undefined, "int32"),
      );
    });
    const norm = optimizer.update(grads, 3e-3);
    losses.push((await loss.data())[0]);
    norms.push((await norm.data())[0]);
    tf.dispose([loss, norm, ...Object.values(grads)]);
  }
  optimizer.dispose();
  tf.dispose(Object.values(w));
  return { losses, norms };
}

webgpuTest("webgpu: a few AdamW steps of a tiny GPT give cpu's losses and grad norms", async () => {
  await requireWebgpu();
  const cpu = await adamSteps("cpu", 4);
  const gpu = await adamSteps("webgpu", 4);
  assert.equal(takeWebgpuError(), null);
  assert.ok(maxDiff(gpu.losses, cpu.losses) < 2e-3, `losses ${gpu.losses} vs ${cpu.losses}`);
  assert.ok(maxDiff(gpu.norms, cpu.norms) < 2e-3, `grad norms ${gpu.norms} vs ${cpu.norms}`);
  assert.ok(cpu.norms[0] > 0.1, `cpu grad norm ${cpu.norms[0]} is implausibly small`);
  assert.ok(cpu.losses[3] < cpu.losses[0], "the loss did not fall");
});

/** The per-step training losses of a 6-step train step at seed 1 on one backend. */
async function trainLosses(backend: "cpu" | "webgpu", tokensDir: string): Promise<number[]> {
  const ctx = await fakeContext(trainStep, { backend, seed: 1 });
  try {
    const p = trainParams.parse({
      preset: "cpu-tiny",
      model: { n_layer: 2, n_head: 2, n_embd: 32, block_size: 32 },
      lr: 3e-3,
      warmup: 1,
      steps: 6,
      batch_tokens: 128,
      micro_batch: 2,
      save_every: 6,
    });
    await trainStep.run(ctx, p, {
      tokens: { key: "t", step: "tokenize", node: "tokenize", params: {}, dir: tokensDir },
    });
    return ctx.rows.train_log.map((r) => (r.train_loss ?? r.loss) as number);
  } finally {
    await ctx.dispose();
  }
}

webgpuTest(
  "acceptance: a 6-step tiny run at seed 1 has cpu's per-step loss on webgpu",
  async () => {
    await requireWebgpu();
    const dir = await Deno.makeTempDir({ prefix: "webgpu-train-" });
    try {
      const ids = Array.from(
        { length: 3000 },
        (_, i) => ((i * 5) % 23 + (i % 7 === 0 ? 7 : 0)) % 48,
      );
      await writeTokens(`${dir}/train.bin`, ids, "uint16");
      await Deno.writeTextFile(
        `${dir}/meta.json`,
        JSON.stringify({
          format: "tokens/1",
          vocab_size: 48,
          dtype: "uint16",
          tokenizer: { kind: "compact" },
          domains: [],
          counts: { train: ids.length },
          eot_id: 0,
          unk_id: null,
          decode: null,
        }),
      );
      const cpu = await trainLosses("cpu", dir);
      const gpu = await trainLosses("webgpu", dir);
      assert.equal(cpu.length, 6);
      assert.equal(gpu.length, 6);
      const d = maxDiff(gpu, cpu);
      assert.ok(d < 2e-3, `webgpu losses ${gpu} vs cpu ${cpu}: max diff ${d}`);
      assert.ok(cpu[5] < cpu[0] - 0.05, `cpu loss did not fall: ${cpu}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
      await setBackend("cpu", { quiet: true });
    }
  },
);

Deno.test("logits that exceed the adapter's storage buffer are refused in one line", () => {
  const lavapipe = summarizeAdapter({
    info: { description: "llvmpipe (LLVM 15)" },
    limits: { maxStorageBufferBindingSize: 128 * 2 ** 20 },
  });
  checkLogitsFit(lavapipe, 2, 64, 4096); // 2 MiB: fine
  assert.throws(
    () => checkLogitsFit(lavapipe, 8, 1024, 50257),
    /^Error: webgpu: the logits of one micro-batch \(8 × 1024 tokens × 50257 ids × 4 bytes = 1571 MiB\) exceed the largest storage buffer of llvmpipe \(LLVM 15\) \(software\) \(128 MiB\): even one sequence does not fit: use a shorter seq_len \(at most 667 tokens\)$/,
  );
  checkLogitsFit(lavapipe, 64, 64, 8192); // exactly 128 MiB: fits
  assert.throws(() => checkLogitsFit(lavapipe, 65, 64, 8192), /: use micro_batch 64 or less$/);
});

webgpuTest(
  "a kernel that fails WebGPU validation makes the read throw, not return zeros",
  async () => {
    await requireWebgpu();
    await setBackend("webgpu", { quiet: true });
    takeWebgpuError();
    const limit = backendInfo().adapter!.maxStorageBufferBindingSize;
    // An output one float larger than one binding may hold.
    const rows = Math.floor(limit / 4 / 1024) + 1;
    const a = tf.ones([rows, 8]), b = tf.ones([1024, 8]);
    const product = tf.matMul(a, b, false, true);
    const sum = tf.sum(product);
    await assert.rejects(
      () => sum.data(),
      /^Error: webgpu: a kernel failed, so its results are wrong: /,
    );
    tf.dispose([a, b, product, sum]);
    // Later work is unaffected.
    const ok = tf.addN([tf.scalar(1), tf.scalar(2)]);
    assert.deepEqual(Array.from(await ok.data()), [3]);
    ok.dispose();
  },
);
