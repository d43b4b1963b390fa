// Training-state save/load: an exact round trip, one state file kept, and model
// checkpoints that carry the metadata transformers needs.
import assert from "node:assert/strict";
import {
  loadTrainState,
  saveTrainState,
  type TrainState,
  writeCheckpoint,
} from "../../../lm/checkpoints/training_state.ts";
import { readSafetensorsF32 } from "../../../lm/checkpoints/safetensors.ts";

function arrays(seed: number) {
  const a = new Float32Array(6).map((_, i) => Math.sin(seed + i) * 1e-3);
  return { "transformer.wte.weight": { shape: [2, 3], data: a } };
}

function stateAt(step: number): TrainState {
  return {
    step,
    tokens: step * 64,
    elapsed_s: 1.5,
    weights: arrays(step),
    adam: { step, m: arrays(step + 1), v: arrays(step + 2) },
    ema: { count: 3, weights: arrays(step + 3) },
    swa: null,
    params: { lr: 0.01, steps: 10 },
  };
}

Deno.test("saveTrainState/loadTrainState round trip, keeping only the newest state", async () => {
  const dir = await Deno.makeTempDir({ prefix: "state-test-" });
  try {
    assert.equal(await loadTrainState(dir), null);
    await saveTrainState(dir, stateAt(3));
    await saveTrainState(dir, stateAt(6));
    const loaded = await loadTrainState(dir);
    assert.deepEqual(loaded, stateAt(6));
    const files = [];
    for await (const e of Deno.readDir(dir)) files.push(e.name);
    assert.deepEqual(files.sort(), ["state-000006.safetensors", "state.json"]);
    await Deno.writeTextFile(`${dir}/state.json`, JSON.stringify({ format: "other" }));
    await assert.rejects(loadTrainState(dir), /unknown training state format/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeCheckpoint stores float32 tensors with string metadata and format pt", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ckpt-test-" });
  try {
    await writeCheckpoint(`${dir}/c.safetensors`, arrays(1), { step: 7, loss: 2.5 });
    const { tensors, metadata } = await readSafetensorsF32(`${dir}/c.safetensors`);
    assert.deepEqual(metadata, { format: "pt", step: "7", loss: "2.5" });
    assert.deepEqual(tensors, arrays(1));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
