// The `hf_tokenize` step: a corpus tokenized with a Hugging Face tokenizer.json (e.g.
// Pythia's GPT-NeoX BPE, from a `hub` step's output), written exactly like the
// `tokenize` step's output (train.bin, val-<domain>.bin, meta.json in nanoGPT's layout),
// so evaluate, lmc and train read it unchanged. The tokenizer file's content is part of
// the cache key through the input's digest. meta.json's tokenizer.kind is "hf" and the
// tokenizer.json is copied beside it, so evaluation can rebuild the tokenizer for
// zero-shot tasks.
import { z } from "zod";
import { defineStep, type InputRef, type InputValue } from "../pipeline/step.ts";
import { readCorpusSummary, readDocuments, type SplitName } from "../lm/data/corpus.ts";
import { dtypeFor, tokenFileName, writeTokens } from "../lm/data/windows.ts";
import { type HfTokenizerHandle, loadHfTokenizer } from "../lm/data/hf_tokenizer.ts";

export const HfTokenizeParams = z.object({
  /** Stop the train split after this many tokens (held-out splits are never cut). */
  max_train_tokens: z.number().int().positive().optional(),
  /** Only the held-out splits (evaluating public checkpoints needs no train tokens). */
  val_only: z.boolean().default(false),
}).strict();

function single(v: InputValue | undefined, name: string): InputRef {
  if (!v || Array.isArray(v)) {
    throw new Error(`hf_tokenize: needs exactly one \`${name}\` input`);
  }
  return v;
}

async function encodeSplit(
  tok: HfTokenizerHandle,
  corpusDir: string,
  split: SplitName,
  domains: string[],
  maxTokens: number,
  signal: AbortSignal,
): Promise<number[]> {
  const ids: number[] = [];
  for (const domain of domains) {
    for (const doc of await readDocuments(corpusDir, split, domain)) {
      if (ids.length >= maxTokens) return ids.slice(0, maxTokens);
      signal.throwIfAborted();
      for (const id of tok.encode(doc.text)) ids.push(id);
      ids.push(tok.eotId);
    }
  }
  return ids.length > maxTokens ? ids.slice(0, maxTokens) : ids;
}

export const hfTokenizeStep = defineStep({
  name: "hf_tokenize",
  module: import.meta.url,
  uses: { backend: false, seed: false },
  params: HfTokenizeParams,
  /** `tokenizer`: a step output holding tokenizer.json (a hub step). */
  inputs: ["corpus", "tokenizer"],
  async run(ctx, params, inputs) {
    const corpusDir = single(inputs.corpus, "corpus").dir;
    const tokenizerRef = single(inputs.tokenizer, "tokenizer");
    const tokPath = `${tokenizerRef.dir}/tokenizer.json`;
    const tok = await loadHfTokenizer(tokPath);
    const summary = await readCorpusSummary(corpusDir);
    const trainDomains = Object.keys(summary.splits.train);
    const valDomains = Object.keys(summary.splits.val);
    if (valDomains.length === 0) {
      throw new Error("hf_tokenize: the corpus has no held-out documents");
    }
    const dtype = dtypeFor(tok.vocabSize);
    ctx.progress.start("hf_tokenize", valDomains.length + 1, "split");

    const counts: Record<string, number> = {};
    const train = params.val_only ? [] : await encodeSplit(
      tok,
      corpusDir,
      "train",
      trainDomains,
      params.max_train_tokens ?? Infinity,
      ctx.signal,
    );
    await writeTokens(`${ctx.outDir}/${tokenFileName("train")}`, train, dtype);
    counts.train = train.length;
    ctx.progress.update(1);
    for (const [i, domain] of valDomains.entries()) {
      const ids = await encodeSplit(tok, corpusDir, "val", [domain], Infinity, ctx.signal);
      await writeTokens(`${ctx.outDir}/${tokenFileName(`val-${domain}`)}`, ids, dtype);
      counts[`val-${domain}`] = ids.length;
      ctx.progress.update(i + 2, `${domain}: ${ids.length} tokens`);
    }
    await Deno.copyFile(tokPath, `${ctx.outDir}/tokenizer.json`);
    const meta = {
      format: "tokens/1",
      vocab_size: tok.vocabSize,
      dtype,
      tokenizer: { kind: "hf", file: "tokenizer.json", from: tokenizerRef.node },
      domains: valDomains,
      counts,
      eot_id: tok.eotId,
      unk_id: null,
      decode: null,
    };
    await Deno.writeTextFile(`${ctx.outDir}/meta.json`, JSON.stringify(meta) + "\n");
    ctx.progress.log(
      `hf_tokenize: ${counts.train} train tokens, ${valDomains.length} held-out domains (vocab ${tok.vocabSize})`,
    );
  },
});
