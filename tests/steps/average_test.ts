// Tests of the `average` step: picks the original series of its input, takes nu and
// interval in training steps (multiples of the checkpoint spacing), writes a series
// matching the numpy/torch fixture, and carries the model and training params over.
import assert from "node:assert/strict";
import { AverageParams, averageStep } from "../../steps/average.ts";
import type { InputRef } from "../../pipeline/step.ts";
import { readSafetensorsF32, SafetensorsReader } from "../../lm/checkpoints/safetensors.ts";
import {
  listSeries,
  readSeriesInfo,
  type SeriesInfo,
  writeSeriesInfo,
} from "../../lm/checkpoints/series.ts";
import { fakeContext } from "../helpers/fake_ctx.ts";

const FIXTURE = new URL("../fixtures/averaging/", import.meta.url).pathname;

async function copySeries(from: string, to: string, method = "original"): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    await Deno.copyFile(`${from}/${e.name}`, `${to}/${e.name}`);
  }
  const info = await readSeriesInfo(to);
  await writeSeriesInfo(to, { ...info, method, label: method });
}

function inputRef(dir: string): InputRef {
  return { key: "upstream", step: "train", node: "train-high-lr", params: {}, dir };
}

async function withTrainOutput(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "average-step-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("params: defaults applied, bad values rejected", () => {
  assert.deepEqual(AverageParams.parse({ method: "lawa" }), {
    method: "lawa",
    k: 5,
    alpha: 0.1,
    step_size: 1,
    init_point: 0,
    start: 0,
    dtype: "source",
    accumulate: "float64",
  });
  assert.throws(() => AverageParams.parse({ method: "lawa", k: 0 }));
  assert.throws(() => AverageParams.parse({ method: "lawa", nu: -2 }));
  assert.throws(() => AverageParams.parse({ method: "mean" }));
  assert.throws(() => AverageParams.parse({ method: "ema", alpha: 0 }));
});

Deno.test("LAWA in training steps on a train output with several series (bf16 members)", async () => {
  await withTrainOutput(async (dir) => {
    await copySeries(`${FIXTURE}series-bf16`, `${dir}/original`);
    await copySeries(`${FIXTURE}series-bf16`, `${dir}/ema`, "ema");
    // The run's seed travels with the series, so savings can pair it with its original.
    const original = await readSeriesInfo(`${dir}/original`);
    await writeSeriesInfo(`${dir}/original`, {
      ...original,
      params: { ...original.params, seed: 3 },
    });
    const ctx = await fakeContext(averageStep);
    try {
      // Checkpoints every 50 steps; ν 50 and interval 100 steps (fixture bf16_lawa_k3_nu50_i100).
      const params = AverageParams.parse({ method: "lawa", k: 3, nu: 50, interval: 100 });
      await averageStep.run(ctx, params, { series: inputRef(dir) });
      const [out] = await listSeries(ctx.outDir);
      assert.equal(out.dir, ctx.outDir);
      const info: SeriesInfo = out.info;
      const source = await readSeriesInfo(`${FIXTURE}series-bf16`);
      assert.equal(info.label, "LAWA k=3 ν=50");
      assert.equal(info.method, "lawa");
      assert.deepEqual(info.model, source.model);
      assert.deepEqual(info.params.train, source.params.train);
      assert.equal(info.params.seed, 3);
      assert.equal(info.params.nu, 50);
      assert.equal(info.params.interval, 100);
      assert.equal(info.params.checkpoint_spacing, 50);
      const cases = JSON.parse(await Deno.readTextFile(`${FIXTURE}cases.json`));
      const want = cases.find((c: { name: string }) => c.name === "bf16_lawa_k3_nu50_i100");
      assert.deepEqual(
        info.checkpoints.map((c) => ({ step: c.step, sources: c.sources })),
        want.outputs,
      );
      assert.deepEqual(
        info.checkpoints.map((c) => c.tokens),
        info.checkpoints.map((c) => c.step * 64),
      );
      const expected = await SafetensorsReader.open(`${FIXTURE}expected.safetensors`);
      for (const c of info.checkpoints) {
        const reader = await SafetensorsReader.open(`${ctx.outDir}/${c.file}`);
        assert.equal(reader.header.metadata.sources, JSON.stringify(c.sources));
        for (const t of reader.header.tensors) {
          assert.equal(t.dtype, "BF16");
          const wantBits = await expected.readBytes(
            `bf16_lawa_k3_nu50_i100/${c.step}/${t.name}#bits`,
          );
          assert.deepEqual(await reader.readBytes(t.name), wantBits, `${c.step} ${t.name}`);
        }
        reader.close();
      }
      expected.close();
      assert.ok(
        ctx.progressEvents[0].startsWith("start LAWA k=3 ν=50 3 ckpt"),
        ctx.progressEvents[0],
      );
      assert.ok(
        ctx.progressEvents.some((e) => e.startsWith("log LAWA k=3 ν=50: 3 checkpoints from 7")),
      );
    } finally {
      await ctx.dispose();
    }
  });
});

Deno.test("SWA from a training step, float32 output (fixture swa_from500)", async () => {
  const ctx = await fakeContext(averageStep);
  try {
    const params = AverageParams.parse({ method: "swa", start: 500, dtype: "float32" });
    await averageStep.run(ctx, params, { series: inputRef(`${FIXTURE}series-mixed`) });
    const info = await readSeriesInfo(ctx.outDir);
    assert.equal(info.label, "SWA from step 500");
    assert.deepEqual(info.checkpoints.map((c) => c.step), [500, 700, 800, 900, 1000, 1100]);
    const last = info.checkpoints[info.checkpoints.length - 1];
    assert.deepEqual(last.sources, [500, 700, 800, 900, 1000, 1100]);
    const got = await readSafetensorsF32(`${ctx.outDir}/${last.file}`);
    const expected = await SafetensorsReader.open(`${FIXTURE}expected.safetensors`);
    for (const [name, t] of Object.entries(got.tensors)) {
      const bytes = await expected.readBytes(`swa_from500/1100/${name}`);
      const want = new Float64Array(bytes.buffer, 0, bytes.length / 8);
      t.data.forEach((x, i) =>
        assert.ok(
          Math.abs(x - want[i]) <= 1e-6 * Math.max(1e-3, Math.abs(want[i])),
          `${name}[${i}]`,
        )
      );
    }
    expected.close();
  } finally {
    await ctx.dispose();
  }
});

Deno.test("an input with several series and no original one is rejected", async () => {
  await withTrainOutput(async (dir) => {
    await copySeries(`${FIXTURE}series-bf16`, `${dir}/ema`, "ema");
    await copySeries(`${FIXTURE}series-bf16`, `${dir}/swa`, "swa");
    const ctx = await fakeContext(averageStep);
    try {
      await assert.rejects(
        () =>
          averageStep.run(ctx, AverageParams.parse({ method: "lawa", k: 2 }), {
            series: inputRef(dir),
          }),
        /input "train-high-lr" holds 2 series \(ema, swa\), expected one or one with method "original"/,
      );
      await assert.rejects(
        () =>
          averageStep.run(ctx, AverageParams.parse({ method: "lawa" }), {
            series: [inputRef(dir)],
          }),
        /must be one checkpoint series, not a list/,
      );
    } finally {
      await ctx.dispose();
    }
  });
});

Deno.test("ν and interval off the checkpoint spacing are one clear error naming both", async () => {
  await withTrainOutput(async (dir) => {
    await copySeries(`${FIXTURE}series-bf16`, `${dir}/original`);
    const ctx = await fakeContext(averageStep);
    try {
      const run = (p: Record<string, unknown>) =>
        averageStep.run(ctx, AverageParams.parse({ method: "lawa", k: 2, ...p }), {
          series: inputRef(dir),
        });
      await assert.rejects(
        () => run({ nu: 75 }),
        /LAWA ν \(nu\) = 75 training steps is not a multiple of the checkpoint spacing, 50 steps/,
      );
      await assert.rejects(
        () => run({ nu: 50, interval: 30 }),
        /LAWA interval = 30 training steps is not a multiple of the checkpoint spacing, 50 steps/,
      );
      // Defaults: ν and interval are the spacing.
      await run({});
      const info = await readSeriesInfo(ctx.outDir);
      assert.equal(info.params.nu, 50);
      assert.equal(info.params.interval, 50);
    } finally {
      await ctx.dispose();
    }
  });
});
