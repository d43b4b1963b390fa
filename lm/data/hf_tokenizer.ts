// A Hugging Face tokenizer (a repo's tokenizer.json, e.g. GPT-NeoX's byte-level BPE for
// Pythia) through npm `@huggingface/tokenizers`, in the shape the rest of the project
// uses for tokenizers: encode / decode, vocabulary size, end-of-text id. Text is encoded
// without added special tokens (a document is its own text; end-of-text ids are
// appended by the caller).
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { type Tokenizer, tokenizerFromMeta } from "./tokenizer.ts";
import type { TokenMeta } from "./windows.ts";

export interface HfTokenizerHandle {
  kind: "hf";
  /** One more than the largest id of the vocabulary and added tokens. */
  vocabSize: number;
  eotId: number;
  unkId: null;
  encode(text: string): number[];
  decode(ids: ArrayLike<number>): string;
}

interface TokenizerJson {
  model?: { vocab?: Record<string, number> | [string, number][] };
  added_tokens?: { id: number; content: string; special?: boolean }[];
}

const EOT_NAMES = ["<|endoftext|>", "</s>", "<eos>"];

/** The tokenizer described by a tokenizer.json file. */
export async function loadHfTokenizer(path: string): Promise<HfTokenizerHandle> {
  let json: TokenizerJson;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`${path}: tokenizer.json not found`);
    throw new Error(`${path}: not a valid tokenizer.json (${(e as Error).message})`);
  }
  return hfTokenizerFromJson(json, path);
}

export function hfTokenizerFromJson(json: TokenizerJson, where: string): HfTokenizerHandle {
  const vocab = json.model?.vocab;
  if (!vocab || typeof vocab !== "object") {
    throw new Error(`${where}: tokenizer.json has no model.vocab`);
  }
  const ids = new Map<string, number>(
    Array.isArray(vocab) ? vocab.map(([t], i) => [t, i]) : Object.entries(vocab),
  );
  for (const t of json.added_tokens ?? []) ids.set(t.content, t.id);
  let vocabSize = 0;
  for (const id of ids.values()) vocabSize = Math.max(vocabSize, id + 1);
  const eotName = EOT_NAMES.find((n) => ids.has(n));
  if (eotName === undefined) {
    throw new Error(
      `${where}: no end-of-text token (one of ${EOT_NAMES.join(", ")}) in tokenizer.json`,
    );
  }
  const tok = new HfTokenizer(json as Record<string, unknown>, {});
  return {
    kind: "hf",
    vocabSize,
    eotId: ids.get(eotName)!,
    unkId: null,
    encode: (text) => tok.encode(text, { add_special_tokens: false }).ids,
    decode: (list) => tok.decode(Array.from(list)),
  };
}

/** The tokenizer a tokenize output used: tokenizer.json beside meta.json for kind "hf". */
export async function tokenizerForTokens(meta: TokenMeta, dir: string): Promise<Tokenizer> {
  if (meta.tokenizer.kind !== "hf") return tokenizerFromMeta(meta);
  const file = typeof meta.tokenizer.file === "string" ? meta.tokenizer.file : "tokenizer.json";
  return await loadHfTokenizer(`${dir}/${file}`);
}
