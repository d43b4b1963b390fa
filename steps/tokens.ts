// The `tokens` step: token files for training at scale, from either pre-tokenized
// nanoGPT files (`bin`: train.bin / val.bin, linked, not copied) or a large text/JSONL
// corpus streamed through GPT-2's tokenizer (`text`). Its output has the tokenize step's
// layout (meta.json, train.bin, val-<domain>.bin), so `train` and `evaluate` take it as
// their `tokens` input (lm/data/token_source.ts).
import { z } from "zod";
import { defineStep } from "../pipeline/step.ts";
import { linkTokenFiles, streamTokenize } from "../lm/data/token_source.ts";

const binSource = z.object({
  /** nanoGPT's train.bin: raw little-endian ids. */
  train: z.string(),
  /** Held-out files by domain name, e.g. { web: data/val.bin }. */
  val: z.record(z.string(), z.string()),
  vocab_size: z.number().int().positive(),
  /** Id width (default: uint16 up to 65536 ids, else uint32). */
  dtype: z.enum(["uint16", "uint32"]).optional(),
}).strict();

const textSource = z.object({
  /** .txt (documents separated by blank lines) and .jsonl (one document a line) files. */
  files: z.array(z.string()).min(1),
  /** JSONL field holding the text. */
  text_field: z.string().default("text"),
  /** Every N-th document is held out. */
  val_every: z.number().int().min(2).default(100),
  /** Name of the held-out domain. */
  domain: z.string().default("heldout"),
  /** Stop adding to train.bin after this many tokens. */
  max_train_tokens: z.number().int().positive().optional(),
}).strict();

export const tokensParams = z.object({
  bin: binSource.optional(),
  text: textSource.optional(),
}).strict().refine((p) => (p.bin === undefined) !== (p.text === undefined), {
  message: "give exactly one of bin (pre-tokenized files) or text (files to tokenize)",
});

export type TokensParams = z.infer<typeof tokensParams>;

export const tokensStep = defineStep({
  name: "tokens",
  module: import.meta.url,
  uses: { backend: false, seed: false },
  // Text files are hashed into the key; pre-tokenized files (gigabytes) are keyed by path.
  files: (params) => params.text?.files ?? [],
  params: tokensParams,
  inputs: [],
  async run(ctx, params) {
    if (params.bin) {
      const meta = await linkTokenFiles(params.bin, ctx.outDir);
      ctx.progress.log(
        `tokens: linked ${meta.counts.train} training ids and ${meta.domains.length} held-out file(s) (${meta.dtype})`,
      );
      return;
    }
    const text = params.text!;
    ctx.progress.start("tokens", text.files.length, "file");
    const result = await streamTokenize(
      text.files,
      ctx.outDir,
      {
        textField: text.text_field,
        valEvery: text.val_every,
        domain: text.domain,
        maxTrainTokens: text.max_train_tokens,
      },
      (files, documents, tokens) => ctx.progress.update(files, `${documents} docs, ${tokens} ids`),
    );
    ctx.progress.log(
      `tokens: ${result.documents} documents -> ${result.meta.counts.train} train and ` +
        `${result.meta.counts[`val-${text.domain}`]} held-out GPT-2 ids`,
    );
  },
});
