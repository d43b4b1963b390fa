// Token data at the paper's scale (billions of tokens), without holding it in memory:
//
// - pre-tokenized files in nanoGPT's layout (train.bin / val.bin: raw little-endian
//   uint16 or uint32 ids) are linked into the step's output as they are (symbolic
//   links, no copy), with a meta.json that says their vocabulary size and dtype;
// - a large text or JSONL corpus is streamed through GPT-2's tokenizer: files are read
//   in chunks, documents (JSONL lines, or blank-line-separated paragraphs of text, cut
//   at a line end past 1 M characters) are encoded one by one and their ids appended to
//   the token files through a small buffer; every `val_every`-th document is held out.
//
// Either way the output is what the tokenize step writes (meta.json, train.bin,
// val-<domain>.bin), so train and evaluate read it unchanged, and lm/data/windows.ts
// reads windows from it by positioned reads.
import { encodeGpt2, GPT2_EOT_ID, GPT2_VOCAB_SIZE } from "./tokenizer.ts";
import { dtypeFor, tokenCount, type TokenDtype, tokenFileName, type TokenMeta } from "./windows.ts";

/** Appends ids to a token file through a fixed buffer (never the whole file in memory). */
export class TokenWriter {
  private readonly buffer: Uint16Array | Uint32Array;
  private used = 0;
  count = 0;

  private constructor(
    private readonly file: Deno.FsFile,
    readonly dtype: TokenDtype,
    size: number,
  ) {
    this.buffer = dtype === "uint16" ? new Uint16Array(size) : new Uint32Array(size);
  }

  static async create(path: string, dtype: TokenDtype, bufferIds = 1 << 20): Promise<TokenWriter> {
    const file = await Deno.open(path, { write: true, create: true, truncate: true });
    return new TokenWriter(file, dtype, bufferIds);
  }

  async push(ids: ArrayLike<number>): Promise<void> {
    for (let i = 0; i < ids.length; i++) {
      if (this.used === this.buffer.length) await this.flush();
      this.buffer[this.used++] = ids[i];
    }
    this.count += ids.length;
  }

  async flush(): Promise<void> {
    const bytes = new Uint8Array(this.buffer.buffer, 0, this.used * this.buffer.BYTES_PER_ELEMENT);
    let written = 0;
    while (written < bytes.length) written += await this.file.write(bytes.subarray(written));
    this.used = 0;
  }

  async close(): Promise<void> {
    await this.flush();
    this.file.close();
  }
}

/** Documents of a file, read in chunks: JSONL lines (one field) or blank-line paragraphs. */
export async function* streamDocuments(
  path: string,
  opts: { textField?: string; chunkBytes?: number; maxDocChars?: number } = {},
): AsyncGenerator<string> {
  const jsonl = /\.jsonl?$/i.test(path);
  const field = opts.textField ?? "text";
  const separator = jsonl ? "\n" : /\n\s*\n/;
  const maxDocChars = opts.maxDocChars ?? 1 << 20;
  const file = await Deno.open(path, { read: true });
  const decoder = new TextDecoder();
  const chunk = new Uint8Array(opts.chunkBytes ?? 1 << 20);
  let carry = "";
  let lineNo = 0;
  const parse = (piece: string): string | null => {
    lineNo++;
    if (!jsonl) return piece.trim() ? piece.trim() : null;
    if (!piece.trim()) return null;
    let row: Record<string, unknown>;
    try {
      row = JSON.parse(piece);
    } catch {
      throw new Error(`tokens: ${path}: line ${lineNo} is not JSON`);
    }
    const text = row[field];
    if (typeof text !== "string") {
      throw new Error(`tokens: ${path}: line ${lineNo} has no string field "${field}"`);
    }
    return text.trim() ? text : null;
  };
  try {
    for (;;) {
      const n = await file.read(chunk);
      if (n === null) break;
      carry += decoder.decode(chunk.subarray(0, n), { stream: true });
      const pieces = carry.split(separator);
      carry = pieces.pop() ?? "";
      for (const piece of pieces) {
        const doc = parse(piece);
        if (doc !== null) yield doc;
      }
      // A text with no blank line for a long stretch is cut at a line end (or anywhere)
      // so that memory stays bounded; a JSONL line has to be read whole.
      while (!jsonl && carry.length > maxDocChars) {
        const cut = carry.lastIndexOf("\n", maxDocChars);
        const at = cut > 0 ? cut + 1 : maxDocChars;
        const doc = parse(carry.slice(0, at));
        carry = carry.slice(at);
        if (doc !== null) yield doc;
      }
    }
    carry += decoder.decode();
    const last = parse(carry);
    if (last !== null) yield last;
  } finally {
    file.close();
  }
}

export interface StreamResult {
  meta: TokenMeta;
  documents: number;
}

/**
 * Tokenize `files` with GPT-2's BPE into `outDir` (train.bin, val-<domain>.bin,
 * meta.json); every `valEvery`-th document is held out. Memory: one chunk of text, one
 * document's ids and the writers' buffers.
 */
export async function streamTokenize(
  files: string[],
  outDir: string,
  opts: { textField?: string; valEvery: number; domain: string; maxTrainTokens?: number },
  onProgress?: (filesDone: number, documents: number, tokens: number) => void,
): Promise<StreamResult> {
  const dtype = dtypeFor(GPT2_VOCAB_SIZE);
  const train = await TokenWriter.create(`${outDir}/${tokenFileName("train")}`, dtype);
  const valName = `val-${opts.domain}`;
  const val = await TokenWriter.create(`${outDir}/${tokenFileName(valName)}`, dtype);
  let documents = 0;
  try {
    for (const [fileIndex, path] of files.entries()) {
      for await (const doc of streamDocuments(path, { textField: opts.textField })) {
        documents++;
        const ids = encodeGpt2(doc);
        ids.push(GPT2_EOT_ID);
        const held = documents % opts.valEvery === 0;
        if (!held && opts.maxTrainTokens !== undefined && train.count >= opts.maxTrainTokens) {
          continue;
        }
        await (held ? val : train).push(ids);
        if (documents % 1000 === 0) onProgress?.(fileIndex, documents, train.count + val.count);
      }
      onProgress?.(fileIndex + 1, documents, train.count + val.count);
    }
  } finally {
    await train.close();
    await val.close();
  }
  if (train.count === 0 || val.count === 0) {
    throw new Error(
      `tokens: ${documents} document(s) in ${
        files.join(", ")
      }: too few for a train and a held-out ` +
        `file with val_every ${opts.valEvery}`,
    );
  }
  const meta: TokenMeta = {
    format: "tokens/1",
    vocab_size: GPT2_VOCAB_SIZE,
    dtype,
    tokenizer: { kind: "gpt2" },
    domains: [opts.domain],
    counts: { train: train.count, [valName]: val.count },
    eot_id: GPT2_EOT_ID,
    unk_id: null,
    decode: null,
  };
  await Deno.writeTextFile(`${outDir}/meta.json`, JSON.stringify(meta, null, 2) + "\n");
  return { meta, documents };
}

/**
 * Link pre-tokenized files (nanoGPT's train.bin / val.bin) into `outDir` and describe
 * them in meta.json. Sizes are checked against the dtype; nothing is copied.
 */
export async function linkTokenFiles(
  source: { train: string; val: Record<string, string>; vocab_size: number; dtype?: TokenDtype },
  outDir: string,
): Promise<TokenMeta> {
  const dtype = source.dtype ?? dtypeFor(source.vocab_size);
  if (dtype === "uint16" && source.vocab_size > 65536) {
    throw new Error(
      `tokens: vocab_size ${source.vocab_size} does not fit uint16: use dtype uint32`,
    );
  }
  const counts: Record<string, number> = {};
  const link = async (split: string, path: string) => {
    counts[split] = await tokenCount(path, dtype);
    const absolute = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
    await Deno.symlink(absolute, `${outDir}/${tokenFileName(split)}`);
  };
  await link("train", source.train);
  for (const [domain, path] of Object.entries(source.val)) await link(`val-${domain}`, path);
  const meta: TokenMeta = {
    format: "tokens/1",
    vocab_size: source.vocab_size,
    dtype,
    tokenizer: { kind: source.vocab_size === GPT2_VOCAB_SIZE ? "gpt2" : "compact", external: true },
    domains: Object.keys(source.val),
    counts,
    eot_id: source.vocab_size === GPT2_VOCAB_SIZE ? GPT2_EOT_ID : 0,
    unk_id: null,
    decode: null,
  };
  await Deno.writeTextFile(`${outDir}/meta.json`, JSON.stringify(meta, null, 2) + "\n");
  return meta;
}
