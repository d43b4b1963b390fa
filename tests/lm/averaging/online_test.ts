// Tests of lm/averaging/online.ts: which checkpoints a later window may still use, the
// windows it averages as checkpoints arrive (the average step's plan), and one-line
// errors for ν or an interval off the checkpoint grid.
import assert from "node:assert/strict";
import { OnlineLawa } from "../../../lm/averaging/online.ts";
import { planLawa } from "../../../lm/averaging/plan.ts";

Deno.test("a checkpoint is needed while a window on the grid that ends later holds it", () => {
  // save_every 10, k 3, ν 20, a window every 20 steps from step 30: 30, 50, 70, 90.
  const lawa = new OnlineLawa({ k: 3, nu: 20, interval: 20, start: 30 }, 10, "/unused");
  // Step 30 is in the windows ending at 30, 50 and 70.
  assert.equal(lawa.stillNeeded(30, 30, 100), true);
  assert.equal(lawa.stillNeeded(30, 69, 100), true);
  assert.equal(lawa.stillNeeded(30, 70, 100), false);
  // Step 40 is in windows ending at 40, 60, 80: none on the grid.
  assert.equal(lawa.stillNeeded(40, 40, 100), false);
  // Step 90: its later windows (110, 130) lie past the end of training.
  assert.equal(lawa.stillNeeded(90, 89, 100), true);
  assert.equal(lawa.stillNeeded(90, 90, 100), false);
  // The steps it would average are the average step's windows.
  const saves = Array.from({ length: 10 }, (_, i) => 10 * (i + 1));
  const plan = planLawa(saves, lawa.options).windows.map((w) => w.step);
  assert.deepEqual(plan, [50, 70, 90]);
});

Deno.test("nu and interval must be multiples of save_every (training steps)", () => {
  assert.throws(
    () => new OnlineLawa({ k: 2, nu: 15, start: 0 }, 10, "/unused"),
    /online LAWA: nu 15 must be a positive multiple of save_every 10/,
  );
  assert.throws(
    () => new OnlineLawa({ k: 2, interval: 5, start: 0 }, 10, "/unused"),
    /online LAWA: interval 5 must be a positive multiple of save_every 10/,
  );
  assert.throws(() => new OnlineLawa({ k: 0, start: 0 }, 10, "/unused"), /k must be a positive/);
  const defaults = new OnlineLawa({ k: 4, start: 0 }, 10, "/unused");
  assert.equal(defaults.options.nu, 10);
  assert.equal(defaults.options.interval, 10);
  assert.equal(defaults.options.accumulate, "float64");
});
