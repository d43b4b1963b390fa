// Tokenizers: GPT-2's byte-level BPE, and a compact vocabulary for CPU-scale runs.
//
// GPT-2 BPE comes from npm `gpt-tokenizer`, encoding r50k_base (50257 ids; the package's
// default is o200k, so the encoding is imported explicitly). Its rank table
// (`gpt-tokenizer/bpeRanks/r50k_base`) gives the bytes of every GPT-2 token; GPT-2 ids
// 0..255 are the 256 single bytes.
//
// Compact vocabulary, and why this one: on a CPU the output projection over 50K ids
// dominates a small model's cost, so runs here use N ids (e.g. 8192). We keep GPT-2's
// tokenization and remap its ids, with a byte fallback so that nothing is lost:
//   id 0          end-of-text,
//   ids 1..256    the 256 single bytes (id 1 + b is byte b),
//   ids 257..N-1  the N-257 GPT-2 tokens of two or more bytes most frequent in the train
//                 split (ties to the lower GPT-2 id; if the split uses fewer, the rest are
//                 the lowest unused GPT-2 ids, so the size is always N).
// A GPT-2 token outside the vocabulary is written as the ids of its UTF-8 bytes; decoding
// concatenates the bytes of every id and decodes UTF-8 once at the end (one GPT-2 token
// may hold part of a character, so decoding id by id would garble it). decode(encode(x))
// is x for every text. Compared with learning a BPE this is cheap (one count over ids we
// compute anyway), exactly deterministic and needs no merge table. The price of a small N
// is longer sequences where text is rare (names, non-Latin script), not an <unk> id that
// would make losses look better than they are; meta.json's tokenizer.fallback_fraction
// records the share of GPT-2 tokens that went through the byte fallback.
//
// meta.json's `decode` table is compact id -> GPT-2 id for all N ids (entry 0 is 50256,
// entry 1 + b is GPT-2's single-byte token of byte b). Token outputs written before the
// byte fallback (unk_id set, a table of N-1 ids, id N-1 = <unk>) are still read by
// tokenizerFromMeta, their <unk> decoding as UNK_TEXT.
import { decode as gpt2Decode, encode as gpt2Encode } from "gpt-tokenizer/encoding/r50k_base";
import gpt2Ranks from "gpt-tokenizer/bpeRanks/r50k_base";
import type { TokenMeta } from "./windows.ts";

export const GPT2_VOCAB_SIZE = 50257;
export const GPT2_EOT_ID = 50256;
/** Compact ids 1..BYTE_IDS are the single bytes 0..255. */
export const BYTE_IDS = 256;
/** The smallest compact vocabulary: end-of-text and the 256 bytes. */
export const MIN_COMPACT_VOCAB = 1 + BYTE_IDS;
/** How an <unk> id (of the earlier layout without byte fallback) is shown when decoding. */
export const UNK_TEXT = "<|unk|>";

export interface Tokenizer {
  kind: "gpt2" | "compact" | "hf";
  vocabSize: number;
  eotId: number;
  /** null when every text is representable (always, except token outputs of the earlier layout). */
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

/** The bytes of every GPT-2 token, flat: token t is bytes[offsets[t] .. offsets[t + 1]). */
interface Gpt2Bytes {
  bytes: Uint8Array;
  offsets: Int32Array; // (GPT2_VOCAB_SIZE + 1,)
  /** GPT-2 id of the single-byte token of each byte. */
  byteIds: Int32Array; // (256,)
}

let gpt2BytesCache: Gpt2Bytes | null = null;

function gpt2Bytes(): Gpt2Bytes {
  if (gpt2BytesCache) return gpt2BytesCache;
  const utf8 = new TextEncoder();
  const pieces: Uint8Array[] = [];
  for (let id = 0; id < GPT2_VOCAB_SIZE; id++) {
    const rank = id === GPT2_EOT_ID ? "<|endoftext|>" : gpt2Ranks[id];
    if (rank === undefined) throw new Error(`tokenize: gpt-tokenizer lacks GPT-2 id ${id}`);
    pieces.push(typeof rank === "string" ? utf8.encode(rank) : Uint8Array.from(rank));
  }
  const offsets = new Int32Array(GPT2_VOCAB_SIZE + 1);
  for (let id = 0; id < GPT2_VOCAB_SIZE; id++) offsets[id + 1] = offsets[id] + pieces[id].length;
  const bytes = new Uint8Array(offsets[GPT2_VOCAB_SIZE]);
  for (let id = 0; id < GPT2_VOCAB_SIZE; id++) bytes.set(pieces[id], offsets[id]);
  const byteIds = new Int32Array(BYTE_IDS).fill(-1);
  for (let id = 0; id < BYTE_IDS; id++) {
    if (pieces[id].length !== 1 || byteIds[pieces[id][0]] !== -1) {
      throw new Error(
        `tokenize: GPT-2 id ${id} is not a single byte in gpt-tokenizer's r50k table`,
      );
    }
    byteIds[pieces[id][0]] = id;
  }
  gpt2BytesCache = { bytes, offsets, byteIds };
  return gpt2BytesCache;
}

/** The bytes of one GPT-2 token (end-of-text is the bytes of "<|endoftext|>"). */
export function gpt2TokenBytes(id: number): Uint8Array {
  const { bytes, offsets } = gpt2Bytes();
  return bytes.subarray(offsets[id], offsets[id + 1]);
}

/** GPT-2 id of the single-byte token of each byte 0..255. */
export function gpt2ByteIds(): Int32Array {
  return gpt2Bytes().byteIds.slice();
}

/**
 * The compact vocabulary's table (compact id -> GPT-2 id, length N) from per-GPT-2-id
 * counts over the train split: end-of-text, the 256 byte tokens, then the most frequent.
 */
export function buildCompactTable(counts: ArrayLike<number>, vocabSize: number): Int32Array {
  if (
    !Number.isInteger(vocabSize) || vocabSize < MIN_COMPACT_VOCAB || vocabSize > GPT2_VOCAB_SIZE
  ) {
    throw new Error(
      `tokenize: vocab_size must be an integer from ${MIN_COMPACT_VOCAB} to ${GPT2_VOCAB_SIZE} for the compact tokenizer (end-of-text + 256 bytes + merged tokens), got ${vocabSize}`,
    );
  }
  if (counts.length !== GPT2_VOCAB_SIZE) {
    throw new Error(`tokenize: expected ${GPT2_VOCAB_SIZE} counts, got ${counts.length}`);
  }
  // GPT-2 ids 0..255 are the single bytes, already in the table.
  const merged: number[] = [];
  for (let id = BYTE_IDS; id < GPT2_VOCAB_SIZE; id++) if (id !== GPT2_EOT_ID) merged.push(id);
  // Stable order: count descending, then GPT-2 id ascending (unused ids come last, in id order).
  merged.sort((a, b) => counts[b] - counts[a] || a - b);
  const table = new Int32Array(vocabSize);
  table[0] = GPT2_EOT_ID;
  table.set(gpt2Bytes().byteIds, 1);
  for (let c = MIN_COMPACT_VOCAB; c < vocabSize; c++) table[c] = merged[c - MIN_COMPACT_VOCAB];
  return table;
}

/** Checks a compact table's layout (EOT, the 256 bytes in order, distinct GPT-2 ids). */
function checkCompactTable(table: ArrayLike<number>): void {
  const n = table.length;
  if (n < MIN_COMPACT_VOCAB || n > GPT2_VOCAB_SIZE) {
    throw new Error(
      `tokenize: a compact table needs ${MIN_COMPACT_VOCAB} to ${GPT2_VOCAB_SIZE} ids, got ${n}`,
    );
  }
  const { byteIds } = gpt2Bytes();
  if (table[0] !== GPT2_EOT_ID) {
    throw new Error(`tokenize: compact id 0 must be end-of-text (GPT-2 id ${GPT2_EOT_ID})`);
  }
  const seen = new Uint8Array(GPT2_VOCAB_SIZE);
  for (let c = 0; c < n; c++) {
    const id = table[c];
    if (!Number.isInteger(id) || id < 0 || id >= GPT2_VOCAB_SIZE || seen[id]) {
      throw new Error(`tokenize: compact id ${c} maps to a bad or repeated GPT-2 id ${id}`);
    }
    if (c >= 1 && c <= BYTE_IDS && id !== byteIds[c - 1]) {
      throw new Error(
        `tokenize: compact id ${c} must be the byte ${c - 1} (GPT-2 id ${byteIds[c - 1]})`,
      );
    }
    seen[id] = 1;
  }
}

/** GPT-2 id -> compact id, or -1 for a token that goes through the byte fallback. */
export function compactLookup(table: ArrayLike<number>): Int32Array {
  const lookup = new Int32Array(GPT2_VOCAB_SIZE).fill(-1);
  for (let c = 0; c < table.length; c++) lookup[table[c]] = c;
  return lookup;
}

/** Compact ids of a run of GPT-2 ids, and how many of them went through the byte fallback. */
export interface CompactIds {
  ids: Int32Array;
  fallbacks: number;
}

/** GPT-2 ids -> compact ids (`lookup` from compactLookup): unknown tokens become their bytes. */
export function toCompactIds(gpt2Ids: ArrayLike<number>, lookup: Int32Array): CompactIds {
  const { offsets, bytes } = gpt2Bytes();
  let length = 0;
  let fallbacks = 0;
  for (let i = 0; i < gpt2Ids.length; i++) {
    const id = gpt2Ids[i];
    if (lookup[id] >= 0) length++;
    else {
      length += offsets[id + 1] - offsets[id];
      fallbacks++;
    }
  }
  const ids = new Int32Array(length);
  let at = 0;
  for (let i = 0; i < gpt2Ids.length; i++) {
    const id = gpt2Ids[i];
    const c = lookup[id];
    if (c >= 0) ids[at++] = c;
    else for (let k = offsets[id]; k < offsets[id + 1]; k++) ids[at++] = 1 + bytes[k];
  }
  return { ids, fallbacks };
}

/** Bytes of compact ids -> text (invalid UTF-8 becomes U+FFFD). */
function decodeCompact(ids: ArrayLike<number>, table: ArrayLike<number>): string {
  const { offsets, bytes } = gpt2Bytes();
  let length = 0;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!Number.isInteger(id) || id < 0 || id >= table.length) {
      throw new Error(
        `tokenize: id ${id} is outside the compact vocabulary 0..${table.length - 1}`,
      );
    }
    length += offsets[table[id] + 1] - offsets[table[id]];
  }
  const out = new Uint8Array(length);
  let at = 0;
  for (let i = 0; i < ids.length; i++) {
    const g = table[ids[i]];
    out.set(bytes.subarray(offsets[g], offsets[g + 1]), at);
    at += offsets[g + 1] - offsets[g];
  }
  return new TextDecoder().decode(out);
}

export function compactTokenizer(table: ArrayLike<number>): Tokenizer {
  checkCompactTable(table);
  const lookup = compactLookup(table);
  const decodeTable = Int32Array.from(table);
  return {
    kind: "compact",
    vocabSize: table.length,
    eotId: 0,
    unkId: null,
    encode: (text) => Array.from(toCompactIds(encodeGpt2(text), lookup).ids),
    decode: (ids) => decodeCompact(ids, decodeTable),
  };
}

/** A compact tokenizer of the earlier layout: table of N-1 GPT-2 ids, id N-1 is <unk>. */
function unkTableTokenizer(table: ArrayLike<number>): Tokenizer {
  const unkId = table.length;
  const lookup = new Int32Array(GPT2_VOCAB_SIZE).fill(unkId);
  for (let c = 0; c < table.length; c++) lookup[table[c]] = c;
  const eotId = lookup[GPT2_EOT_ID];
  if (eotId === unkId) throw new Error("tokens: compact table lacks the end-of-text id 50256");
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
      // Runs of known ids decode through GPT-2; each <unk> shows as UNK_TEXT.
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
    const legacy = meta.unk_id !== null && meta.unk_id !== undefined;
    const expected = legacy ? meta.vocab_size - 1 : meta.vocab_size;
    if (!meta.decode || meta.decode.length !== expected) {
      throw new Error(
        `tokens: meta.json of a compact tokenizer needs a decode table of ${expected} ids`,
      );
    }
    return legacy ? unkTableTokenizer(meta.decode) : compactTokenizer(meta.decode);
  }
  throw new Error(`tokens: unknown tokenizer kind ${JSON.stringify(meta.tokenizer.kind)}`);
}
