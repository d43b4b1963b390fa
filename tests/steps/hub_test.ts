// The hub step against the local hub: a run that fails midway (a corrupt download)
// keeps its finished revisions and the rerun fetches only the rest; the series it
// writes (one safetensors per step, buffers left out, the identical revision dropped);
// revision specs; hf_tokenize on its tokenizer.json; and the Hugging Face cache shared
// by instances with other revision ranges (only missing revisions fetched; offline, the
// cache alone). HF_HUB_CACHE always points at a temp folder here.
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

/** Set environment variables (undefined: unset) for `fn`, then put them back. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>) {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const apply = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) {
      x === undefined ? Deno.env.delete(k) : Deno.env.set(k, x);
    }
  };
  apply(vars);
  try {
    return await fn();
  } finally {
    apply(saved);
  }
}

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
  const ctx = await fakeContext(hubStep);
  // Without the Hugging Face cache: downloads stay in the step's folder (and go with it).
  const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: `${ctx.outDir}/hf`, LAWA_HF_CACHE: "off" };
  await withEnv(env, async () => {
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
    assert.ok(left.every((f) => f !== "hf"), "LAWA_HF_CACHE=off wrote a cache");
  }).finally(async () => {
    await ctx.dispose();
    await hub.close();
  });
});

Deno.test("hub step: revisions A,B then B,C: the second instance downloads only C's files; offline, the cache serves", async () => {
  const hub = await startLocalHub({ root: ROOT, repo: REPO });
  const cache = await Deno.makeTempDir({ prefix: "hf-cache-" });
  const contexts: Awaited<ReturnType<typeof fakeContext>>[] = [];
  const run = async (revisions: string[]) => {
    const ctx = await fakeContext(hubStep);
    contexts.push(ctx);
    await hubStep.run(ctx, hubStep.params.parse({ repo: REPO, revisions }), {});
    return ctx;
  };
  // A body is a GET of a file other than the one-byte probe that asks for its size.
  const bodiesSince = (n: number) =>
    hub.requests.slice(n).filter((r) =>
      r.method === "GET" && r.path.includes("/resolve/") && r.range !== "bytes=0-0"
    );
  try {
    await withEnv(
      { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache, LAWA_HF_CACHE: undefined },
      async () => {
        const first = await run(["step1000", "step2000"]);
        assert.ok(bodiesSince(0).length >= 4, "the first run downloaded nothing");
        const before = hub.requests.length;
        const second = await run(["step2000", "step3000"]);
        const bodies = bodiesSince(before);
        const c = hub.commitOf("step3000");
        assert.deepEqual(
          bodies.map((r) => r.path),
          [`/${REPO}/resolve/${c}/model.safetensors`], // config and tokenizer: same blobs as A's
        );
        assert.ok(
          second.progressEvents.some((e) =>
            /2 checkpoints from 2 revisions; [\d.]+ MB downloaded, [\d.]+ MB already there in the Hugging Face cache/
              .test(e)
          ),
          second.progressEvents.join("\n"),
        );
        const info = await readSeriesInfo(second.outDir);
        assert.deepEqual(info.checkpoints.map((x) => x.step), [2000, 3000]);
        assert.deepEqual(
          await Deno.readFile(`${second.outDir}/${info.checkpoints[0].file}`),
          await Deno.readFile(`${first.outDir}/${info.checkpoints[0].file}`),
        );
        assert.ok((await Deno.stat(`${second.outDir}/tokenizer.json`)).isFile);
      },
    );

    // Offline (nothing listens on port 9): a third range inside the cache, with the
    // identical revision step4000 named by the cache too once a run has seen it.
    await withEnv(
      { HF_ENDPOINT: hub.url, HF_HUB_CACHE: cache },
      () => run(["step3000", "step4000"]),
    );
    const requests = hub.requests.length;
    await withEnv({ HF_ENDPOINT: "http://127.0.0.1:9", HF_HUB_CACHE: cache }, async () => {
      const offline = await run(["step1000", "step2000", "step3000", "step4000"]);
      const info = await readSeriesInfo(offline.outDir);
      assert.deepEqual(info.checkpoints.map((x) => x.step), [1000, 2000, 3000]);
      assert.deepEqual(info.params.duplicates, [{ revision: "step4000", same_as: "step3000" }]);
      assert.ok((await Deno.stat(`${offline.outDir}/tokenizer.json`)).isFile);
      // A revision the cache lacks: one line naming repo, revision and endpoint.
      await assert.rejects(run(["step3000", "step5000"]), (e: Error) => {
        assert.match(e.message, /test\/pythia-tiny revision step5000/);
        assert.match(e.message, /http:\/\/127\.0\.0\.1:9 is unreachable/);
        assert.ok(!e.message.includes("\n"), e.message);
        return true;
      });
    });
    assert.equal(hub.requests.length, requests);
  } finally {
    for (const ctx of contexts) await ctx.dispose();
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
});
