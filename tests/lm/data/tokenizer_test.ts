// GPT-2 ids, round trips on corpus samples, and the compact vocabulary with its byte
// fallback (its table is checked against numpy's ordering and GPT-2's byte order in
// tests/fixtures/data/compact.json).
import assert from "node:assert/strict";
import {
  buildCompactTable,
  compactLookup,
  compactTokenizer,
  encodeGpt2,
  GPT2_EOT_ID,
  GPT2_VOCAB_SIZE,
  gpt2ByteIds,
  gpt2TokenBytes,
  gpt2Tokenizer,
  toCompactIds,
  tokenizerFromMeta,
  UNK_TEXT,
} from "../../../lm/data/tokenizer.ts";
import { loadDefaultCorpus } from "../../../lm/data/corpus.ts";
import type { TokenMeta } from "../../../lm/data/windows.ts";

const fixtures = new URL("../../fixtures/data/", import.meta.url).pathname;
const utf8 = new TextEncoder();

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

/** Text the samples barely or never hold: rare words, emoji, non-Latin scripts, controls. */
const ODD_TEXTS = [
  "Pneumonoultramicroscopicsilicovolcanoconiosis and Llanfairpwllgwyngyll, Xzqwv!",
  "naïve café — “quotes” 🎉 and a literal <|endoftext|> inside text",
  "emoji: 👩‍👩‍👧‍👦 🏳️‍🌈 🇯🇵 😀😃😄 (ZWJ sequences and flags)",
  "中文文本：机器学习。日本語のテキスト。한국어 텍스트.",
  "Русский текст, ελληνικά, עברית, العربية, हिन्दी, ไทย",
  "tabs\tnew\nlines\r\n\u0000\u0001\u007f and trailing spaces   ",
  "",
];

function gpt2Counts(texts: string[]): Float64Array {
  const counts = new Float64Array(GPT2_VOCAB_SIZE);
  for (const text of texts) for (const id of encodeGpt2(text)) counts[id]++;
  return counts;
}

Deno.test("gpt2: ids of 'Hello world' are [15496, 995]", () => {
  const tok = gpt2Tokenizer();
  assert.deepEqual(tok.encode("Hello world"), [15496, 995]);
  assert.equal(tok.vocabSize, 50257);
  assert.equal(tok.decode([GPT2_EOT_ID]), "<|endoftext|>");
});

Deno.test("gpt2: decode(encode(x)) == x on corpus samples and odd text", async () => {
  const tok = gpt2Tokenizer();
  const samples = [...await corpusSamples(), ...ODD_TEXTS];
  for (const text of samples) assert.equal(tok.decode(tok.encode(text)), text);
  // A special-token string inside a document is plain text, never the end-of-text id.
  assert.ok(!tok.encode("a<|endoftext|>b").includes(GPT2_EOT_ID));
});

Deno.test("gpt2 token bytes: the 256 byte ids follow GPT-2's order, tokens concatenate to UTF-8", async () => {
  const fx = JSON.parse(await Deno.readTextFile(`${fixtures}compact.json`)) as {
    byte_ids: number[];
  };
  assert.deepEqual(Array.from(gpt2ByteIds()), fx.byte_ids);
  for (let b = 0; b < 256; b++) assert.deepEqual(Array.from(gpt2TokenBytes(fx.byte_ids[b])), [b]);
  assert.deepEqual(gpt2TokenBytes(GPT2_EOT_ID), utf8.encode("<|endoftext|>"));
  // "🎉" is several GPT-2 tokens, each part of one 4-byte character.
  const party = encodeGpt2("🎉");
  assert.ok(party.length > 1);
  for (const text of ["🎉", ...ODD_TEXTS]) {
    const bytes = encodeGpt2(text).flatMap((id) => Array.from(gpt2TokenBytes(id)));
    assert.deepEqual(bytes, Array.from(utf8.encode(text)), text);
  }
});

Deno.test("compact: table follows numpy's order (EOT, bytes, count desc, id asc)", async () => {
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
  assert.equal(buildCompactTable(counts, GPT2_VOCAB_SIZE).length, GPT2_VOCAB_SIZE);
  assert.throws(() => buildCompactTable(counts, 256), /vocab_size must be an integer from 257/);
  assert.throws(() => buildCompactTable(counts, 60000), /vocab_size must be an integer from 257/);
  assert.throws(() => compactTokenizer(fx.table.slice(0, 100)), /needs 257 to 50257 ids/);
  const swapped = [...fx.table];
  [swapped[1], swapped[2]] = [swapped[2], swapped[1]];
  assert.throws(() => compactTokenizer(swapped), /compact id 1 must be the byte 0/);
});

Deno.test("compact N=300: decode(encode(x)) == x for any text, every id below N", async () => {
  const samples = await corpusSamples();
  const vocabSize = 300;
  const tok = compactTokenizer(buildCompactTable(gpt2Counts(samples), vocabSize));
  assert.equal(tok.vocabSize, vocabSize);
  assert.equal(tok.eotId, 0);
  assert.equal(tok.unkId, null);
  let compactIds = 0;
  let gpt2Ids = 0;
  for (const text of [...samples, ...ODD_TEXTS]) {
    const ids = tok.encode(text);
    assert.ok(ids.every((id) => Number.isInteger(id) && id >= 0 && id < vocabSize), text);
    assert.ok(!ids.includes(tok.eotId), "end-of-text only where the data adds it");
    assert.equal(tok.decode(ids), text);
    compactIds += ids.length;
    gpt2Ids += encodeGpt2(text).length;
  }
  // The byte fallback lengthens sequences but does not lose text.
  assert.ok(compactIds > gpt2Ids);
  assert.equal(tok.decode([...tok.encode("a"), 0, ...tok.encode("b")]), "a<|endoftext|>b");
  assert.throws(() => tok.decode([vocabSize]), /outside the compact vocabulary 0..299/);
  assert.throws(() => tok.decode([-1]), /outside the compact vocabulary/);
  // A lone piece of a character decodes to U+FFFD instead of throwing.
  assert.equal(tok.decode([1 + 0xf0]), "\ufffd");
});

Deno.test("compact: the most frequent tokens get single ids, the rest their bytes", async () => {
  const samples = await corpusSamples();
  const counts = gpt2Counts(samples);
  const vocabSize = 300;
  const table = buildCompactTable(counts, vocabSize);
  const lookup = compactLookup(table);
  const tok = compactTokenizer(table);
  // The 43 most frequent GPT-2 tokens of two or more bytes, by count (then id).
  const merged = [...counts.keys()].filter((id) => id >= 256 && id !== GPT2_EOT_ID && counts[id])
    .sort((a, b) => counts[b] - counts[a] || a - b);
  const top = merged.slice(0, vocabSize - 257);
  assert.ok(top.length === vocabSize - 257 && merged.length > top.length);
  top.forEach((id, rank) => {
    assert.equal(lookup[id], 257 + rank, `GPT-2 id ${id} has compact id 257 + its rank`);
    assert.deepEqual(Array.from(toCompactIds([id], lookup).ids), [257 + rank]);
  });
  const the = encodeGpt2(" the");
  assert.equal(the.length, 1);
  assert.ok(top.includes(the[0]), "' the' is among the most frequent tokens");
  assert.deepEqual(tok.encode(" the"), [lookup[the[0]]]);
  // A token outside the vocabulary becomes the ids 1 + byte of its UTF-8 bytes.
  const rare = merged[merged.length - 1];
  assert.equal(lookup[rare], -1);
  const rareBytes = Array.from(gpt2TokenBytes(rare));
  const mapped = toCompactIds([rare, the[0], rare], lookup);
  assert.deepEqual(Array.from(mapped.ids), [
    ...rareBytes.map((b) => 1 + b),
    lookup[the[0]],
    ...rareBytes.map((b) => 1 + b),
  ]);
  assert.equal(mapped.fallbacks, 2);
  // Single-byte GPT-2 tokens ("," "."), frequent or not, are the byte ids themselves.
  assert.deepEqual(tok.encode(","), [1 + 0x2c]);
  const byteIds = gpt2ByteIds();
  const singles = toCompactIds([byteIds[0x2c], byteIds[0x2e], byteIds[0xf0]], lookup);
  assert.deepEqual(Array.from(singles.ids), [1 + 0x2c, 1 + 0x2e, 1 + 0xf0]);
  assert.equal(singles.fallbacks, 0);
});

Deno.test("tokenizerFromMeta rebuilds gpt2, compact and the earlier <unk> layout", () => {
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

  // Byte-fallback layout: "Hello" (15496) is in the vocabulary, " world" is not.
  const table = [GPT2_EOT_ID, ...gpt2ByteIds(), 15496];
  const meta: TokenMeta = {
    ...base,
    vocab_size: table.length,
    tokenizer: { kind: "compact" },
    eot_id: 0,
    unk_id: null,
    decode: table,
  };
  const tok = tokenizerFromMeta(meta);
  const ids = tok.encode("Hello world");
  assert.deepEqual(ids, [257, ...Array.from(utf8.encode(" world")).map((b) => 1 + b)]);
  assert.equal(tok.decode([...ids, 0]), "Hello world<|endoftext|>");
  assert.throws(
    () => tokenizerFromMeta({ ...meta, decode: table.slice(0, -1) }),
    /needs a decode table of 258 ids/,
  );

  // Earlier layout: table of N-1 GPT-2 ids and id N-1 = <unk>.
  const old = tokenizerFromMeta({
    ...meta,
    vocab_size: 4,
    unk_id: 3,
    decode: [GPT2_EOT_ID, 15496, 995],
  });
  assert.equal(old.unkId, 3);
  assert.deepEqual(old.encode("Hello there world"), [1, 3, 2]);
  assert.equal(old.decode([1, 3, 2, 0]), `Hello${UNK_TEXT} world<|endoftext|>`);
});
