// The model interface over both families: a Hugging Face GPT-2 folder (names without the
// `transformer.` prefix, an lm_head copy and attn.bias buffers, as the hub's gpt2 has)
// loads and scores like the numpy reference of tests/fixtures/eval; folders without
// weights or with an unknown model_type fail clearly.
import assert from "node:assert/strict";
import { setBackend } from "../../../lm/backend/backend.ts";
import { findWeights, isNeox, loadModel } from "../../../lm/model/model.ts";
import { disposeWeights, evaluateWindows } from "../../../lm/eval/loss.ts";
import { writeSafetensors } from "../../../lm/checkpoints/safetensors.ts";

const fixture = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/eval/fixture.json", import.meta.url)),
);

Deno.test("loadModel: a Hugging Face GPT-2 folder scores like the numpy reference", async () => {
  await setBackend("wasm");
  const dir = await Deno.makeTempDir({ prefix: "hf-gpt2-" });
  try {
    const c = fixture.config;
    await Deno.writeTextFile(
      `${dir}/config.json`,
      JSON.stringify({
        model_type: "gpt2",
        n_layer: c.n_layer,
        n_head: c.n_head,
        n_embd: c.n_embd,
        vocab_size: c.vocab_size,
        n_positions: c.block_size,
      }),
    );
    const tensors: Record<string, { dtype: "F32" | "U8"; shape: number[]; data: ArrayBufferView }> =
      {};
    for (
      const [name, t] of Object.entries(fixture.weights) as [
        string,
        { shape: number[]; data: number[] },
      ][]
    ) {
      tensors[name.replace(/^transformer\./, "")] = {
        dtype: "F32",
        shape: t.shape,
        data: Float32Array.from(t.data),
      };
    }
    tensors["lm_head.weight"] = tensors["wte.weight"];
    tensors["h.0.attn.bias"] = { dtype: "F32", shape: [1, 1, 8, 8], data: new Float32Array(64) };
    await writeSafetensors(`${dir}/model.safetensors`, tensors);

    const m = await loadModel(dir);
    try {
      assert.ok(!isNeox(m.config));
      assert.equal(m.tokenizerPath, null);
      const r = await evaluateWindows(m.config, m.weights, {
        x: Int32Array.from(fixture.windows.x),
        y: Int32Array.from(fixture.windows.y),
        count: fixture.windows.count,
        seqLen: fixture.windows.seq_len,
      }, { batchSize: 2 });
      assert.ok(Math.abs(r.meanLoss - fixture.expected.mean_loss) < 1e-4, `${r.meanLoss}`);
    } finally {
      disposeWeights(m.weights);
    }

    await Deno.remove(`${dir}/model.safetensors`);
    await assert.rejects(findWeights(dir), /no weights \(expected one of model\.safetensors/);
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ model_type: "llama" }));
    await assert.rejects(loadModel(dir), /model_type "llama" is not supported/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
