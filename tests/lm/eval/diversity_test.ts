// Diversity of argmax predictions: the paper's disagreement fraction.
import assert from "node:assert/strict";
import { concatPredictions, diversity } from "../../../lm/eval/diversity.ts";

Deno.test("identical predictions have diversity 0, different ones the fraction that differ", () => {
  const a = Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  assert.equal(diversity(a, Int32Array.from(a)), 0);
  const b = Int32Array.from([1, 2, 0, 4, 5, 0, 7, 0]);
  assert.equal(diversity(a, b), 3 / 8);
  assert.equal(diversity(b, a), 3 / 8);
});

Deno.test("diversity rejects predictions over different positions", () => {
  assert.throws(
    () => diversity(new Int32Array(3), new Int32Array(4)),
    /different positions \(3 vs 4\)/,
  );
  assert.throws(() => diversity(new Int32Array(0), new Int32Array(0)), /no held-out positions/);
});

Deno.test("concatPredictions keeps domain order", () => {
  const out = concatPredictions([
    Int32Array.from([1, 2]),
    Int32Array.from([]),
    Int32Array.from([3]),
  ]);
  assert.deepEqual(Array.from(out), [1, 2, 3]);
});
