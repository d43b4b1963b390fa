// The paired bootstrap against its numpy reference (tests/fixtures/bootstrap/generate.py,
// which replays the same draws), plus properties an interval must have whatever the draws.
import assert from "node:assert/strict";
import {
  excludesZero,
  pairedBootstrap,
  type PairedWindows,
  percentileSorted,
} from "../../../lm/eval/bootstrap.ts";

interface Case {
  name: string;
  seeds: { diffs: number[]; strata: number[] }[];
  resamples: number;
  confidence: number;
  seed: number;
  expected: { gap: number; lower: number; upper: number; n_windows: number; n_seeds: number };
}

const cases: Case[] = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/bootstrap/cases.json", import.meta.url)),
);

const toSeeds = (c: Case): PairedWindows[] =>
  c.seeds.map((s) => ({ diffs: Float64Array.from(s.diffs), strata: Int32Array.from(s.strata) }));

for (const c of cases) {
  Deno.test(`pairedBootstrap matches numpy: ${c.name}`, () => {
    const got = pairedBootstrap(toSeeds(c), {
      resamples: c.resamples,
      confidence: c.confidence,
      seed: c.seed,
    });
    const close = (a: number, b: number, what: string) =>
      assert.ok(Math.abs(a - b) <= 1e-12, `${what}: ${a} vs numpy ${b}`);
    close(got.gap, c.expected.gap, "gap");
    close(got.lower, c.expected.lower, "lower");
    close(got.upper, c.expected.upper, "upper");
    assert.equal(got.nWindows, c.expected.n_windows);
    assert.equal(got.nSeeds, c.expected.n_seeds);
  });
}

Deno.test("pairedBootstrap is deterministic and the interval brackets the gap", () => {
  const c = cases[1];
  const a = pairedBootstrap(toSeeds(c), { resamples: 300, seed: 3 });
  const b = pairedBootstrap(toSeeds(c), { resamples: 300, seed: 3 });
  assert.deepEqual(a, b);
  assert.ok(a.lower < a.gap && a.gap < a.upper, JSON.stringify(a));
});

Deno.test("pairedBootstrap is close to the normal-theory interval on many windows", () => {
  // 4000 windows of N(-0.01, 0.05): the 95% interval is about mean ± 1.96·0.05/√4000.
  const next = (() => {
    let s = 12345;
    return () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  })();
  const diffs = Float64Array.from({ length: 4000 }, () => {
    const u = Math.max(next(), 1e-12), v = next();
    return -0.01 + 0.05 * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  });
  const got = pairedBootstrap([{ diffs, strata: new Int32Array(diffs.length) }], {
    resamples: 2000,
  });
  const half = 1.96 * 0.05 / Math.sqrt(4000);
  assert.ok(Math.abs((got.upper - got.lower) / 2 - half) < 0.15 * half, JSON.stringify(got));
  assert.ok(excludesZero(got));
});

Deno.test("identical series give a zero-width interval at zero", () => {
  const diffs = new Float64Array(50);
  const got = pairedBootstrap([{ diffs, strata: new Int32Array(50) }], { resamples: 100 });
  assert.deepEqual([got.gap, got.lower, got.upper], [0, 0, 0]);
  assert.equal(excludesZero(got), false);
});

Deno.test("percentileSorted is numpy's linear percentile", () => {
  const x = Float64Array.from([1, 2, 4, 8]);
  assert.equal(percentileSorted(x, 0), 1);
  assert.equal(percentileSorted(x, 100), 8);
  assert.equal(percentileSorted(x, 50), 3);
  assert.equal(percentileSorted(x, 2.5), 1.075);
});

Deno.test("pairedBootstrap rejects bad input with a clear message", () => {
  assert.throws(() => pairedBootstrap([]), /no seeds/);
  assert.throws(
    () => pairedBootstrap([{ diffs: new Float64Array(2), strata: new Int32Array(3) }]),
    /2 differences but 3 strata/,
  );
  assert.throws(
    () => pairedBootstrap([{ diffs: Float64Array.from([NaN]), strata: new Int32Array(1) }]),
    /non-finite/,
  );
  assert.throws(
    () =>
      pairedBootstrap([{ diffs: new Float64Array(2), strata: new Int32Array(2) }], {
        confidence: 1,
      }),
    /confidence/,
  );
});
