// GPT-NeoX against an independent float64 numpy forward (tests/fixtures/neox/make_fixture.py):
// every checkpoint layout of the fixture repo (fp16 .bin with old Pythia buffers, sharded
// .bin, safetensors, sharded safetensors) and a float32 sequential-residual model.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { setBackend } from "../../../lm/backend/backend.ts";
import { configFromHfJson, isNeox, loadModel } from "../../../lm/model/model.ts";
import { disposeWeights } from "../../../lm/eval/loss.ts";
import { scoreTokens } from "../../../lm/eval/score.ts";
import { neoxForward } from "../../../lm/model/neox.ts";

const FIXTURE = new URL("../../fixtures/neox/", import.meta.url).pathname;
const expected = JSON.parse(await Deno.readTextFile(`${FIXTURE}expected.json`));
const tokens = new Uint16Array((await Deno.readFile(`${FIXTURE}tokens.bin`)).buffer);

for (const backend of ["cpu", "wasm"] as const) {
  Deno.test(`neox (${backend}): every checkpoint layout matches the numpy forward to 1e-4`, async () => {
    await setBackend(backend);
    for (const rev of ["step1000", "step2000", "step3000", "step5000"]) {
      const m = await loadModel(`${FIXTURE}repo/${rev}`);
      try {
        assert.ok(isNeox(m.config));
        const r = await scoreTokens(m.config, m.weights, tokens, expected.seq_len);
        assert.equal(r.tokens, 6 * 16);
        assert.ok(
          Math.abs(r.loss - expected.revisions[rev].loss) < 1e-4,
          `${rev} (${expected.revisions[rev].format}): ${r.loss} vs ${
            expected.revisions[rev].loss
          }`,
        );
      } finally {
        disposeWeights(m.weights);
      }
    }
  });
}

Deno.test("neox: sequential residual, full rotary, float32: loss and logits", async () => {
  await setBackend("wasm");
  const m = await loadModel(`${FIXTURE}sequential`);
  try {
    const r = await scoreTokens(m.config, m.weights, tokens, expected.seq_len);
    assert.ok(Math.abs(r.loss - expected.sequential_loss) < 1e-4, `${r.loss}`);
    const logits = tf.tidy(() => {
      if (!isNeox(m.config)) throw new Error("not neox");
      const idx = tf.tensor2d(Int32Array.from(tokens.subarray(0, 16)), [1, 16], "int32");
      return neoxForward(m.config, m.weights, idx);
    });
    const values = await logits.data();
    logits.dispose();
    const V = m.config.vocab_size;
    for (let j = 0; j < 8; j++) {
      assert.ok(Math.abs(values[j] - expected.sequential_logits_row0[j]) < 1e-4);
      assert.ok(Math.abs(values[15 * V + j] - expected.sequential_logits_last[j]) < 1e-4);
    }
  } finally {
    disposeWeights(m.weights);
  }
});

Deno.test("neox config: Pythia's config.json fields, clear errors", () => {
  const base = JSON.parse(Deno.readTextFileSync(`${FIXTURE}repo/step1000/config.json`));
  const cfg = configFromHfJson(base, "config.json");
  assert.ok(isNeox(cfg));
  assert.equal(cfg.block_size, 64);
  assert.equal(cfg.use_parallel_residual, true);
  assert.throws(
    () => configFromHfJson({ ...base, tie_word_embeddings: true }, "c.json"),
    /tied embeddings/,
  );
  assert.throws(() => configFromHfJson({ ...base, hidden_act: "relu" }, "c.json"), /hidden_act/);
  assert.throws(() => configFromHfJson({ ...base, model_type: "llama" }, "c.json"), /llama/);
});
