// The intervals step's pairing: series minus original over the windows both were scored
// on, domains as strata, means over steps per window, pooling across seeds only.
import assert from "node:assert/strict";
import {
  intervalRows,
  meanOverSteps,
  pairWindows,
  poolIdentity,
  type SeriesMeta,
} from "../../steps/intervals.ts";

const windows = (entries: [string, number][]) => new Map(entries);

Deno.test("pairWindows pairs by (domain, window) and strata are domains", () => {
  const lawa = windows([["news\t0", 3.0], ["news\t1", 3.5], ["novel\t0", 4.0]]);
  const orig = windows([["news\t1", 3.25], ["news\t0", 3.5], ["novel\t0", 4.5], ["novel\t1", 9]]);
  const p = pairWindows(lawa, orig)!;
  assert.deepEqual([...p.diffs], [-0.5, 0.25, -0.5]);
  assert.deepEqual([...p.strata], [0, 0, 1]);
  assert.equal(pairWindows(lawa, windows([["other\t0", 1]])), null);
});

Deno.test("meanOverSteps averages each window's difference over the steps", () => {
  const a = { diffs: Float64Array.from([1, 2]), strata: Int32Array.from([0, 1]) };
  const b = { diffs: Float64Array.from([3, -2]), strata: Int32Array.from([0, 1]) };
  assert.deepEqual([...meanOverSteps([a, b]).diffs], [2, 0]);
  assert.throws(
    () => meanOverSteps([a, { diffs: new Float64Array(3), strata: new Int32Array(3) }]),
    /different windows/,
  );
});

function meta(seed: number): SeriesMeta {
  return {
    series_id: `key${seed}/lawa`,
    label: "LAWA k=5 ν=5",
    method: "lawa",
    k: 5,
    nu: 5,
    lr: 0.02,
    batch_tokens: 2048,
    seed,
    params: { k: 5, nu: 5, seed, train: { preset: "cpu-micro", steps: 100, lr: 0.02 } },
  };
}

Deno.test("poolIdentity ignores the seed and nothing else", () => {
  assert.equal(poolIdentity(meta(0)), poolIdentity(meta(1)));
  const other = meta(0);
  other.params = { ...other.params, nu: 10 };
  assert.notEqual(poolIdentity(other), poolIdentity(meta(0)));
});

Deno.test("intervalRows: one row per shared step, a mean from mean_from on, seeds pooled", () => {
  const paired = (shift: number) => ({
    diffs: Float64Array.from({ length: 20 }, (_, i) => shift + (i % 5) * 0.001),
    strata: Int32Array.from({ length: 20 }, (_, i) => i % 2),
  });
  const pairing = (seed: number, shift: number) => ({
    series: meta(seed),
    byStep: new Map([[5, paired(shift)], [50, paired(shift - 0.01)], [100, paired(shift - 0.02)]]),
  });
  const params = { resamples: 200, confidence: 0.95, bootstrap_seed: 0, mean_from: 0.1 };
  const one = intervalRows([pairing(0, 0)], "key0/lawa", params);
  assert.deepEqual(one.perStep.map((r) => r.step), [5, 50, 100]);
  assert.ok(one.perStep.every((r) => r.seed === 0 && r.n_seeds === 1 && r.n_windows === 20));
  assert.ok(Math.abs(one.perStep[1].gap - (-0.01 + 0.002)) < 1e-12);
  // The mean starts at 10% of the 100-step run: steps 50 and 100.
  assert.equal(one.means.length, 1);
  assert.deepEqual([one.means[0].from_step, one.means[0].to_step, one.means[0].n_steps], [
    50,
    100,
    2,
  ]);
  assert.ok(Math.abs(one.means[0].gap - (-0.015 + 0.002)) < 1e-12);
  const pooled = intervalRows([pairing(0, 0), pairing(1, 0.004)], "pooled:x", params);
  // The pool's order does not matter: seeds are resampled in seed order.
  const uneven = (seed: number) => ({
    series: meta(seed),
    byStep: new Map([[100, {
      diffs: Float64Array.from({ length: 12 }, (_, i) => ((i * (seed + 3)) % 7) * 0.001 * seed),
      strata: Int32Array.from({ length: 12 }, (_, i) => i % 3),
    }]]),
  });
  assert.deepEqual(
    intervalRows([uneven(2), uneven(0), uneven(1)], "pooled:y", params),
    intervalRows([uneven(0), uneven(1), uneven(2)], "pooled:y", params),
  );
  assert.ok(pooled.perStep.every((r) => r.seed === null && r.n_seeds === 2));
  assert.ok(Math.abs(pooled.perStep[0].gap - (0.002 + 0.002)) < 1e-12);
  assert.ok(pooled.perStep[0].lower <= pooled.perStep[0].gap);
});
