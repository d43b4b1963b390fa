// Savings on synthetic perplexity curves whose crossing points are known by construction.
import assert from "node:assert/strict";
import {
  computeSavings,
  type CurvePoint,
  firstStepReaching,
  proportionalWallClock,
  wallClockFromLog,
} from "../../../lm/eval/savings.ts";

const TOKENS_PER_STEP = 1000;

/** ppl(step) = 10 + 100 / step for the original; the averaged series runs `shift` ahead. */
function curve(shift: number, steps: number[]): CurvePoint[] {
  return steps.map((step) => ({
    step,
    tokens: step * TOKENS_PER_STEP,
    ppl: 10 + 100 / (step + shift),
  }));
}

const STEPS = Array.from({ length: 10 }, (_, i) => (i + 1) * 100); // 100..1000

Deno.test("firstStepReaching returns the first checkpoint at or below the target", () => {
  const c = curve(0, STEPS);
  assert.equal(firstStepReaching(c, 10 + 100 / 500)?.step, 500);
  assert.equal(firstStepReaching(c, 10 + 100 / 450)?.step, 500);
  assert.equal(firstStepReaching(c, 1), null);
  // order of the input does not matter
  assert.equal(firstStepReaching([...c].reverse(), 10 + 100 / 300)?.step, 300);
});

Deno.test("savings: steps, tokens and wall clock saved against the original's final checkpoint", () => {
  const original = { id: "train/original", curve: curve(0, STEPS) };
  const lawa = { id: "avg/lawa", curve: curve(400, STEPS) }; // reaches final ppl at step 600
  const finalPpl = 10 + 100 / 1000;
  // tolerance t: target = finalPpl * (1 + t); LAWA reaches it first at the smallest step
  // s with 10 + 100 / (s + 400) <= target.
  const tolerances = [0, 0.01, 0.02];
  const wall = wallClockFromLog([{ step: 0, elapsed_s: 0 }, { step: 1000, elapsed_s: 50 }]);
  const rows = computeSavings(original, [original, lawa], tolerances, wall);
  assert.equal(rows.length, 6);
  for (const tol of tolerances) {
    const target = finalPpl * (1 + tol);
    const firstLawa = STEPS.find((s) => 10 + 100 / (s + 400) <= target)!;
    const firstOrig = STEPS.find((s) => 10 + 100 / s <= target)!;
    const rl = rows.find((r) => r.series_id === "avg/lawa" && r.tolerance === tol)!;
    const ro = rows.find((r) => r.series_id === "train/original" && r.tolerance === tol)!;
    assert.ok(Math.abs(rl.target_ppl - target) < 1e-12);
    assert.equal(rl.baseline_id, "train/original");
    assert.equal(rl.baseline_step, 1000);
    assert.equal(rl.first_step, firstLawa);
    assert.equal(rl.steps_saved, 1000 - firstLawa);
    assert.equal(rl.tokens_saved, (1000 - firstLawa) * TOKENS_PER_STEP);
    assert.ok(Math.abs(rl.wall_saved_s! - (1000 - firstLawa) * 0.05) < 1e-9);
    assert.equal(ro.first_step, firstOrig);
  }
  // by construction: at tol 0 the original needs all 1000 steps, LAWA 600
  assert.equal(rows.find((r) => r.series_id === "avg/lawa" && r.tolerance === 0)!.first_step, 600);
  assert.equal(
    rows.find((r) => r.series_id === "train/original" && r.tolerance === 0)!.steps_saved,
    0,
  );
  // a larger tolerance never saves less
  const saved = tolerances.map((t) =>
    rows.find((r) => r.series_id === "avg/lawa" && r.tolerance === t)!.steps_saved!
  );
  assert.ok(saved[0] <= saved[1] && saved[1] <= saved[2] && saved[2] > saved[0]);
});

Deno.test("savings: a series that never reaches the target gets nulls", () => {
  const original = { id: "o", curve: curve(0, STEPS) };
  const worse = { id: "w", curve: STEPS.map((step) => ({ step, tokens: step, ppl: 50 })) };
  const [row] = computeSavings(original, [worse], [0], null);
  assert.equal(row.first_step, null);
  assert.equal(row.steps_saved, null);
  assert.equal(row.tokens_saved, null);
  assert.equal(row.wall_saved_s, null);
});

Deno.test("wall clocks: interpolated from the training log, or proportional to steps", () => {
  const wall = wallClockFromLog([
    { step: 100, elapsed_s: 10 },
    { step: 200, elapsed_s: 30 },
    { step: 400, elapsed_s: 50 },
  ])!;
  assert.equal(wall(150), 20);
  assert.equal(wall(300), 40);
  assert.equal(wall(50), 5); // before the first logged step: proportional
  assert.equal(wall(800), 100); // after the last: proportional
  assert.equal(wallClockFromLog([]), null);
  assert.equal(proportionalWallClock(120, 1000)(250), 30);
  const original = { id: "o", curve: curve(0, STEPS) };
  const lawa = { id: "l", curve: curve(400, STEPS) };
  const [row] = computeSavings(original, [lawa], [0], proportionalWallClock(200, 1000));
  assert.equal(row.wall_saved_s, 200 * 400 / 1000);
});

Deno.test("savings: a baseline without checkpoints is a clear error", () => {
  assert.throws(
    () => computeSavings({ id: "o", curve: [] }, [], [0], null),
    /baseline series o has no evaluated/,
  );
});
