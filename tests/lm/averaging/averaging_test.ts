// Tests of LAWA / EMA / SWA and interpolation against expected averages computed with
// numpy/torch (tests/fixtures/averaging/generate.py), plus the window membership rule,
// the incremental window, and every rejected input.
import assert from "node:assert/strict";
import { averageCheckpoints, normalizeTensorName } from "../../../lm/averaging/averaging.ts";
import {
  type AverageOptions,
  type CheckpointRef,
  planEmaSwa,
  planLawa,
  planLawaUpdates,
  seriesLabel,
  typicalSpacing,
} from "../../../lm/averaging/plan.ts";
import { interpolate } from "../../../lm/averaging/interpolate.ts";
import {
  readSafetensorsF32,
  SafetensorsReader,
  writeSafetensors,
} from "../../../lm/checkpoints/safetensors.ts";
import { readSeriesInfo } from "../../../lm/checkpoints/series.ts";

const FIXTURE = new URL("../../fixtures/averaging/", import.meta.url).pathname;

interface FixtureCase {
  name: string;
  series: string;
  options: Partial<AverageOptions> & Pick<AverageOptions, "method">;
  outputs: { step: number; sources: number[] }[];
  skipped: { step: number; missing: number[] }[];
}

const cases: FixtureCase[] = JSON.parse(await Deno.readTextFile(`${FIXTURE}cases.json`));
const expected = await SafetensorsReader.open(`${FIXTURE}expected.safetensors`);
const expectedNames = new Set(expected.byName.keys());
addEventListener("unload", () => expected.close());

async function expectedF64(name: string): Promise<Float64Array> {
  const bytes = await expected.readBytes(name);
  return new Float64Array(bytes.buffer, bytes.byteOffset, bytes.length / 8);
}

async function seriesRefs(folder: string): Promise<CheckpointRef[]> {
  const info = await readSeriesInfo(`${FIXTURE}${folder}`);
  return info.checkpoints.map((c) => ({
    step: c.step,
    tokens: c.tokens,
    path: `${FIXTURE}${folder}/${c.file}`,
  }));
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, rel: number, what: string) {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const tol = rel * Math.max(Math.abs(want[i]), 1e-3);
    if (!(Math.abs(got[i] - want[i]) <= tol)) {
      assert.fail(`${what}[${i}]: got ${got[i]}, want ${want[i]} (tolerance ${tol})`);
    }
  }
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "averaging-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const c of cases) {
  Deno.test(`fixture ${c.name}: outputs match numpy/torch to 1e-6`, async () => {
    await withTempDir(async (dir) => {
      const result = await averageCheckpoints(await seriesRefs(c.series), c.options, dir);
      assert.deepEqual(
        result.outputs.map((o) => ({ step: o.step, sources: o.sources })),
        c.outputs,
      );
      assert.deepEqual(result.skipped, c.skipped);
      for (const out of result.outputs) {
        const path = `${dir}/${out.file}`;
        const got = await readSafetensorsF32(path);
        assert.equal(got.metadata.sources, JSON.stringify(out.sources));
        assert.equal(got.metadata.step, String(out.step));
        assert.equal(out.tokens, out.step * 64, "tokens come from the newest member");
        const reader = await SafetensorsReader.open(path);
        for (const [name, t] of Object.entries(got.tensors)) {
          const key = `${c.name}/${out.step}/${name}`;
          const dtype = reader.byName.get(name)!.dtype;
          if (expectedNames.has(`${key}#bits`)) {
            // Written back in the source dtype: the float64 mean rounded to BF16 as torch does.
            assert.equal(dtype, "BF16");
            assert.deepEqual(
              await reader.readBytes(name),
              await expected.readBytes(`${key}#bits`),
              `${key} bits`,
            );
          } else {
            assert.equal(dtype, "F32", `${key}: dtype ${c.options.dtype}`);
            assertClose(t.data, await expectedF64(key), 1e-6, key);
          }
        }
        if (c.series === "series-mixed") {
          // Integer tensors are copied from the newest member: arange(3) + step.
          const counter = await reader.readBytes("transformer.h.0.attn.counter");
          assert.deepEqual(
            Array.from(new BigInt64Array(counter.slice().buffer)),
            [0, 1, 2].map((i) => BigInt(i + out.step)),
          );
          assert.ok(!reader.byName.has("_orig_mod.transformer.wte.weight"), "names normalized");
        }
        reader.close();
      }
    });
  });
}

Deno.test("LAWA membership: exact steps only, windows with a missing member are skipped", () => {
  const steps = [0, 10, 20, 40, 50, 60, 70, 90];
  assert.deepEqual(planLawa(steps, { k: 3, nu: 10, interval: 10, start: 0 }), {
    windows: [{ step: 20, members: [0, 10, 20] }, { step: 60, members: [40, 50, 60] }, {
      step: 70,
      members: [50, 60, 70],
    }],
    skipped: [{ step: 40, missing: [30] }, { step: 50, missing: [30] }, {
      step: 90,
      missing: [80],
    }],
  });
  // Interval on the grid start + m * interval; windows reaching before the first checkpoint
  // are neither produced nor reported.
  assert.deepEqual(planLawa(steps, { k: 2, nu: 20, interval: 30, start: 10 }), {
    windows: [{ step: 40, members: [20, 40] }, { step: 70, members: [50, 70] }],
    skipped: [],
  });
  assert.deepEqual(
    planLawa(steps, { k: 1, nu: 5, interval: 20, start: 0 }).windows.map((w) => w.step),
    [0, 20, 40, 60],
  );
  assert.throws(
    () => planLawa(steps, { k: 0, nu: 1, interval: 1, start: 0 }),
    /k must be a positive integer, got 0/,
  );
  assert.throws(
    () => planLawa(steps, { k: 2, nu: -1, interval: 1, start: 0 }),
    /nu must be a positive integer, got -1/,
  );
});

Deno.test("LAWA updates: incremental while it reads fewer checkpoints, fresh every recomputeEvery", () => {
  const windows = (ends: number[], k: number, nu: number) =>
    ends.map((t) => ({
      step: t,
      members: Array.from({ length: k }, (_, j) => t - (k - 1 - j) * nu),
    }));
  // Sliding by one checkpoint: one in, one out (2 < 5) until the recompute.
  assert.deepEqual(
    planLawaUpdates(windows([40, 50, 60, 70, 80, 90], 5, 10), 2),
    ["fresh", "incremental", "incremental", "fresh", "incremental", "incremental"],
  );
  // Windows that share no member (interval >= k * nu) are always fresh.
  assert.deepEqual(planLawaUpdates(windows([40, 90, 140], 5, 10), 5), ["fresh", "fresh", "fresh"]);
  // k = 2 sliding by one: one in, one out is not fewer than 2 reads.
  assert.deepEqual(planLawaUpdates(windows([10, 20, 30], 2, 10), 5), ["fresh", "fresh", "fresh"]);
  assert.deepEqual(planLawaUpdates(windows([40, 50], 5, 10), 0), ["fresh", "fresh"]);
});

Deno.test("EMA/SWA plan follows Algorithm 2 (step_size, init_point, start)", () => {
  const steps = [0, 1, 2, 3, 4, 5, 6];
  const ema = planEmaSwa(steps, {
    method: "ema",
    alpha: 0.25,
    stepSize: 2,
    initPoint: 2,
    start: 0,
  });
  assert.deepEqual(ema.map((b) => [b.step, b.keep, b.take]), [[0, 0, 1], [4, 0.75, 0.25], [
    6,
    0.75,
    0.25,
  ]]);
  const swa = planEmaSwa(steps, { method: "swa", alpha: 0, stepSize: 1, initPoint: 0, start: 4 });
  assert.deepEqual(swa.map((b) => [b.step, b.keep, b.take, b.members]), [
    [4, 0, 1, [4]],
    [5, 1 / 2, 1 / 2, [4, 5]],
    [6, 2 / 3, 1 / 3, [4, 5, 6]],
  ]);
  assert.throws(
    () => planEmaSwa(steps, { method: "ema", alpha: 1.5, stepSize: 1, initPoint: 0, start: 0 }),
    /alpha must be in \(0, 1\]/,
  );
  assert.throws(
    () => planEmaSwa(steps, { method: "ema", alpha: 0.1, stepSize: 0, initPoint: 0, start: 0 }),
    /step_size must be a positive integer/,
  );
});

Deno.test("checkpoint spacing and labels", () => {
  assert.equal(typicalSpacing([0, 100, 200, 300, 350, 450]), 100);
  assert.equal(typicalSpacing([5, 10, 30, 50]), 20);
  assert.equal(typicalSpacing([7]), 1);
  assert.equal(seriesLabel({ method: "lawa", k: 5, nu: 2, alpha: 0.1, start: 0 }), "LAWA k=5 ν=2");
  assert.equal(
    seriesLabel({ method: "lawa", k: 5, nu: 1000, alpha: 0.1, start: 21000 }),
    "LAWA k=5 ν=1000 from step 21000",
  );
  assert.equal(seriesLabel({ method: "ema", k: 5, nu: 2, alpha: 0.1, start: 0 }), "EMA α=0.1");
  assert.equal(
    seriesLabel({ method: "swa", k: 5, nu: 2, alpha: 0.1, start: 300 }),
    "SWA from step 300",
  );
});

Deno.test("key normalization strips torch.compile and DDP prefixes", () => {
  assert.equal(
    normalizeTensorName("_orig_mod.transformer.h.0.attn.c_attn.weight"),
    "transformer.h.0.attn.c_attn.weight",
  );
  assert.equal(normalizeTensorName("module._orig_mod.lm_head.weight"), "lm_head.weight");
  assert.equal(normalizeTensorName("transformer.module.x"), "transformer.module.x");
});

/** A random F64 series: F64 output keeps the accumulator's precision visible. */
async function writeRandomSeries(
  dir: string,
  steps: number[],
  n: number,
): Promise<CheckpointRef[]> {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  const refs: CheckpointRef[] = [];
  for (const step of steps) {
    const path = `${dir}/in-${step}.safetensors`;
    const w = Float64Array.from({ length: n }, () => rand() * 1e3);
    const b = Float64Array.from({ length: 7 }, () => rand());
    await writeSafetensors(path, {
      w: { dtype: "F64", shape: [n], data: w },
      b: { dtype: "F64", shape: [7], data: b },
    });
    refs.push({ step, path });
  }
  return refs;
}

Deno.test("incremental LAWA windows equal the direct mean and read fewer checkpoints", async () => {
  await withTempDir(async (dir) => {
    const refs = await writeRandomSeries(dir, Array.from({ length: 16 }, (_, i) => i), 3000);
    const opts = { method: "lawa" as const, k: 5, nu: 1, interval: 1 };
    const direct = await averageCheckpoints(refs, { ...opts, recomputeEvery: 0 }, `${dir}/direct`);
    const incremental = await averageCheckpoints(
      refs,
      { ...opts, recomputeEvery: 1000 },
      `${dir}/inc`,
    );
    const periodic = await averageCheckpoints(refs, opts, `${dir}/periodic`);
    assert.equal(direct.outputs.length, 12);
    assert.equal(direct.checkpointReads, 12 * 5);
    assert.equal(incremental.checkpointReads, 5 + 11 * 2);
    assert.ok(
      periodic.checkpointReads > incremental.checkpointReads &&
        periodic.checkpointReads < direct.checkpointReads,
    );
    for (const out of direct.outputs) {
      const want = await readSafetensorsF32(`${dir}/direct/${out.file}`);
      for (const variant of ["inc", "periodic"]) {
        const reader = await SafetensorsReader.open(`${dir}/${variant}/${out.file}`);
        const a = await reader.readBytes("w");
        reader.close();
        const got = new Float64Array(a.buffer, 0, a.length / 8);
        assertClose(got, want.tensors.w.data.map((x) => x), 1e-6, `${variant} ${out.step}`);
        // Far tighter than float32: the float64 running sum drifts only by rounding.
        const directBytes = await (await SafetensorsReader.open(`${dir}/direct/${out.file}`))
          .readBytes("w");
        const exact = new Float64Array(directBytes.buffer, 0, directBytes.length / 8);
        assertClose(got, exact, 1e-12, `${variant} ${out.step} vs float64 direct`);
      }
    }
  });
});

Deno.test("bad inputs are rejected with a message, before anything is written", async () => {
  await withTempDir(async (dir) => {
    const refs = await writeRandomSeries(dir, [0, 1, 2, 3], 5);
    const out = `${dir}/out`;
    const expectReject = async (
      members: CheckpointRef[],
      opts: Partial<AverageOptions> & Pick<AverageOptions, "method">,
      message: RegExp,
    ) => {
      await assert.rejects(() => averageCheckpoints(members, opts, out), message);
      await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound, "nothing written");
    };
    await expectReject(
      refs,
      { method: "lawa", k: 5, nu: 1, interval: 1 },
      /LAWA with k=5 needs at least 5 checkpoints, found 4/,
    );
    await expectReject(refs, { method: "lawa", k: 0 }, /k must be a positive integer, got 0/);
    await expectReject(
      refs,
      { method: "lawa", k: 2, nu: 0 },
      /nu must be a positive integer, got 0/,
    );
    await expectReject(refs, { method: "lawa", k: 3, nu: 2, interval: 1 }, /no full LAWA window/);
    await expectReject(refs, { method: "ema", start: 9 }, /no checkpoint at or after start step 9/);
    await expectReject(
      [...refs, { step: 1, path: refs[0].path }],
      { method: "swa" },
      /two checkpoints claim step 1/,
    );

    const shape = `${dir}/shape.safetensors`;
    await writeSafetensors(shape, {
      w: { dtype: "F64", shape: [6], data: new Float64Array(6) },
      b: { dtype: "F64", shape: [7], data: new Float64Array(7) },
    });
    await expectReject(
      [...refs, { step: 4, path: shape }],
      { method: "lawa", k: 2 },
      /mismatched shapes: tensor "w" is \[6\] in checkpoint at step 4 .* but \[5\] at step 0/,
    );
    const names = `${dir}/names.safetensors`;
    await writeSafetensors(names, {
      w: { dtype: "F64", shape: [5], data: new Float64Array(5) },
      c: { dtype: "F64", shape: [7], data: new Float64Array(7) },
    });
    await expectReject(
      [...refs, { step: 4, path: names }],
      { method: "lawa", k: 2 },
      /mismatched tensor names: checkpoint at step 4 .* lacks "b"/,
    );
    const extra = `${dir}/extra.safetensors`;
    await writeSafetensors(extra, {
      w: { dtype: "F64", shape: [5], data: new Float64Array(5) },
      b: { dtype: "F64", shape: [7], data: new Float64Array(7) },
      z: { dtype: "F32", shape: [1], data: new Float32Array(1) },
    });
    await expectReject(
      [...refs, { step: 4, path: extra }],
      { method: "swa" },
      /has "z" which step 0 lacks/,
    );
    const truncated = `${dir}/truncated.safetensors`;
    const bytes = await Deno.readFile(refs[3].path);
    await Deno.writeFile(truncated, bytes.subarray(0, bytes.length - 8));
    await expectReject([...refs.slice(0, 3), { step: 3, path: truncated }], {
      method: "lawa",
      k: 2,
    }, /truncated\.safetensors: truncated file/);
  });
});

Deno.test("interpolate writes alpha * a + (1 - alpha) * b (fixture members)", async () => {
  await withTempDir(async (dir) => {
    const a = `${FIXTURE}series-mixed/step-000300.safetensors`; // stored with _orig_mod. prefix
    const b = `${FIXTURE}series-mixed/step-001100.safetensors`;
    for (const alpha of [0, 0.4, 1]) {
      const path = `${dir}/interp-${alpha}.safetensors`;
      await interpolate(a, b, alpha, path, { dtype: "float32" });
      const got = await readSafetensorsF32(path);
      assert.equal(got.metadata.alpha, String(alpha));
      for (const [name, t] of Object.entries(got.tensors)) {
        const ta = await expectedF64(`member/mixed/300/${name}`);
        const tb = await expectedF64(`member/mixed/1100/${name}`);
        assertClose(
          t.data,
          ta.map((x, i) => alpha * x + (1 - alpha) * tb[i]),
          1e-6,
          `${alpha} ${name}`,
        );
      }
    }
    await assert.rejects(
      () =>
        interpolate(
          a,
          `${FIXTURE}series-bf16/step-000000.safetensors`,
          0.5,
          `${dir}/bad.safetensors`,
        ),
      /mismatched tensor names/,
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "interp-0.4.safetensors",
      "interp-0.safetensors",
      "interp-1.safetensors",
    ]);
  });
});
