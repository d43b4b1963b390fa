// The lmc step on the fixture checkpoints A and C: the endpoints of the interpolation
// path equal the numpy reference losses of A and C.
import assert from "node:assert/strict";
import { earlyLatePairs, interpolateArrays, lmcStep } from "../../steps/lmc.ts";
import { fakeContext } from "../helpers/fake_ctx.ts";
import { fixture, writeFixtureDirs } from "../fixtures/eval/fixture_dirs.ts";
import type { InputRef } from "../../pipeline/step.ts";

function ref(step: string, dir: string): InputRef {
  return { key: step.toUpperCase(), step, node: step, params: {}, dir };
}

Deno.test("lmc step: α=1 is checkpoint a, α=0 is checkpoint b, every domain and 'all'", async () => {
  const ctx = await fakeContext(lmcStep, { backend: "cpu" });
  const root = await Deno.makeTempDir({ prefix: "lmc-test-" });
  try {
    const { tokensDir, seriesDir } = await writeFixtureDirs(root);
    const params = lmcStep.params.parse({
      pairs: [[100, 300]],
      alphas: [0, 0.5, 1],
      max_windows: 4,
    });
    await lmcStep.run(ctx, params, {
      series: ref("train", seriesDir),
      tokens: ref("tokenize", tokensDir),
    });
    const rows = ctx.rows.lmc;
    assert.equal(rows.length, 3 * 3);
    for (const domain of ["alpha", "beta", "all"]) {
      const at = (alpha: number) =>
        Number(rows.find((r) => r.alpha === alpha && r.domain === domain)!.loss);
      assert.ok(Math.abs(at(1) - fixture.heldout.loss_a[domain]) < 1e-4, `${domain} α=1`);
      assert.ok(Math.abs(at(0) - fixture.heldout.loss_c[domain]) < 1e-4, `${domain} α=0`);
      assert.ok(Number.isFinite(at(0.5)) && at(0.5) !== at(0) && at(0.5) !== at(1));
    }
    assert.ok(rows.every((r) => r.pair === "100-300" && r.step_a === 100 && r.step_b === 300));
    await assert.rejects(
      () =>
        lmcStep.run(ctx, lmcStep.params.parse({ pairs: [[100, 150]] }), {
          series: ref("train", seriesDir),
          tokens: ref("tokenize", tokensDir),
        }),
      /no checkpoint at step 150 \(steps: 100, 200, 300\)/,
    );
  } finally {
    await ctx.dispose();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("earlyLatePairs picks the nearest checkpoints to fixed fractions of the run", () => {
  const steps = Array.from({ length: 100 }, (_, i) => (i + 1) * 10); // 10..1000
  assert.deepEqual(earlyLatePairs(steps), [[10, 150], [150, 500], [500, 1000]]);
  assert.deepEqual(earlyLatePairs([100, 1000]), [[100, 1000]]);
});

Deno.test("interpolateArrays blends tensor by tensor", () => {
  const a = { w: { shape: [2], data: Float32Array.from([1, 2]) } };
  const b = { w: { shape: [2], data: Float32Array.from([3, 6]) } };
  assert.deepEqual(Array.from(interpolateArrays(a, b, 0.25).w.data), [2.5, 5]);
  assert.throws(
    () => interpolateArrays(a, { w: { shape: [3], data: new Float32Array(3) } }, 0.5),
    /tensor w differs in shape/,
  );
});
