// Checks the LR schedules against traces computed by PyTorch (SWALR) and by an
// independent Python implementation (tests/fixtures/optim/make_fixture.py).
import assert from "node:assert/strict";
import { lrAt, swaLrAt, trainingLrAt } from "../../../lm/train/schedule.ts";

const fixture = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/optim/fixture.json", import.meta.url)),
) as {
  schedule: { lr: number; min_lr: number; warmup: number; steps: number };
  cosine_trace: number[];
  swa: { start_step: number; swa_lr: number; anneal_steps: number };
  swa_trace: number[];
};

function assertClose(actual: number, expected: number, tol: number, what: string) {
  assert.ok(
    Math.abs(actual - expected) <= tol * Math.max(1, Math.abs(expected)),
    `${what}: ${actual} != ${expected}`,
  );
}

Deno.test("lrAt follows warmup + cosine as the reference trace", () => {
  const s = fixture.schedule;
  fixture.cosine_trace.forEach((expected, step) => {
    assertClose(lrAt(step, s), expected, 1e-12, `step ${step}`);
  });
});

Deno.test("lrAt: warmup rises linearly, peak after warmup, min_lr at the last step", () => {
  const s = { lr: 1e-3, min_lr: 1e-4, warmup: 10, steps: 100 };
  assertClose(lrAt(0, s), 1e-4, 1e-15, "first warmup step");
  assertClose(lrAt(9, s), 1e-3, 1e-15, "last warmup step");
  assertClose(lrAt(10, s), 1e-3, 1e-15, "first decay step");
  assertClose(lrAt(99, s), 1e-4, 1e-15, "last step");
  for (let step = 11; step < 100; step++) assert.ok(lrAt(step, s) < lrAt(step - 1, s));
  assertClose(lrAt(150, s), 1e-4, 1e-15, "past the end");
});

Deno.test("swaLrAt matches torch SWALR taking over at the SWA start", () => {
  fixture.swa_trace.forEach((expected, step) => {
    assertClose(swaLrAt(step, fixture.schedule, fixture.swa), expected, 1e-9, `step ${step}`);
  });
  // After the start the SWA schedule really differs from the cosine one.
  const after = fixture.swa.start_step + fixture.swa.anneal_steps + 1;
  assert.notEqual(
    trainingLrAt(after, fixture.schedule, fixture.swa),
    trainingLrAt(after, fixture.schedule, null),
  );
  assert.equal(trainingLrAt(after, fixture.schedule, fixture.swa), fixture.swa.swa_lr);
});
