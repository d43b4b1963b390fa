// Tests of lm/checkpoints/train_disk.ts and lm/averaging/online.ts through the train step
// (cpu backend): online LAWA writes the series the `average` step computes from the
// saved checkpoints (to 1e-6), keep_every thins the series while LAWA still sees every
// checkpoint, bfloat16 checkpoints are half the size and round the float32 weights, the
// train manifest records tokens/s, and the estimate reads it.
import assert from "node:assert/strict";
import { fakeContext } from "../../helpers/fake_ctx.ts";
import { trainStep } from "../../../steps/train.ts";
import { trainParams } from "../../../lm/train/params.ts";
import { averageStep } from "../../../steps/average.ts";
import { readSafetensorsF32, readSafetensorsHeader } from "../../../lm/checkpoints/safetensors.ts";
import { readSeriesInfo } from "../../../lm/checkpoints/series.ts";
import { isKeptStep } from "../../../lm/checkpoints/train_disk.ts";
import { writeTokens } from "../../../lm/data/windows.ts";
import { modelConfig } from "../../../lm/model/gpt.ts";
import {
  describeEstimate,
  estimateDisk,
  lastMeasured,
  RUN_MANIFEST_PATH,
  type RunManifest,
} from "../../../lm/train/estimate.ts";
import type { InputRef } from "../../../pipeline/step.ts";

const TOKENS = await (async () => {
  const dir = await Deno.makeTempDir({ prefix: "disk-tokens-" });
  const ids = Array.from({ length: 3000 }, (_, i) => ((i * 5) % 13 + (i % 11 === 0 ? 3 : 0)) % 24);
  await writeTokens(`${dir}/train.bin`, ids, "uint16");
  await Deno.writeTextFile(
    `${dir}/meta.json`,
    JSON.stringify({
      format: "tokens/1",
      vocab_size: 24,
      dtype: "uint16",
      tokenizer: { kind: "compact" },
      domains: [],
      counts: { train: ids.length },
      eot_id: 0,
      unk_id: null,
      decode: null,
    }),
  );
  return dir;
})();

const tokensRef: InputRef = {
  key: "t",
  step: "tokenize",
  node: "tokenize",
  params: {},
  dir: TOKENS,
};

function params(extra: Record<string, unknown>) {
  return trainParams.parse({
    preset: "cpu-tiny",
    model: { n_layer: 1, n_head: 2, n_embd: 16, block_size: 8 },
    lr: 1e-2,
    warmup: 2,
    steps: 14,
    batch_tokens: 32,
    micro_batch: 4,
    save_every: 2,
    ...extra,
  });
}

async function train(extra: Record<string, unknown>) {
  const ctx = await fakeContext(trainStep, { backend: "cpu", seed: 1 });
  await trainStep.run(ctx, params(extra), { tokens: tokensRef });
  return ctx;
}

async function maxDiff(a: string, b: string): Promise<number> {
  const [x, y] = [await readSafetensorsF32(a), await readSafetensorsF32(b)];
  assert.deepEqual(Object.keys(x.tensors).sort(), Object.keys(y.tensors).sort());
  let worst = 0;
  for (const [name, t] of Object.entries(x.tensors)) {
    const u = y.tensors[name].data;
    for (let i = 0; i < t.data.length; i++) worst = Math.max(worst, Math.abs(t.data[i] - u[i]));
  }
  return worst;
}

Deno.test("online LAWA writes the series the average step computes from the checkpoints", async () => {
  const lawa = { k: 3, nu: 4, interval: 2 };
  const run = await train({ online_lawa: lawa, checkpoint_dtype: "bfloat16" });
  const avg = await fakeContext(averageStep, { backend: "cpu", seed: 1 });
  try {
    const ref: InputRef = { ...tokensRef, step: "train", node: "train", dir: run.outDir };
    await averageStep.run(avg, { method: "lawa", ...lawa, ...defaultsOfAverage() }, {
      series: ref,
    });
    const online = await readSeriesInfo(`${run.outDir}/lawa`);
    const offline = await readSeriesInfo(avg.outDir);
    assert.deepEqual(online.checkpoints.map((c) => c.step), offline.checkpoints.map((c) => c.step));
    // Windows t, t-4, t-8 on the 2-step grid: the first full one ends at step 10.
    assert.deepEqual(online.checkpoints.map((c) => c.step), [10, 12, 14]);
    assert.deepEqual(online.checkpoints[0].sources, [2, 6, 10]);
    for (const c of online.checkpoints) {
      const d = await maxDiff(`${run.outDir}/lawa/${c.file}`, `${avg.outDir}/${c.file}`);
      assert.ok(d <= 1e-6, `step ${c.step}: online and offline LAWA differ by ${d}`);
    }
    assert.equal(online.method, "lawa");
    assert.equal(online.params.nu, 4);
    assert.equal(online.params.online, true);
    assert.deepEqual(online.params.train, offline.params.train);
    // The window folder is gone once the run ended.
    await assert.rejects(() => Deno.stat(`${run.outDir}/window`), Deno.errors.NotFound);
  } finally {
    await avg.dispose();
    await run.dispose();
  }
});

function defaultsOfAverage() {
  return {
    alpha: 0.1,
    step_size: 1,
    init_point: 0,
    start: 0,
    dtype: "source" as const,
    accumulate: "float64" as const,
  };
}

Deno.test("keep_every thins the series; online LAWA still averages every checkpoint", async () => {
  const lawa = { k: 3, nu: 2, interval: 2 };
  const all = await train({ online_lawa: lawa });
  const thin = await train({ online_lawa: lawa, keep_every: 3 });
  try {
    const kept = (await readSeriesInfo(`${thin.outDir}/original`)).checkpoints.map((c) => c.step);
    assert.deepEqual(kept, [6, 12, 14]);
    const ema = await Deno.stat(`${thin.outDir}/ema`).catch(() => null);
    assert.equal(ema, null, "no EMA was asked for");
    const a = await readSeriesInfo(`${all.outDir}/lawa`);
    const b = await readSeriesInfo(`${thin.outDir}/lawa`);
    assert.deepEqual(b.checkpoints.map((c) => c.step), [6, 8, 10, 12, 14]);
    assert.deepEqual(a.checkpoints.map((c) => c.step), b.checkpoints.map((c) => c.step));
    for (const c of b.checkpoints) {
      assert.equal(
        await maxDiff(`${all.outDir}/lawa/${c.file}`, `${thin.outDir}/lawa/${c.file}`),
        0,
      );
    }
    const files = [...Deno.readDirSync(`${thin.outDir}/original`)].map((e) => e.name).sort();
    assert.deepEqual(files, [
      "series.json",
      "step-000006.safetensors",
      "step-000012.safetensors",
      "step-000014.safetensors",
    ]);
    await assert.rejects(() => Deno.stat(`${thin.outDir}/window`), Deno.errors.NotFound);
  } finally {
    await all.dispose();
    await thin.dispose();
  }
});

Deno.test("bfloat16 checkpoints: half the bytes, the float32 weights rounded", async () => {
  const f32 = await train({});
  const bf16 = await train({ checkpoint_dtype: "bfloat16" });
  try {
    const file = "step-000014.safetensors";
    const a = `${f32.outDir}/original/${file}`, b = `${bf16.outDir}/original/${file}`;
    const header = await readSafetensorsHeader(b);
    assert.ok(Object.values(header.tensors).every((t) => t.dtype === "BF16"));
    const [sa, sb] = [(await Deno.stat(a)).size, (await Deno.stat(b)).size];
    assert.ok(sb < 0.6 * sa, `bf16 ${sb} bytes vs f32 ${sa}`);
    // Same training (the state stays float32), so the stored values are the f32 ones rounded.
    const [x, y] = [await readSafetensorsF32(a), await readSafetensorsF32(b)];
    for (const [name, t] of Object.entries(x.tensors)) {
      for (let i = 0; i < t.data.length; i++) {
        const err = Math.abs(t.data[i] - y.tensors[name].data[i]);
        assert.ok(
          err <= Math.abs(t.data[i]) * 2 ** -8,
          `${name}[${i}]: ${t.data[i]} -> ${y.tensors[name].data[i]}`,
        );
      }
    }
  } finally {
    await f32.dispose();
    await bf16.dispose();
  }
});

Deno.test("the train manifest records backend and tokens/s; the estimate uses it", async () => {
  const run = await train({});
  const artifacts = await Deno.makeTempDir({ prefix: "disk-artifacts-" });
  try {
    const manifest = JSON.parse(
      await Deno.readTextFile(`${run.outDir}/${RUN_MANIFEST_PATH}`),
    ) as RunManifest;
    assert.equal(manifest.backend, "cpu");
    assert.equal(manifest.backend_detail, "pure JavaScript");
    assert.ok(manifest.tokens_per_s! > 0);
    assert.equal(manifest.steps_done, 14);
    await Deno.mkdir(`${artifacts}/cache/abc/_side`, { recursive: true });
    await Deno.copyFile(
      `${run.outDir}/${RUN_MANIFEST_PATH}`,
      `${artifacts}/cache/abc/${RUN_MANIFEST_PATH}`,
    );
    assert.equal((await lastMeasured(artifacts, "cpu"))?.tokens_per_s, manifest.tokens_per_s);
    assert.equal(await lastMeasured(artifacts, "webgpu"), null);
    // Same model: the time is steps x tokens / measured rate.
    const cfg = manifest.model;
    const plan = {
      steps: 1000,
      save_every: 10,
      batch_tokens: 32,
      seq_len: 8,
      keep_every: 1,
      dtype: "float32" as const,
      ema: false,
      swa_start: null,
      online_lawa: null,
    };
    const text = describeEstimate(cfg, plan, "cpu", manifest);
    const seconds = 1000 * 32 / manifest.tokens_per_s!;
    assert.match(text, /^disk .* · time ≈ /);
    assert.ok(text.includes("pure JavaScript"));
    assert.ok(!text.includes("scaled"), text);
    assert.ok(seconds > 0);
  } finally {
    await run.dispose();
    await Deno.remove(artifacts, { recursive: true });
  }
});

Deno.test("disk estimate: counts kept, EMA and online LAWA checkpoints", () => {
  const cfg = modelConfig("gpt2-small", 50257);
  const plan = {
    steps: 70000,
    save_every: 200,
    batch_tokens: 131072,
    seq_len: 1024,
    keep_every: 10,
    dtype: "bfloat16" as const,
    ema: true,
    swa_start: null,
    online_lawa: { k: 6, nu: 200, interval: 2000, start: 0 },
  };
  const d = estimateDisk(cfg, plan);
  // 35 kept saves (every 2000 steps) x (original + EMA) + 35 LAWA windows.
  assert.equal(d.checkpoints, 35 * 2 + 35);
  assert.ok(d.final > 20e9 && d.final < 30e9, `final ${d.final}`);
  assert.ok(d.peak > d.final && d.peak < 40e9, `peak ${d.peak}`);
  assert.equal(isKeptStep(2000, plan), true);
  assert.equal(isKeptStep(2200, plan), false);
  assert.equal(isKeptStep(70000, plan), true);
  // Every checkpoint in float32 with no thinning and EMA: hundreds of gigabytes.
  const naive = estimateDisk(cfg, { ...plan, keep_every: 1, dtype: "float32", online_lawa: null });
  assert.equal(naive.checkpoints, 700);
  assert.ok(naive.final > 300e9, `naive ${naive.final}`);
});

Deno.test("online LAWA with thinned bf16 checkpoints survives a kill and resume bit for bit", async () => {
  const extra = {
    online_lawa: { k: 3, nu: 2, interval: 2 },
    keep_every: 3,
    checkpoint_dtype: "bfloat16",
  };
  const straight = await train(extra);
  const killed = await fakeContext(trainStep, { backend: "cpu", seed: 1 });
  let resumed: Awaited<ReturnType<typeof fakeContext>> | null = null;
  try {
    const controller = new AbortController();
    killed.signal = controller.signal;
    const update = killed.progress.update;
    killed.progress.update = (done, info) => {
      update(done, info);
      if (done === 9) controller.abort(); // the state of step 8 is on disk, step 9 is lost
    };
    await assert.rejects(
      trainStep.run(killed, params(extra), { tokens: tokensRef }),
      /cancelled at step 9/,
    );
    // Members of windows still to come wait in window/ (step 8 is not kept: 8/2 = 4).
    assert.ok((await Deno.stat(`${killed.outDir}/window/step-000008.safetensors`)).isFile);
    resumed = await fakeContext(trainStep, { backend: "cpu", seed: 1, outDir: killed.outDir });
    await trainStep.run(resumed, params(extra), { tokens: tokensRef });
    for (const series of ["original", "lawa"]) {
      const a = await readSeriesInfo(`${straight.outDir}/${series}`);
      const b = await readSeriesInfo(`${resumed.outDir}/${series}`);
      assert.deepEqual(b.checkpoints, a.checkpoints, series);
      for (const c of a.checkpoints) {
        const x = await Deno.readFile(`${straight.outDir}/${series}/${c.file}`);
        const y = await Deno.readFile(`${resumed.outDir}/${series}/${c.file}`);
        assert.deepEqual(y, x, `${series}/${c.file} differs after the resume`);
      }
    }
    await assert.rejects(() => Deno.stat(`${resumed!.outDir}/window`), Deno.errors.NotFound);
  } finally {
    await straight.dispose();
    await resumed?.dispose();
    await killed.dispose().catch(() => {});
  }
});
