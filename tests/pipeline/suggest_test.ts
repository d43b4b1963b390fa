import assert from "node:assert/strict";
import { closest, didYouMean, editDistance } from "../../pipeline/suggest.ts";

Deno.test("edit distance counts insertions, deletions, substitutions and swaps", () => {
  assert.equal(editDistance("", ""), 0);
  assert.equal(editDistance("lr", "lr"), 0);
  assert.equal(editDistance("jobs", "jbos"), 1);
  assert.equal(editDistance("ablation", "ablaton"), 1);
  assert.equal(editDistance("wasm", "wams"), 1);
  assert.equal(editDistance("cpu", "webgpu"), 4);
  assert.equal(editDistance("kitten", "sitting"), 3);
});

Deno.test("a typo gets the closest name; something unrelated gets none", () => {
  const pipelines = ["ablation-k-nu", "baselines", "batch-sweep", "lr-sweep", "smoke"];
  assert.equal(closest("ablation-k-n", pipelines), "ablation-k-nu");
  assert.equal(closest("batch-swep", pipelines), "batch-sweep");
  assert.equal(closest("Smoke", pipelines), "smoke");
  assert.equal(closest("figures-of-merit", pipelines), undefined);
  assert.equal(closest("delay", ["delay_ms", "n"]), "delay_ms");
  assert.equal(closest("ba", pipelines), undefined);
  assert.equal(didYouMean("wsam", ["wasm", "cpu"]), ` (did you mean "wasm"?)`);
  assert.equal(didYouMean("gpu", ["wasm", "tensorflow"]), "");
});
