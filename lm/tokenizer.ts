// Tokenizers: GPT-2's byte-level BPE, and a compact vocabulary for CPU-scale runs.
//
// GPT-2 BPE comes from npm `gpt-tokenizer`, encoding r50k_base (50257 ids; the package's
// default is o200k, so the encoding is imported explicitly).
//
// Compact vocabulary, and why this one: on a CPU the output projection over 50K ids
// dominates a small model's cost, so runs here use N ids (e.g. 8192). We keep GPT-2's
// tokenization and remap its ids: compact id 0 is end-of-text, ids 1 .. N-2 are the N-2
// GPT-2 ids most frequent in the train split (ties to the lower GPT-2 id; if the split
// uses fewer, the rest are the lowest unused GPT-2 ids so the size is always N), and id
// N-1 is <unk> for every other GPT-2 id. Compared with learning a BPE this is cheap (one
// count over ids we compute anyway), exactly deterministic, needs no merge table, and
// decodes through GPT-2's decoder via a table (compact id -> GPT-2 id). The price is
// <unk>: with N = 8192 on the default corpus, about 7% of train tokens and 5-15% of
// held-out tokens (rare words, names). Every averaging method compared sees the same
// tokens, so their comparison is fair; a larger N lowers the share.
import { decode as gpt2Decode, encode as gpt2Encode } from "gpt-tokenizer/encoding/r50k_base";
import type { TokenMeta } from "./data.ts";

export const GPT2_VOCAB_SIZE = 50257;
export const GPT2_EOT_ID = 50256;
/** How an <unk> id is shown when decoding. */
export const UNK_TEXT = "<|unk|>";

export interface Tokenizer {
  kind: "gpt2" | "compact";
  vocabSize: number;
  eotId: number;
  /** null when every id is representable (gpt2). */
  unkId: number | null;
  /** Text -> ids. Special-token strings in text are encoded as plain text. */
  encode(text: string): number[];
  decode(ids: ArrayLike<number>): string;
}

/** Options that make "<|endoftext|>" inside a document ordinary text. */
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

/** GPT-2 ids of a text (no end-of-text added). */
export function encodeGpt2(text: string): number[] {
  return gpt2Encode(text, PLAIN_TEXT);
}

export function gpt2Tokenizer(): Tokenizer {
  return {
    kind: "gpt2",
    vocabSize: GPT2_VOCAB_SIZE,
    eotId: GPT2_EOT_ID,
    unkId: null,
    encode: encodeGpt2,
    decode: (ids) => gpt2Decode(Array.from(ids)),
  };
}

/**
 * The compact vocabulary's table (compact id -> GPT-2 id, length N-1; id N-1 is <unk>)
 * from per-GPT-2-id counts over the train split.
 */
export function buildCompactTable(counts: ArrayLike<number>, vocabSize: number): Int32Array {
  if (!Number.isInteger(vocabSize) || vocabSize < 3 || vocabSize > GPT2_VOCAB_SIZE) {
    throw new Error(
      `tokenize: vocab_size must be an integer from 3 to ${GPT2_VOCAB_SIZE} for the compact tokenizer, got ${vocabSize}`,
    );
  }
  if (counts.length !== GPT2_VOCAB_SIZE) {
    throw new Error(`tokenize: expected ${GPT2_VOCAB_SIZE} counts, got ${counts.length}`);
  }
  const others: number[] = [];
  for (let id = 0; id < GPT2_VOCAB_SIZE; id++) if (id !== GPT2_EOT_ID) others.push(id);
  // Stable order: count descending, then GPT-2 id ascending (unused ids come last, in id order).
  others.sort((a, b) => counts[b] - counts[a] || a - b);
  const table = new Int32Array(vocabSize - 1);
  table[0] = GPT2_EOT_ID;
  for (let i = 1; i < table.length; i++) table[i] = others[i - 1];
  return table;
}

/** GPT-2 id -> compact id (unk for ids not in the table). */
export function compactLookup(table: ArrayLike<number>): Int32Array {
  const unkId = table.length;
  const lookup = new Int32Array(GPT2_VOCAB_SIZE).fill(unkId);
  for (let c = 0; c < table.length; c++) lookup[table[c]] = c;
  return lookup;
}

export function compactTokenizer(table: ArrayLike<number>): Tokenizer {
  const lookup = compactLookup(table);
  const unkId = table.length;
  const eotId = lookup[GPT2_EOT_ID];
  if (eotId === unkId) throw new Error("tokenize: compact table lacks the end-of-text id 50256");
  return {
    kind: "compact",
    vocabSize: table.length + 1,
    eotId,
    unkId,
    encode(text) {
      const ids = encodeGpt2(text);
      for (let i = 0; i < ids.length; i++) ids[i] = lookup[ids[i]];
      return ids;
    },
    decode(ids) {
      // Decode runs of known ids through GPT-2; each <unk> shows as UNK_TEXT.
      let text = "";
      let run: number[] = [];
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i];
        if (!Number.isInteger(id) || id < 0 || id > unkId) {
          throw new Error(`tokenize: id ${id} is outside the compact vocabulary 0..${unkId}`);
        }
        if (id === unkId) {
          text += gpt2Decode(run) + UNK_TEXT;
          run = [];
        } else run.push(table[id]);
      }
      return text + gpt2Decode(run);
    },
  };
}

/** Rebuild the tokenizer a tokenize step used, from its meta.json. */
export function tokenizerFromMeta(meta: TokenMeta): Tokenizer {
  if (meta.tokenizer.kind === "gpt2") return gpt2Tokenizer();
  if (meta.tokenizer.kind === "compact") {
    if (!meta.decode || meta.decode.length !== meta.vocab_size - 1) {
      throw new Error(
        `tokens: meta.json of a compact tokenizer needs a decode table of ${
          meta.vocab_size - 1
        } ids`,
      );
    }
    return compactTokenizer(meta.decode);
  }
  throw new Error(`tokens: unknown tokenizer kind ${JSON.stringify(meta.tokenizer.kind)}`);
}
