// The train step end to end on a tiny GPT and a synthetic token file, cpu backend (the
// deterministic one): loss falls, the logged LR follows the schedules, checkpoints carry
// the Hugging Face GPT-2 names, EMA/SWA series are the averages they claim to be,
// accumulation equals one big batch, kill-and-resume is bit-exact, NaN marks divergence,
// wall-clock timings stay in side files.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { type FakeContext, fakeContext } from "../helpers/fake_ctx.ts";
import { trainStep } from "../../steps/train.ts";
import { resolveTrainParams, type TrainParams, trainParams } from "../../lm/train/params.ts";
import { lrAt, swaLrAt } from "../../lm/train/schedule.ts";
import { readSafetensorsF32 } from "../../lm/checkpoints/safetensors.ts";
import { readSeriesInfo } from "../../lm/checkpoints/series.ts";
import { writeTokens } from "../../lm/data/windows.ts";
import { initWeights, modelConfig } from "../../lm/model/gpt.ts";
import { setBackend } from "../../lm/backend/backend.ts";
import type { InputRef, Row } from "../../pipeline/step.ts";
import { listFiles, SIDE_DIR } from "../../pipeline/store.ts";

const VOCAB = 32;
const MODEL = { n_layer: 1, n_head: 2, n_embd: 16, block_size: 16 };

/** A tokenize-like output: a learnable sequence (period 12) with a little noise. */
async function tokenDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "train-tokens-" });
  const ids: number[] = [];
  let noise = 12345;
  for (let i = 0; i < 4000; i++) {
    noise = (noise * 1103515245 + 12345) % 2147483648;
    ids.push(noise % 17 === 0 ? 12 + (noise % 20) : (i * 5) % 12);
  }
  await writeTokens(`${dir}/train.bin`, ids, "uint16");
  const meta = {
    format: "tokens/1",
    vocab_size: VOCAB,
    dtype: "uint16",
    tokenizer: { kind: "compact" },
    domains: [],
    counts: { train: ids.length },
    eot_id: 0,
    unk_id: null,
    decode: null,
  };
  await Deno.writeTextFile(`${dir}/meta.json`, JSON.stringify(meta));
  return dir;
}

const TOKENS = await tokenDir();
const tokensInput: InputRef = {
  key: "tok",
  step: "tokenize",
  node: "tokenize",
  params: {},
  dir: TOKENS,
};

function params(overrides: Record<string, unknown>): TrainParams {
  return trainParams.parse({
    preset: "cpu-tiny",
    model: MODEL,
    seq_len: 8,
    lr: 1e-2,
    warmup: 2,
    steps: 12,
    batch_tokens: 32,
    micro_batch: 2,
    save_every: 4,
    ...overrides,
  });
}

async function train(ctx: FakeContext, p: TrainParams): Promise<void> {
  await trainStep.run(ctx, p, { tokens: tokensInput });
}

async function newCtx(outDir?: string, backend = "cpu"): Promise<FakeContext> {
  return await fakeContext(trainStep, { backend, seed: 3, outDir });
}

function hfNames(nLayer: number): string[] {
  const names = ["transformer.wte.weight", "transformer.wpe.weight"];
  for (let i = 0; i < nLayer; i++) {
    for (
      const t of [
        "ln_1.weight",
        "ln_1.bias",
        "attn.c_attn.weight",
        "attn.c_attn.bias",
        "attn.c_proj.weight",
        "attn.c_proj.bias",
        "ln_2.weight",
        "ln_2.bias",
        "mlp.c_fc.weight",
        "mlp.c_fc.bias",
        "mlp.c_proj.weight",
        "mlp.c_proj.bias",
      ]
    ) names.push(`transformer.h.${i}.${t}`);
  }
  names.push("transformer.ln_f.weight", "transformer.ln_f.bias");
  return names.sort();
}

async function weightsAt(dir: string, step: number) {
  const file = `${dir}/step-${String(step).padStart(6, "0")}.safetensors`;
  return await readSafetensorsF32(file);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

Deno.test("train: loss falls, LR follows warmup + cosine, HF-named checkpoints", async () => {
  const ctx = await newCtx();
  try {
    const p = params({ steps: 40, warmup: 4, save_every: 10 });
    await setBackend("cpu");
    const tensorsBefore = tf.memory().numTensors;
    await train(ctx, p);
    assert.equal(tf.memory().numTensors, tensorsBefore, "training leaked tensors");
    const log = ctx.rows.train_log;
    assert.equal(log.length, 40);
    const schedule = { lr: 1e-2, min_lr: 1e-3, warmup: 4, steps: 40 };
    log.forEach((r, i) => {
      assert.equal(r.step, i + 1);
      assert.equal(r.tokens, (i + 1) * 32);
      assert.ok(Math.abs((r.lr as number) - lrAt(i, schedule)) < 1e-15, `lr at step ${i + 1}`);
      assert.ok(Number.isFinite(r.grad_norm) && (r.grad_norm as number) > 0);
    });
    const first = log[0].train_loss as number;
    const last = log.slice(-5).reduce((a, r) => a + (r.train_loss as number), 0) / 5;
    assert.ok(first > 3, `initial loss ${first} near ln(${VOCAB})`);
    assert.ok(last < first - 1, `loss fell from ${first} to ${last}`);

    const info = await readSeriesInfo(`${ctx.outDir}/original`);
    assert.deepEqual(info.checkpoints.map((c) => c.step), [10, 20, 30, 40]);
    assert.equal(info.checkpoints[3].tokens, 40 * 32);
    assert.equal((info.params.train as Record<string, unknown>).lr, 1e-2);
    assert.equal((info.params.train as Record<string, unknown>).batch_tokens, 32);
    assert.equal(info.model.n_layer, 1);
    assert.equal(info.model.vocab_size, VOCAB);
    const ckpt = await weightsAt(`${ctx.outDir}/original`, 40);
    assert.deepEqual(Object.keys(ckpt.tensors).sort(), hfNames(1));
    assert.deepEqual(ckpt.tensors["transformer.h.0.attn.c_attn.weight"].shape, [16, 48]);
    assert.equal(Number(ckpt.metadata.step), 40);
    assert.equal(Number(ckpt.metadata.tokens), 1280);

    // Wall-clock timings are in the rows (for DuckDB) and in side files only: every other
    // file of the entry, whose hashes downstream keys depend on, is free of them.
    assert.ok(log.every((r) => (r.elapsed_s as number) > 0 && (r.tokens_per_s as number) > 0));
    const side = `${ctx.outDir}/${SIDE_DIR}`;
    assert.ok((await Deno.readTextFile(`${side}/train_log.jsonl`)).includes('"elapsed_s"'));
    assert.ok((await Deno.readTextFile(`${side}/run.json`)).includes('"tokens_per_s"'));
    for (const rel of await listFiles(ctx.outDir)) {
      if (rel.startsWith(`${SIDE_DIR}/`) || rel.endsWith(".safetensors")) continue;
      const text = await Deno.readTextFile(`${ctx.outDir}/${rel}`);
      assert.ok(!/elapsed|tokens_per_s|wall_s|finished/.test(text), `${rel} holds a timing`);
    }
    assert.equal(Number(ckpt.metadata.lr), log[39].lr);
    assert.equal(Number(ckpt.metadata.loss), log[39].train_loss);
    assert.equal(ckpt.metadata.format, "pt");

    const runs = await ctx.results.query("SELECT status, steps_done, preset, seed FROM train_runs");
    assert.deepEqual(runs, [{ status: "completed", steps_done: 40, preset: "cpu-tiny", seed: 3 }]);
    await assert.rejects(Deno.stat(`${ctx.outDir}/state`), Deno.errors.NotFound);
    assert.ok(ctx.progressEvents.some((e) => e.startsWith("update 40 loss")));
  } finally {
    await ctx.dispose();
  }
});

Deno.test("train: SWA schedule drives the LR; EMA and SWA series are the averages", async () => {
  const ctx = await newCtx();
  try {
    const p = params({
      steps: 12,
      save_every: 1,
      ema: { decay: 0.8, every: 2 },
      swa: { start: 0.5, every: 2, lr: 2e-3, anneal_steps: 3 },
    });
    await train(ctx, p);
    const base = { lr: 1e-2, min_lr: 1e-3, warmup: 2, steps: 12 };
    const swa = { start_step: 6, swa_lr: 2e-3, anneal_steps: 3 };
    const lrs = ctx.rows.train_log.map((r: Row) => r.lr as number);
    lrs.forEach((lr, i) =>
      assert.ok(Math.abs(lr - swaLrAt(i, base, swa)) < 1e-15, `step ${i + 1}`)
    );
    assert.equal(lrs[11], 2e-3); // annealed to swa_lr and held there
    assert.notEqual(lrs[11], lrAt(11, base));

    const name = "transformer.h.0.mlp.c_fc.weight";
    const original: Float32Array[] = [];
    for (let step = 1; step <= 12; step++) {
      original[step] = (await weightsAt(`${ctx.outDir}/original`, step)).tensors[name].data;
    }
    // SWA: uniform mean of the weights after updates 7, 9, 11 (start_step 6, every 2).
    const swaInfo = await readSeriesInfo(`${ctx.outDir}/swa`);
    assert.deepEqual(swaInfo.checkpoints.map((c) => c.step), [7, 8, 9, 10, 11, 12]);
    assert.equal(swaInfo.method, "swa");
    const swa12 = (await weightsAt(`${ctx.outDir}/swa`, 12)).tensors[name].data;
    const mean = original[7].map((_, i) => (original[7][i] + original[9][i] + original[11][i]) / 3);
    assert.ok(maxAbsDiff(swa12, mean) < 1e-6, `SWA differs by ${maxAbsDiff(swa12, mean)}`);
    // EMA: from the initial weights, updated after every 2nd update with decay 0.8.
    await setBackend("cpu");
    const cfg = modelConfig("cpu-tiny", VOCAB, MODEL);
    const init = initWeights(cfg, 3);
    let ema = new Float32Array(await init[name].data());
    for (const v of Object.values(init)) v.dispose();
    for (let step = 2; step <= 12; step += 2) {
      ema = ema.map((e, i) => 0.8 * e + 0.2 * original[step][i]);
    }
    const ema12 = (await weightsAt(`${ctx.outDir}/ema`, 12)).tensors[name].data;
    assert.ok(maxAbsDiff(ema12, ema) < 1e-6, `EMA differs by ${maxAbsDiff(ema12, ema)}`);
    assert.equal((await readSeriesInfo(`${ctx.outDir}/ema`)).checkpoints.length, 12);
  } finally {
    await ctx.dispose();
  }
});

Deno.test("train: 8 accumulated micro-batches equal one batch 8x larger", async () => {
  const finals: Record<string, Float32Array>[] = [];
  for (const micro_batch of [8, 1]) {
    const ctx = await newCtx();
    try {
      await train(ctx, params({ steps: 3, batch_tokens: 64, micro_batch, save_every: 3 }));
      const { tensors } = await weightsAt(`${ctx.outDir}/original`, 3);
      finals.push(Object.fromEntries(Object.entries(tensors).map(([n, t]) => [n, t.data])));
    } finally {
      await ctx.dispose();
    }
  }
  for (const name of Object.keys(finals[0])) {
    const d = maxAbsDiff(finals[0][name], finals[1][name]);
    assert.ok(d < 1e-5, `${name}: max |diff| ${d}`);
  }
});

// wasm: with the native BLAS (lm/backend/blas.ts) where one is installed.
for (const backend of ["cpu", "wasm"]) {
  Deno.test(`train: a killed and resumed run ends bit-identical to an uninterrupted one (${backend})`, async () => {
    const p = params({ steps: 10, save_every: 3, ema: {}, swa: { start: 0.3, every: 2 } });
    const straight = await newCtx(undefined, backend);
    const killed = await newCtx(undefined, backend);
    let resumed: FakeContext | null = null;
    try {
      await train(straight, p);
      const controller = new AbortController();
      killed.signal = controller.signal;
      const update = killed.progress.update;
      killed.progress.update = (done, info) => {
        update(done, info);
        if (done === 8) controller.abort(); // after checkpoint 6, two steps are lost
      };
      await assert.rejects(train(killed, p), /cancelled at step 8/);
      resumed = await newCtx(killed.outDir, backend);
      await train(resumed, p);
      assert.ok(resumed.progressEvents.some((e) => e.includes("resuming at step 6")));
      for (const series of ["original", "ema", "swa"]) {
        const a = await readSeriesInfo(`${straight.outDir}/${series}`);
        const b = await readSeriesInfo(`${resumed.outDir}/${series}`);
        assert.deepEqual(b.checkpoints, a.checkpoints, series);
        for (const c of a.checkpoints) {
          const x = await Deno.readFile(`${straight.outDir}/${series}/${c.file}`);
          const y = await Deno.readFile(`${resumed.outDir}/${series}/${c.file}`);
          assert.ok(sameBytes(x, y), `${series} ${c.file} differs`);
        }
      }
      const strip = (rows: Row[]) => rows.map((r) => [r.step, r.loss, r.lr, r.grad_norm]);
      assert.deepEqual(strip(resumed.rows.train_log), strip(straight.rows.train_log));
    } finally {
      await straight.dispose();
      await resumed?.dispose();
      await killed.dispose();
    }
  });
}

Deno.test("train: a non-finite loss marks the run diverged and keeps its series", async () => {
  const ctx = await newCtx();
  try {
    await train(ctx, params({ steps: 10, save_every: 2, nan_at_step: 5 }));
    assert.equal(ctx.rows.train_runs.length, 1);
    assert.equal(ctx.rows.train_runs[0].status, "diverged");
    assert.equal(ctx.rows.train_runs[0].steps_done, 4);
    const info = await readSeriesInfo(`${ctx.outDir}/original`);
    assert.deepEqual(info.checkpoints.map((c) => c.step), [2, 4]);
    assert.equal(ctx.rows.train_log.length, 5);
    assert.ok(Number.isNaN(ctx.rows.train_log[4].train_loss));
  } finally {
    await ctx.dispose();
  }
});

Deno.test("train: batch shapes that do not divide give one clear message", () => {
  const cfg = modelConfig("cpu-tiny", VOCAB, MODEL);
  assert.throws(
    () => resolveTrainParams(params({ batch_tokens: 36 }), cfg),
    /batch_tokens 36 is not a multiple of seq_len 8/,
  );
  assert.throws(
    () => resolveTrainParams(params({ batch_tokens: 40, micro_batch: 2 }), cfg),
    /micro_batch 2 does not divide/,
  );
  assert.throws(
    () => resolveTrainParams(params({ seq_len: 32 }), cfg),
    /longer than the model's block_size 16/,
  );
  const r = resolveTrainParams(params({ batch_tokens: 64, micro_batch: undefined }), cfg);
  assert.equal(r.micro_batch * r.n_micro, 8);
  assert.equal(r.min_lr, 1e-3);
});
