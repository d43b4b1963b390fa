// Held-out loss of a tiny fixed GPT against a float64 numpy reference
// (tests/fixtures/eval/make_fixture.py), on the pure-JS cpu and the wasm backends; the
// output head in chunks gives the whole-logits scores bit for bit, holding one chunk.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { setBackend } from "../../../lm/backend/backend.ts";
import { rowScores } from "../../../lm/backend/head_loss.ts";
import {
  forward,
  type GPTConfig,
  initWeights,
  modelConfig,
  weightsFromArrays,
} from "../../../lm/model/gpt.ts";
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

/**
 * Per-position scores the way evaluation computed them in one scope: every layer and
 * the whole (B*T, V) logits at once, then the same row scoring as scoreBatch.
 */
async function oneScopeScores(cfg: GPTConfig, w: Record<string, tf.Tensor>, B: number, T: number) {
  const x = windows.x.subarray(0, B * T), y = windows.y.subarray(0, B * T);
  const [nllT, argmaxT] = tf.tidy(() => {
    const idx = tf.tensor2d(x, [B, T], "int32");
    const logits = tf.reshape(forward(cfg, w, idx, { freeEachLayer: false }), [
      B * T,
      cfg.vocab_size,
    ]) as tf.Tensor2D;
    const rows = rowScores(logits, y);
    if (rows) return [tf.tensor1d(rows.nll), tf.tensor1d(rows.argmax, "int32")];
    const target = tf.gather(
      tf.reshape(logits, [-1]),
      tf.tensor1d(y.map((t, n) => n * cfg.vocab_size + t), "int32"),
    );
    return [tf.sub(tf.logSumExp(logits, 1), target), tf.argMax(logits, 1)];
  });
  const nll = new Uint32Array((await nllT.data() as Float32Array).buffer);
  const argmax = Array.from(await argmaxT.data());
  tf.dispose([nllT, argmaxT]);
  return { nll, argmax };
}

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`scores are bit for bit those of the one-scope forward, in any head chunks (${backend})`, async () => {
    await setBackend(backend);
    const w = fixtureWeights();
    try {
      const B = 3, T = windows.seqLen, N = B * T; // 24 positions
      const want = await oneScopeScores(fixture.config, w, B, T);
      const x = windows.x.subarray(0, N), y = windows.y.subarray(0, N);
      for (const headRows of [undefined, 1, 5, N, 2 * N]) {
        const got = await scoreBatch(fixture.config, w, x, y, B, T, { headRows });
        assert.deepEqual(new Uint32Array(got.nll.buffer), want.nll, `nll, ${headRows} rows`);
        assert.deepEqual(Array.from(got.argmax), want.argmax, `argmax, ${headRows} rows`);
        // Without the argmax pass: the same losses, no predictions.
        const lossOnly = await scoreBatch(fixture.config, w, x, y, B, T, {
          headRows,
          argmax: false,
        });
        assert.deepEqual(new Uint32Array(lossOnly.nll.buffer), want.nll, `nll, no argmax`);
        assert.equal(lossOnly.argmax.length, 0);
      }
      await assert.rejects(
        () => scoreBatch(fixture.config, w, x, y, B, T, { headRows: 0 }),
        /head rows per chunk must be a positive integer, got 0/,
      );
    } finally {
      disposeWeights(w);
    }
  });
}

Deno.test("scoring holds one chunk of logits at a time, never the whole batch's", async () => {
  await setBackend("cpu");
  const cfg = modelConfig("cpu-tiny", 8192, { n_layer: 1, block_size: 32 });
  const w = initWeights(cfg, 3);
  const B = 2, T = 32, N = B * T;
  const x = Int32Array.from({ length: N }, (_, i) => (i * 37) % cfg.vocab_size);
  const y = Int32Array.from({ length: N }, (_, i) => (i * 41 + 1) % cfg.vocab_size);
  const peakAbove = async (headRows: number) => {
    const before = tf.memory().numBytes;
    const profile = await tf.profile(async () => {
      await scoreBatch(cfg, w, x, y, B, T, { headRows });
    });
    return profile.peakBytes - before;
  };
  try {
    const logitsBytes = N * cfg.vocab_size * 4; // 2 MiB
    const whole = await peakAbove(N), chunked = await peakAbove(2);
    assert.ok(whole > logitsBytes, `one chunk of ${N} rows: peak ${whole} bytes`);
    assert.ok(chunked < logitsBytes / 4, `chunks of 2 rows: peak ${chunked} bytes`);
  } finally {
    disposeWeights(w);
  }
});

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
