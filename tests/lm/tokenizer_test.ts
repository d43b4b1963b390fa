// GPT-2 ids, round trips on corpus samples, and the compact vocabulary (its table is
// checked against numpy's ordering in tests/fixtures/data/compact.json).
import assert from "node:assert/strict";
import {
  buildCompactTable,
  compactTokenizer,
  encodeGpt2,
  GPT2_EOT_ID,
  GPT2_VOCAB_SIZE,
  gpt2Tokenizer,
  tokenizerFromMeta,
  UNK_TEXT,
} from "../../lm/tokenizer.ts";
import { loadDefaultCorpus } from "../../lm/corpus.ts";
import type { TokenMeta } from "../../lm/data.ts";

const fixtures = new URL("../fixtures/data/", import.meta.url).pathname;

/** A few documents of every default domain (first 2000 characters each). */
async function corpusSamples(): Promise<string[]> {
  const { docs } = await loadDefaultCorpus({ domains: ["speeches", "novel", "news", "humor"] });
  const byDomain = new Map<string, string[]>();
  for (const d of docs) {
    const list = byDomain.get(d.domain) ?? [];
    if (list.length < 3) list.push(d.text.slice(0, 2000));
    byDomain.set(d.domain, list);
  }
  return [...byDomain.values()].flat();
}

Deno.test("gpt2: ids of 'Hello world' are [15496, 995]", () => {
  const tok = gpt2Tokenizer();
  assert.deepEqual(tok.encode("Hello world"), [15496, 995]);
  assert.equal(tok.vocabSize, 50257);
  assert.equal(tok.decode([GPT2_EOT_ID]), "<|endoftext|>");
});

Deno.test("gpt2: decode(encode(x)) == x on corpus samples and odd text", async () => {
  const tok = gpt2Tokenizer();
  const samples = [
    ...await corpusSamples(),
    "naïve café — “quotes” 🎉 and a literal <|endoftext|> inside text",
  ];
  for (const text of samples) assert.equal(tok.decode(tok.encode(text)), text);
  // A special-token string inside a document is plain text, never the end-of-text id.
  assert.ok(!tok.encode("a<|endoftext|>b").includes(GPT2_EOT_ID));
});

Deno.test("compact: table follows numpy's order (count desc, id asc), EOT first", async () => {
  const fx = JSON.parse(await Deno.readTextFile(`${fixtures}compact.json`)) as {
    counts: [number, number][];
    vocab_size: number;
    table: number[];
    vocab_size_big: number;
    table_big: number[];
  };
  const counts = new Float64Array(GPT2_VOCAB_SIZE);
  for (const [id, n] of fx.counts) counts[id] = n;
  assert.deepEqual(Array.from(buildCompactTable(counts, fx.vocab_size)), fx.table);
  assert.deepEqual(Array.from(buildCompactTable(counts, fx.vocab_size_big)), fx.table_big);
  assert.throws(() => buildCompactTable(counts, 2), /vocab_size must be an integer from 3/);
  assert.throws(() => buildCompactTable(counts, 60000), /vocab_size must be an integer from 3/);
});

Deno.test("compact: round-trips in-vocabulary text, unknowns map to <unk>", async () => {
  const samples = await corpusSamples();
  const counts = new Float64Array(GPT2_VOCAB_SIZE);
  for (const text of samples) for (const id of encodeGpt2(text)) counts[id]++;
  const vocabSize = 4096; // more than the ids these samples use: all are in vocabulary
  const tok = compactTokenizer(buildCompactTable(counts, vocabSize));
  assert.equal(tok.vocabSize, vocabSize);
  assert.equal(tok.eotId, 0);
  assert.equal(tok.unkId, vocabSize - 1);
  for (const text of samples) {
    const ids = tok.encode(text);
    assert.ok(ids.every((id) => id >= 0 && id < tok.unkId!), "all ids in vocabulary");
    assert.equal(tok.decode(ids), text);
  }
  // A vocabulary holding only "Hello", " world" (and EOT): the rest becomes <unk>.
  const tiny = compactTokenizer([GPT2_EOT_ID, 15496, 995]);
  assert.deepEqual(tiny.encode("Hello world"), [1, 2]);
  const ids = tiny.encode("Hello there world");
  assert.deepEqual(ids, [1, 3, 2]);
  assert.equal(tiny.decode(ids), `Hello${UNK_TEXT} world`);
  assert.throws(() => tiny.decode([4]), /outside the compact vocabulary 0..3/);
});

Deno.test("tokenizerFromMeta rebuilds both kinds", () => {
  const base = {
    format: "tokens/1" as const,
    dtype: "uint16" as const,
    domains: [] as string[],
    counts: {},
  };
  const gpt2 = tokenizerFromMeta({
    ...base,
    vocab_size: GPT2_VOCAB_SIZE,
    tokenizer: { kind: "gpt2" },
    eot_id: GPT2_EOT_ID,
    unk_id: null,
    decode: null,
  });
  assert.deepEqual(gpt2.encode("Hello world"), [15496, 995]);
  const meta: TokenMeta = {
    ...base,
    vocab_size: 4,
    tokenizer: { kind: "compact" },
    eot_id: 0,
    unk_id: 3,
    decode: [GPT2_EOT_ID, 15496, 995],
  };
  assert.equal(tokenizerFromMeta(meta).decode([1, 2, 0]), "Hello world<|endoftext|>");
  assert.throws(
    () => tokenizerFromMeta({ ...meta, decode: [GPT2_EOT_ID] }),
    /needs a decode table of 3 ids/,
  );
});
