// Tests of lm/data/token_source.ts and the tokens step: streamed tokenization equals
// tokenizing each document whole (whatever the read chunk size), pre-tokenized nanoGPT
// files are linked with a meta.json, and training windows come from a token file larger
// than the reader may hold (positioned reads).
import assert from "node:assert/strict";
import { streamDocuments, streamTokenize, TokenWriter } from "../../../lm/data/token_source.ts";
import { encodeGpt2, GPT2_EOT_ID } from "../../../lm/data/tokenizer.ts";
import { openTokens, readMeta, trainBatch } from "../../../lm/data/windows.ts";
import { tokensParams, tokensStep } from "../../../steps/tokens.ts";
import { fakeContext } from "../../helpers/fake_ctx.ts";

const DOCS = [
  "The whale surfaced at dawn.",
  "Ünïcödé text — with dashes and “quotes”.",
  "A third document\nspanning two lines.",
  "Four.",
  "Five is the held-out one when val_every is 5.",
  "Six.",
];

Deno.test("documents stream from JSONL and text in any chunk size", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tok-src-" });
  try {
    await Deno.writeTextFile(
      `${dir}/a.jsonl`,
      DOCS.map((text) => JSON.stringify({ text, id: 1 })).join("\n") + "\n\n",
    );
    await Deno.writeTextFile(`${dir}/b.txt`, DOCS.join("\n\n") + "\n");
    for (const chunkBytes of [3, 7, 64, 1 << 20]) {
      const fromJsonl: string[] = [];
      for await (const d of streamDocuments(`${dir}/a.jsonl`, { chunkBytes })) fromJsonl.push(d);
      assert.deepEqual(fromJsonl, DOCS, `jsonl, chunks of ${chunkBytes}`);
      const fromText: string[] = [];
      for await (const d of streamDocuments(`${dir}/b.txt`, { chunkBytes })) fromText.push(d);
      assert.deepEqual(fromText, DOCS, `txt, chunks of ${chunkBytes}`);
    }
    // A text without blank lines is cut into pieces at line ends, never held whole.
    const lines = Array.from({ length: 50 }, (_, i) => `line ${i} of a long text`);
    await Deno.writeTextFile(`${dir}/long.txt`, lines.join("\n"));
    const pieces: string[] = [];
    for await (
      const d of streamDocuments(`${dir}/long.txt`, { chunkBytes: 16, maxDocChars: 100 })
    ) {
      assert.ok(d.length <= 100, `a piece of ${d.length} characters`);
      pieces.push(d);
    }
    assert.ok(pieces.length > 5);
    assert.equal(pieces.join("\n"), lines.join("\n"));
    await Deno.writeTextFile(`${dir}/bad.jsonl`, '{"text": "ok"}\n{"body": "x"}\n');
    await assert.rejects(async () => {
      for await (const _ of streamDocuments(`${dir}/bad.jsonl`)) { /* drain */ }
    }, /bad\.jsonl: line 2 has no string field "text"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("streamed tokenization writes each document's GPT-2 ids and an end-of-text", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tok-stream-" });
  try {
    await Deno.writeTextFile(
      `${dir}/c.jsonl`,
      DOCS.map((text) => JSON.stringify({ text })).join("\n"),
    );
    const { meta, documents } = await streamTokenize([`${dir}/c.jsonl`], dir, {
      valEvery: 5,
      domain: "web",
    });
    assert.equal(documents, 6);
    const want = (docs: string[]) => docs.flatMap((d) => [...encodeGpt2(d), GPT2_EOT_ID]);
    const train = want(DOCS.filter((_, i) => (i + 1) % 5 !== 0));
    const val = want([DOCS[4]]);
    assert.deepEqual(meta.counts, { train: train.length, "val-web": val.length });
    const read = async (name: string, n: number) =>
      Array.from((await openTokens(`${dir}/${name}.bin`, "uint16")).read(0, n));
    assert.deepEqual(await read("train", train.length), train);
    assert.deepEqual(await read("val-web", val.length), val);
    assert.equal((await readMeta(dir)).vocab_size, 50257);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("nanoGPT files are linked, and windows are read by position from a large file", async () => {
  const data = await Deno.makeTempDir({ prefix: "tok-bin-" });
  const out = await Deno.makeTempDir({ prefix: "tok-bin-out-" });
  try {
    // 300K uint32 ids (1.2 MB) written through a 4K-id buffer.
    const n = 300_000;
    const id = (i: number) => (i * 2654435761) % 100_000;
    const writer = await TokenWriter.create(`${data}/train.bin`, "uint32", 4096);
    for (let i = 0; i < n; i += 1000) {
      await writer.push(Array.from({ length: 1000 }, (_, j) => id(i + j)));
    }
    await writer.close();
    await TokenWriter.create(`${data}/val.bin`, "uint32").then(async (w) => {
      await w.push([1, 2, 3, 4]);
      await w.close();
    });
    const ctx = await fakeContext(tokensStep, { outDir: out });
    const params = tokensParams.parse({
      bin: { train: `${data}/train.bin`, val: { web: `${data}/val.bin` }, vocab_size: 100_000 },
    });
    await tokensStep.run(ctx, params, {});
    const meta = await readMeta(out);
    assert.equal(meta.dtype, "uint32");
    assert.deepEqual(meta.counts, { train: n, "val-web": 4 });
    assert.ok((await Deno.lstat(`${out}/train.bin`)).isSymlink, "train.bin was copied");
    // The reader may hold 64 KB: the 1.2 MB file is read window by window.
    const file = await openTokens(`${out}/train.bin`, meta.dtype, { inMemoryLimitBytes: 65536 });
    const batch = trainBatch(file, 4, 16, 1, 0);
    for (let b = 0; b < 4; b++) {
      const x = Array.from(batch.x.subarray(b * 16, b * 16 + 16));
      const start = [...Array(n - 16).keys()].find((o) => id(o) === x[0] && id(o + 1) === x[1]);
      assert.ok(start !== undefined);
      assert.deepEqual(x, Array.from({ length: 16 }, (_, j) => id(start + j)));
      assert.equal(batch.y[b * 16], id(start + 1));
    }
    file.close();
    assert.throws(
      () => tokensParams.parse({}),
      /exactly one of bin \(pre-tokenized files\) or text/,
    );
    await ctx.dispose();
  } finally {
    await Deno.remove(data, { recursive: true });
    await Deno.remove(out, { recursive: true }).catch(() => {});
  }
});
