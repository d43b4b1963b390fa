// The hub step against the local hub: a run that fails midway (a corrupt download)
// keeps its finished revisions and the rerun fetches only the rest; the series it
// writes (one safetensors per step, buffers left out, the identical revision dropped);
// revision specs; and hf_tokenize on its tokenizer.json.
import assert from "node:assert/strict";
import { hubStep } from "../../steps/hub.ts";
import { hfTokenizeStep } from "../../steps/hf_tokenize.ts";
import { fakeContext } from "../helpers/fake_ctx.ts";
import { startLocalHub } from "../helpers/local_hub.ts";
import { readSeriesInfo } from "../../lm/checkpoints/series.ts";
import { readSafetensorsHeader } from "../../lm/checkpoints/safetensors.ts";
import { chooseWeights, selectRevisions, stepOfRevision } from "../../lm/hub/revisions.ts";
import { loadHfTokenizer } from "../../lm/data/hf_tokenizer.ts";
import { readMeta } from "../../lm/data/windows.ts";
import type { InputRef } from "../../pipeline/step.ts";

const ROOT = new URL("../fixtures/neox/repo", import.meta.url).pathname;
const REPO = "test/pythia-tiny";

Deno.test("hub specs: revision lists and ranges, step numbers, weight files", () => {
  assert.deepEqual(selectRevisions({ from: 21000, to: 27000, every: 3000 }), [
    "step21000",
    "step24000",
    "step27000",
  ]);
  assert.deepEqual(selectRevisions({ revisions: ["step1", "step3"] }), ["step1", "step3"]);
  assert.throws(() => selectRevisions({ revisions: ["step1"], from: 1 }), /either/);
  assert.throws(() => selectRevisions({ from: 1, to: 5 }), /every/);
  assert.throws(() => selectRevisions({ revisions: ["step1", "step1"] }), /twice/);
  assert.equal(stepOfRevision("step143000"), 143000);
  assert.throws(() => stepOfRevision("main"), /does not name a training step/);
  assert.equal(
    chooseWeights(["pytorch_model.bin", "model.safetensors"], "r").format,
    "safetensors",
  );
  assert.equal(chooseWeights(["pytorch_model.bin.index.json"], "r").format, "bin-sharded");
  assert.throws(() => chooseWeights(["config.json"], "x/y step1"), /x\/y step1 has no weights/);
});

Deno.test("hub step: resumes after a failure, writes the series, hf_tokenize reads its tokenizer", async () => {
  const hub = await startLocalHub({ root: ROOT, repo: REPO });
  const saved = Deno.env.get("HF_ENDPOINT");
  Deno.env.set("HF_ENDPOINT", hub.url);
  Deno.env.set("HF_HUB_CACHE", "/nonexistent-hf-cache");
  const ctx = await fakeContext(hubStep);
  try {
    const params = hubStep.params.parse({ repo: REPO, from: 1000, to: 6000, every: 1000 });
    hub.corrupt.add("model-00001-of-00002.safetensors"); // step5000's first shard
    await assert.rejects(hubStep.run(ctx, params, {}), /step5000 .*refused: content hash/);
    const before = hub.requests.length;
    hub.corrupt.clear();
    await hubStep.run(ctx, params, {});
    const again = hub.requests.slice(before).map((r) => r.path);
    for (const rev of ["step1000", "step2000", "step3000"]) {
      const commit = hub.commitOf(rev);
      assert.ok(!again.some((p) => p.includes(commit)), `${rev} fetched again`);
    }

    const info = await readSeriesInfo(ctx.outDir);
    assert.deepEqual(info.checkpoints.map((c) => c.step), [1000, 2000, 3000, 5000, 6000]);
    assert.equal(info.checkpoints[0].tokens, 1000 * 2_097_152);
    assert.equal(info.model.arch, "gpt_neox");
    assert.deepEqual(info.params.duplicates, [{ revision: "step4000", same_as: "step3000" }]);
    for (const c of info.checkpoints) {
      const header = await readSafetensorsHeader(`${ctx.outDir}/${c.file}`);
      assert.equal(header.tensors.length, 2 * 12 + 4, `${c.file}: buffers left in`);
      assert.ok(header.tensors.every((t) => t.dtype === "F16"));
    }
    assert.deepEqual(
      ctx.rows.hub_revisions.filter((r) => r.duplicate_of).map((r) => r.revision),
      ["step4000"],
    );
    const left = [...Deno.readDirSync(ctx.outDir)].map((e) => e.name).sort();
    assert.ok(!left.includes(".hub"), "work folder left behind");
    assert.ok(left.includes("tokenizer.json") && left.includes("config.json"));

    // hf_tokenize: a corpus with one held-out document, tokenized with that tokenizer.json.
    const corpus = await Deno.makeTempDir({ prefix: "corpus-" });
    const text = "The cat sat on the mat and the dog sat on it.";
    await Deno.mkdir(`${corpus}/val`, { recursive: true });
    await Deno.writeTextFile(`${corpus}/val/notes.jsonl`, JSON.stringify({ text }) + "\n");
    await Deno.writeTextFile(
      `${corpus}/corpus.json`,
      JSON.stringify({
        format: "corpus/1",
        splits: { train: {}, val: { notes: { docs: 1, chars: text.length } } },
      }),
    );
    const tctx = await fakeContext(hfTokenizeStep);
    try {
      const ref = (dir: string, node: string): InputRef => ({
        key: node,
        step: node,
        node,
        params: {},
        dir,
      });
      await hfTokenizeStep.run(tctx, hfTokenizeStep.params.parse({ val_only: true }), {
        corpus: ref(corpus, "corpus"),
        tokenizer: ref(ctx.outDir, "pythia"),
      });
      const meta = await readMeta(tctx.outDir);
      assert.equal(meta.tokenizer.kind, "hf");
      assert.equal(meta.vocab_size, 277);
      assert.equal(meta.eot_id, 0);
      const tok = await loadHfTokenizer(`${tctx.outDir}/tokenizer.json`);
      const ids = new Uint16Array((await Deno.readFile(`${tctx.outDir}/val-notes.bin`)).buffer);
      assert.deepEqual([...ids], [...tok.encode(text), 0]);
    } finally {
      await tctx.dispose();
      await Deno.remove(corpus, { recursive: true });
    }
  } finally {
    if (saved === undefined) Deno.env.delete("HF_ENDPOINT");
    else Deno.env.set("HF_ENDPOINT", saved);
    Deno.env.delete("HF_HUB_CACHE");
    await ctx.dispose();
    await hub.close();
  }
});
