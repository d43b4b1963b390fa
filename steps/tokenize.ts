// The `tokenize` step: a corpus step's documents -> token files in nanoGPT's layout.
// Writes <outDir>/train.bin (every train document), <outDir>/val-<domain>.bin (each
// held-out domain) and <outDir>/meta.json (lm/data/windows.ts's TokenMeta). Every document is
// followed by the end-of-text id. Text is encoded once with GPT-2 BPE; the compact
// tokenizer's table is counted on those train ids and applied by lookup (tokens outside it
// become their bytes), so the compact option costs one pass more over ids, not over text.
// meta.json's tokenizer.fallback_fraction gives, per file, the share of GPT-2 tokens that
// went through the byte fallback.
import { z } from "zod";
import gptTokenizerPackage from "gpt-tokenizer/package.json" with { type: "json" };
import { defineStep, type InputRef, type StepContext } from "../pipeline/step.ts";
import { readCorpusSummary, readDocuments, type SplitName } from "../lm/data/corpus.ts";
import { dtypeFor, tokenFileName, type TokenMeta, writeTokens } from "../lm/data/windows.ts";
import {
  buildCompactTable,
  compactLookup,
  encodeGpt2,
  GPT2_EOT_ID,
  GPT2_VOCAB_SIZE,
  MIN_COMPACT_VOCAB,
  toCompactIds,
} from "../lm/data/tokenizer.ts";
import { ParamError } from "../pipeline/errors.ts";

export const tokenizeParams = z.object({
  /** "gpt2": GPT-2's 50257 ids. "compact": vocab_size ids remapped from GPT-2 with a byte fallback (lm/data/tokenizer.ts). */
  tokenizer: z.enum(["gpt2", "compact"]).default("compact"),
  /** Vocabulary size of the compact tokenizer (default 8192); gpt2 is always 50257. */
  vocab_size: z.number().int().optional(),
  /** Stop the train split after this many tokens (held-out splits are never cut). */
  max_train_tokens: z.number().int().positive().optional(),
}).strict();

export type TokenizeParams = z.infer<typeof tokenizeParams>;

export const DEFAULT_COMPACT_VOCAB = 8192;

/** A growing array of GPT-2 ids (all below 65536). */
class IdBuffer {
  data = new Uint16Array(1 << 16);
  length = 0;
  push(ids: number[]): void {
    if (this.length + ids.length > this.data.length) {
      let size = this.data.length * 2;
      while (size < this.length + ids.length) size *= 2;
      const bigger = new Uint16Array(size);
      bigger.set(this.data.subarray(0, this.length));
      this.data = bigger;
    }
    this.data.set(ids, this.length);
    this.length += ids.length;
  }
  ids(): Uint16Array {
    return this.data.subarray(0, this.length);
  }
}

/** Progress over characters of text, shared by all splits. */
interface CharProgress {
  ctx: StepContext;
  done: number;
  tokens: number;
}

/** GPT-2 ids of every document of (split, domain), each followed by end-of-text. */
async function encodeDomain(
  corpusDir: string,
  split: SplitName,
  domain: string,
  into: IdBuffer,
  progress: CharProgress,
  maxTokens = Infinity,
): Promise<void> {
  for (const doc of await readDocuments(corpusDir, split, domain)) {
    if (into.length >= maxTokens) return;
    if (progress.ctx.signal.aborted) throw new Error("tokenize: cancelled");
    const ids = encodeGpt2(doc.text);
    ids.push(GPT2_EOT_ID);
    into.push(ids);
    progress.done += doc.text.length;
    progress.tokens += ids.length;
    progress.ctx.progress.update(progress.done, `${progress.tokens} tok`);
  }
}

function corpusInput(inputs: Record<string, InputRef | InputRef[]>): InputRef {
  const input = inputs.corpus;
  if (!input || Array.isArray(input)) {
    throw new Error("tokenize: needs exactly one `corpus` input (the output of a corpus step)");
  }
  return input;
}

export const tokenizeStep = defineStep({
  name: "tokenize",
  module: import.meta.url,
  // Text and token ids do not depend on the tfjs backend or the run seed (the split has its own).
  uses: { backend: false, seed: false },
  params: tokenizeParams,
  inputs: ["corpus"],
  // While planning (`--dry-run` too): the vocabulary size run() would reject.
  check(params) {
    const size = params.vocab_size;
    if (params.tokenizer === "gpt2" && size !== undefined && size !== GPT2_VOCAB_SIZE) {
      throw new ParamError(
        "vocab_size",
        `${size} does not apply to tokenizer gpt2 (always ${GPT2_VOCAB_SIZE}); use tokenizer: compact`,
      );
    }
    const compact = size ?? DEFAULT_COMPACT_VOCAB;
    if (
      params.tokenizer === "compact" &&
      (compact < MIN_COMPACT_VOCAB || compact > GPT2_VOCAB_SIZE)
    ) {
      throw new ParamError(
        "vocab_size",
        `expected an integer from ${MIN_COMPACT_VOCAB} to ${GPT2_VOCAB_SIZE} for the compact ` +
          `tokenizer (end-of-text + 256 bytes + merged tokens), got ${compact}`,
      );
    }
  },
  async run(ctx, params, inputs) {
    const corpusDir = corpusInput(inputs).dir;
    const compact = params.tokenizer === "compact";
    const vocabSize = compact ? params.vocab_size ?? DEFAULT_COMPACT_VOCAB : GPT2_VOCAB_SIZE;
    if (!compact && params.vocab_size !== undefined && params.vocab_size !== GPT2_VOCAB_SIZE) {
      throw new Error(
        `tokenize: vocab_size ${params.vocab_size} does not apply to tokenizer gpt2 (always ${GPT2_VOCAB_SIZE}); use tokenizer: compact`,
      );
    }
    if (compact) buildCompactTable(new Uint8Array(GPT2_VOCAB_SIZE), vocabSize); // validates the size early
    const dtype = dtypeFor(vocabSize);

    const summary = await readCorpusSummary(corpusDir);
    const trainDomains = Object.keys(summary.splits.train);
    const valDomains = Object.keys(summary.splits.val);
    if (trainDomains.length === 0) throw new Error(`tokenize: the corpus has no train documents`);
    if (valDomains.length === 0) throw new Error(`tokenize: the corpus has no held-out documents`);
    const totalChars = [
      ...Object.values(summary.splits.train),
      ...Object.values(summary.splits.val),
    ].reduce((n, c) => n + c.chars, 0);
    const progress: CharProgress = { ctx, done: 0, tokens: 0 };
    ctx.progress.start("tokenize", totalChars, "char");

    // 1. Train split as GPT-2 ids, and the compact table counted on it. The cut to
    //    max_train_tokens applies to the ids written (a byte fallback only lengthens).
    const trainBuffer = new IdBuffer();
    const maxTrain = params.max_train_tokens ?? Infinity;
    for (const domain of trainDomains) {
      await encodeDomain(corpusDir, "train", domain, trainBuffer, progress, maxTrain);
    }
    const train = trainBuffer.ids().subarray(0, Math.min(trainBuffer.length, maxTrain));
    let table: Int32Array | null = null;
    let lookup: Int32Array | null = null;
    if (compact) {
      const counts = new Float64Array(GPT2_VOCAB_SIZE);
      for (let i = 0; i < train.length; i++) counts[train[i]]++;
      table = buildCompactTable(counts, vocabSize);
      lookup = compactLookup(table);
    }

    // 2. Remap (compact) and write each split; count byte fallbacks.
    const counts: Record<string, number> = {};
    const fallbackFraction: Record<string, number> = {};
    const write = async (name: string, gpt2Ids: Uint16Array, maxTokens = Infinity) => {
      let ids: ArrayLike<number> = gpt2Ids;
      if (lookup) {
        const mapped = toCompactIds(gpt2Ids, lookup);
        ids = mapped.ids.subarray(0, Math.min(mapped.ids.length, maxTokens));
        fallbackFraction[name] = gpt2Ids.length === 0 ? 0 : mapped.fallbacks / gpt2Ids.length;
      }
      await writeTokens(`${ctx.outDir}/${tokenFileName(name)}`, ids, dtype);
      counts[name] = ids.length;
    };
    await write("train", train, maxTrain);
    for (const domain of valDomains) {
      const buffer = new IdBuffer();
      await encodeDomain(corpusDir, "val", domain, buffer, progress);
      await write(`val-${domain}`, buffer.ids());
    }

    ctx.progress.update(totalChars, `${progress.tokens} tok`);

    const meta: TokenMeta = {
      format: "tokens/1",
      vocab_size: vocabSize,
      dtype,
      tokenizer: {
        kind: params.tokenizer,
        base: "gpt2",
        encoding: "r50k_base",
        package: `${gptTokenizerPackage.name}@${gptTokenizerPackage.version}`,
        ...(compact ? { fallback_fraction: fallbackFraction } : {}),
      },
      domains: valDomains,
      counts,
      eot_id: lookup ? lookup[GPT2_EOT_ID] : GPT2_EOT_ID,
      unk_id: null,
      decode: table ? Array.from(table) : null,
    };
    await Deno.writeTextFile(`${ctx.outDir}/meta.json`, JSON.stringify(meta) + "\n");
    const fallbackNote = compact
      ? `, ${(100 * fallbackFraction.train).toFixed(2)}% of train GPT-2 tokens as bytes`
      : "";
    ctx.progress.log(
      `tokenize: ${counts.train} train tokens, ${valDomains.length} held-out domains${fallbackNote}`,
    );
  },
});
