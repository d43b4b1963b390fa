// The tokenize step on a small default-corpus subset (fake context): token files in
// nanoGPT's layout, meta.json, exact decoding back to the documents (gpt2, and compact
// through its byte fallback), and its errors.
import assert from "node:assert/strict";
import { corpusStep } from "../../steps/corpus.ts";
import { tokenizeStep } from "../../steps/tokenize.ts";
import { readDocuments } from "../../lm/data/corpus.ts";
import { openTokens, readMeta } from "../../lm/data/windows.ts";
import { encodeGpt2, GPT2_EOT_ID, tokenizerFromMeta } from "../../lm/data/tokenizer.ts";
import type { InputRef } from "../../pipeline/step.ts";
import { type FakeContext, fakeContext } from "../helpers/fake_ctx.ts";

type CorpusParams = Parameters<typeof corpusStep.run>[1];
type TokenizeParams = Parameters<typeof tokenizeStep.run>[1];

let corpusCtx: FakeContext | null = null;
/** The checks, run as steps of one test so the shared corpus is removed at the end. */
const cases: Array<[string, () => Promise<void>]> = [];

/** One small corpus (3 domains, 6 docs each) shared by the tests of this file. */
async function corpus(): Promise<InputRef> {
  if (!corpusCtx) {
    corpusCtx = await fakeContext(corpusStep);
    const params = corpusStep.params.parse({
      domains: ["novel", "news", "humor"],
      max_docs_per_domain: 6,
    }) as CorpusParams;
    await corpusStep.run(corpusCtx, params, {});
  }
  return { key: "corpus-key", step: "corpus", node: "corpus", params: {}, dir: corpusCtx.outDir };
}

async function runTokenize(raw: Record<string, unknown>, input?: InputRef) {
  const ctx = await fakeContext(tokenizeStep);
  try {
    const params = tokenizeStep.params.parse(raw) as TokenizeParams;
    await tokenizeStep.run(ctx, params, { corpus: input ?? await corpus() });
  } catch (e) {
    await ctx.dispose();
    throw e;
  }
  return ctx;
}

/** The train documents' texts in the order tokenize reads them. */
async function trainTexts(dir: string): Promise<string[]> {
  const texts: string[] = [];
  for (const d of ["humor", "news", "novel"]) {
    texts.push(...(await readDocuments(dir, "train", d)).map((x) => x.text));
  }
  return texts;
}

cases.push(["tokenize gpt2: nanoGPT files, counts and exact decoding", async () => {
  const input = await corpus();
  const ctx = await runTokenize({ tokenizer: "gpt2" });
  try {
    const meta = await readMeta(ctx.outDir);
    assert.equal(meta.vocab_size, 50257);
    assert.equal(meta.dtype, "uint16");
    assert.equal(meta.eot_id, GPT2_EOT_ID);
    assert.equal(meta.unk_id, null);
    assert.deepEqual(meta.domains, ["humor", "news", "novel"]);
    for (const [name, n] of Object.entries(meta.counts)) {
      assert.equal((await Deno.stat(`${ctx.outDir}/${name}.bin`)).size, 2 * n, name);
    }
    const tok = tokenizerFromMeta(meta);
    const train = await openTokens(`${ctx.outDir}/train.bin`, meta.dtype);
    const expected = (await trainTexts(input.dir)).join("<|endoftext|>") + "<|endoftext|>";
    assert.equal(tok.decode(train.read(0, train.length)), expected);
    const val = await openTokens(`${ctx.outDir}/val-news.bin`, meta.dtype);
    const newsVal = await readDocuments(input.dir, "val", "news");
    assert.equal(tok.decode(val.read(0, val.length)), newsVal[0].text + "<|endoftext|>");
    assert.ok(ctx.progressEvents.some((e) => e.startsWith("start tokenize")));
  } finally {
    await ctx.dispose();
  }
}]);

cases.push(["tokenize compact: vocab_size ids, byte fallback decodes back exactly", async () => {
  const input = await corpus();
  const ctx = await runTokenize({ tokenizer: "compact", vocab_size: 512 });
  const again = await runTokenize({ tokenizer: "compact", vocab_size: 512 });
  try {
    const meta = await readMeta(ctx.outDir);
    assert.equal(meta.vocab_size, 512);
    assert.equal(meta.dtype, "uint16");
    assert.equal(meta.unk_id, null);
    assert.equal(meta.eot_id, 0);
    assert.equal(meta.decode!.length, 512);
    assert.equal(meta.decode![0], GPT2_EOT_ID);
    for (const [name, n] of Object.entries(meta.counts)) {
      assert.equal((await Deno.stat(`${ctx.outDir}/${name}.bin`)).size, 2 * n, name);
    }
    const train = await openTokens(`${ctx.outDir}/train.bin`, "uint16");
    const ids = train.read(0, train.length);
    assert.ok(ids.every((id) => id >= 0 && id < 512));
    // Nothing is lost: train and held-out files decode to the documents exactly.
    const tok = tokenizerFromMeta(meta);
    assert.equal(tok.unkId, null);
    const texts = await trainTexts(input.dir);
    assert.equal(tok.decode(ids), texts.join("<|endoftext|>") + "<|endoftext|>");
    const val = await openTokens(`${ctx.outDir}/val-news.bin`, meta.dtype);
    const newsVal = await readDocuments(input.dir, "val", "news");
    assert.equal(tok.decode(val.read(0, val.length)), newsVal[0].text + "<|endoftext|>");
    // fallback_fraction: GPT-2 tokens of train outside the table, over all GPT-2 tokens.
    const inTable = new Set(meta.decode);
    let gpt2 = 0;
    let outside = 0;
    for (const text of texts) {
      for (const id of [...encodeGpt2(text), GPT2_EOT_ID]) {
        gpt2++;
        if (!inTable.has(id)) outside++;
      }
    }
    const fallback = meta.tokenizer.fallback_fraction as Record<string, number>;
    assert.ok(outside > 0, "a 512-id vocabulary leaves some tokens to the byte fallback");
    assert.ok(Math.abs(fallback.train - outside / gpt2) < 1e-12);
    assert.ok(fallback["val-news"] > 0 && fallback["val-news"] < 1);
    assert.ok(meta.counts.train > gpt2, "byte fallback lengthens the sequence");
    assert.equal(meta.tokenizer.unk_fraction, undefined);
    const bytes = (name: string) => Deno.readFile(`${again.outDir}/${name}`);
    assert.deepEqual(await Deno.readFile(`${ctx.outDir}/train.bin`), await bytes("train.bin"));
    assert.deepEqual(await Deno.readFile(`${ctx.outDir}/meta.json`), await bytes("meta.json"));
  } finally {
    await ctx.dispose();
    await again.dispose();
  }
}]);

cases.push(["tokenize: max_train_tokens cuts the train split only", async () => {
  for (const tokenizer of ["gpt2", "compact"]) {
    const ctx = await runTokenize({ tokenizer, max_train_tokens: 1000 });
    try {
      const meta = await readMeta(ctx.outDir);
      assert.equal(meta.counts.train, 1000, tokenizer);
      assert.equal((await Deno.stat(`${ctx.outDir}/train.bin`)).size, 2000, tokenizer);
      assert.ok(meta.counts["val-novel"] > 0);
    } finally {
      await ctx.dispose();
    }
  }
}]);

cases.push(["tokenize: bad params and inputs give clear errors", async () => {
  await assert.rejects(
    runTokenize({ tokenizer: "gpt2", vocab_size: 8192 }),
    /vocab_size 8192 does not apply to tokenizer gpt2/,
  );
  await assert.rejects(
    runTokenize({ tokenizer: "compact", vocab_size: 256 }),
    /vocab_size must be an integer from 257 to 50257/,
  );
  const empty = await Deno.makeTempDir();
  try {
    await assert.rejects(
      runTokenize({}, { key: "k", step: "corpus", node: "c", params: {}, dir: empty }),
      /corpus.json not found \(is this the output of a corpus step\?\)/,
    );
  } finally {
    await Deno.remove(empty);
  }
}]);

Deno.test("tokenize step", async (t) => {
  try {
    for (const [name, fn] of cases) await t.step(name, fn);
  } finally {
    await corpusCtx?.dispose();
    corpusCtx = null;
  }
});
