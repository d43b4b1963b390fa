// Held-out loss of a tiny fixed GPT against a float64 numpy reference
// (tests/fixtures/eval/make_fixture.py), on the pure-JS cpu and the wasm backends.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { setBackend } from "../../../lm/backend/backend.ts";
import { type GPTConfig, weightsFromArrays } from "../../../lm/model/gpt.ts";
import {
  disposeWeights,
  evaluateWindows,
  poolResults,
  scoreBatch,
  type Windows,
} from "../../../lm/eval/loss.ts";

interface Fixture {
  config: GPTConfig;
  weights: Record<string, { shape: number[]; data: number[] }>;
  windows: { count: number; seq_len: number; x: number[]; y: number[] };
  expected: { nll: number[]; mean_loss: number; argmax: number[] };
}

const fixture: Fixture = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/eval/fixture.json", import.meta.url)),
);

function fixtureWeights() {
  const arrays: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [name, t] of Object.entries(fixture.weights)) {
    arrays[name] = { shape: t.shape, data: Float32Array.from(t.data) };
  }
  return weightsFromArrays(fixture.config, arrays);
}

const windows: Windows = {
  x: Int32Array.from(fixture.windows.x),
  y: Int32Array.from(fixture.windows.y),
  count: fixture.windows.count,
  seqLen: fixture.windows.seq_len,
};

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`evaluateWindows matches the numpy reference to 1e-4 (${backend})`, async () => {
    await setBackend(backend);
    const w = fixtureWeights();
    try {
      // batch size 2 over 5 windows: two full batches and a remainder
      const r = await evaluateWindows(fixture.config, w, windows, {
        batchSize: 2,
        keepPredictions: true,
      });
      assert.equal(r.nTokens, fixture.windows.count * fixture.windows.seq_len);
      assert.ok(
        Math.abs(r.meanLoss - fixture.expected.mean_loss) < 1e-4,
        `mean loss ${r.meanLoss} vs reference ${fixture.expected.mean_loss}`,
      );
      assert.deepEqual(Array.from(r.predictions!), fixture.expected.argmax);
      // per position too
      const s = await scoreBatch(
        fixture.config,
        w,
        windows.x,
        windows.y,
        windows.count,
        windows.seqLen,
      );
      s.nll.forEach((v, i) =>
        assert.ok(
          Math.abs(v - fixture.expected.nll[i]) < 1e-4,
          `position ${i}: ${v} vs ${fixture.expected.nll[i]}`,
        )
      );
      // batch size does not change the result
      const one = await evaluateWindows(fixture.config, w, windows, { batchSize: 5 });
      assert.ok(Math.abs(one.meanLoss - r.meanLoss) < 1e-6);
      assert.equal(one.predictions, null);
    } finally {
      disposeWeights(w);
    }
  });
}

Deno.test("evaluation leaves no tensors behind", async () => {
  await setBackend("cpu");
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) {
    const w = fixtureWeights();
    await evaluateWindows(fixture.config, w, windows, { batchSize: 2, keepPredictions: true });
    disposeWeights(w);
  }
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("poolResults weights domains by tokens; bad inputs are clear errors", async () => {
  const all = poolResults([{ sumLoss: 10, nTokens: 10 }, { sumLoss: 60, nTokens: 30 }]);
  assert.equal(all.meanLoss, 70 / 40);
  assert.equal(all.nTokens, 40);
  await setBackend("cpu");
  const w = fixtureWeights();
  try {
    const T = fixture.config.block_size + 1;
    await assert.rejects(
      () => scoreBatch(fixture.config, w, new Int32Array(T), new Int32Array(T), 1, T),
      /sequence length 9 exceeds the model's block_size 8/,
    );
    await assert.rejects(
      () => evaluateWindows(fixture.config, w, { ...windows, count: 0 }, { batchSize: 2 }),
      /window set is empty/,
    );
  } finally {
    disposeWeights(w);
  }
});
