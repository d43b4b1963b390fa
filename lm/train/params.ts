// What a training run is, as data: the train step's params (zod), their defaults
// resolved against the model (micro-batches, EMA/SWA/online-LAWA settings), and the
// checks the engine runs while planning, so that a config that cannot train fails in
// one line before anything runs.
import { z } from "zod";
import { type GPTConfig, modelConfig } from "../model/gpt.ts";
import { BACKEND_NAMES, type BackendName } from "../backend/backend.ts";
import { GPT2_VOCAB_SIZE } from "../data/tokenizer.ts";
import { ParamError } from "../../pipeline/errors.ts";

const EmaParams = z.object({
  /** Weight of the old average: avg = decay·avg + (1 - decay)·w. */
  decay: z.number().gt(0).lt(1).default(0.9),
  /** Update every N steps (1: the paper's EMA; 1000: its "distant" EMA). */
  every: z.number().int().positive().default(1),
}).strict();

const OnlineLawaParams = z.object({
  k: z.number().int().positive(),
  /** Distance between window members, in training steps (a multiple of save_every; default save_every). */
  nu: z.number().int().positive().optional(),
  /** A window ends every `interval` training steps (a multiple of save_every; default save_every). */
  interval: z.number().int().positive().optional(),
  /** First training step a window may end at. */
  start: z.number().int().nonnegative().default(0),
}).strict();

const SwaParams = z.object({
  /** Fraction of training after which SWA starts (0.75 "late", 0 "early"). */
  start: z.number().min(0).max(1).default(0.75),
  /** Add the weights to the running mean every N steps. */
  every: z.number().int().positive().default(10),
  /** SWA learning rate (default: min_lr, as the paper's code). */
  lr: z.number().positive().optional(),
  /** Steps of the cosine anneal to the SWA LR (default: all remaining steps, as the paper's code). */
  anneal_steps: z.number().int().nonnegative().optional(),
}).strict();

export const trainParams = z.object({
  /** Model preset of lm/model/gpt.ts (cpu-tiny, cpu-small, cpu-base, gpt2-small, ...). */
  preset: z.string().default("cpu-small"),
  /** Overrides of the preset's shape. */
  model: z.object({
    n_layer: z.number().int().positive(),
    n_head: z.number().int().positive(),
    n_embd: z.number().int().positive(),
    block_size: z.number().int().positive(),
    bias: z.boolean(),
  }).partial().strict().optional(),
  /** Peak learning rate. */
  lr: z.number().positive().default(6e-3),
  /** Final learning rate of the cosine decay (default lr / 10). */
  min_lr: z.number().nonnegative().optional(),
  warmup: z.number().int().nonnegative().default(100),
  /** Optimizer steps. */
  steps: z.number().int().positive().default(1000),
  /** Tokens per optimizer step = micro_batch × seq_len × (number of micro-batches). */
  batch_tokens: z.number().int().positive().default(4096),
  /** Sequences per forward/backward pass (default: as many as fit in 4096 tokens). */
  micro_batch: z.number().int().positive().optional(),
  /** Tokens per sequence (default: the model's block_size). */
  seq_len: z.number().int().positive().optional(),
  weight_decay: z.number().nonnegative().default(0.1),
  /** Maximum global gradient norm (0: no clipping). */
  grad_clip: z.number().nonnegative().default(1.0),
  /** Write a checkpoint every N steps (and at the last step). */
  save_every: z.number().int().positive().default(50),
  /** tfjs backend (default: the one the run was started with). */
  backend: z.enum(BACKEND_NAMES as unknown as [BackendName, ...BackendName[]]).optional(),
  ema: EmaParams.nullable().default(null),
  swa: SwaParams.nullable().default(null),
  /** Testing hook: pretend the loss of this step (1-based) was NaN. */
  nan_at_step: z.number().int().positive().optional(),
  /** Checkpoint storage: float32 (default) or bfloat16, half the disk (the resume state stays float32). */
  checkpoint_dtype: z.enum(["float32", "bfloat16"]).optional(),
  /** Keep every N-th saved checkpoint (and the last) in the series (default 1: all). */
  keep_every: z.number().int().positive().optional(),
  /** LAWA during training, written to lawa/ (lm/checkpoints/train_disk.ts); nu, interval in steps as for `average`. */
  online_lawa: OnlineLawaParams.optional(),
}).strict();

export type TrainParams = z.infer<typeof trainParams>;

/** Params with every derived value filled in (what series.json records under `train`). */
export interface ResolvedTrainParams
  extends Omit<TrainParams, "min_lr" | "micro_batch" | "seq_len" | "swa"> {
  min_lr: number;
  micro_batch: number;
  seq_len: number;
  /** Micro-batches per step. */
  n_micro: number;
  swa:
    | (z.infer<typeof SwaParams> & { lr: number; anneal_steps: number; start_step: number })
    | null;
}

/** Tokens per micro-batch when micro_batch is not given (about what the wasm heap holds). */
const DEFAULT_MICRO_TOKENS = 4096;

export function resolveTrainParams(p: TrainParams, cfg: GPTConfig): ResolvedTrainParams {
  const seqLen = p.seq_len ?? cfg.block_size;
  if (seqLen > cfg.block_size) {
    throw new Error(
      `train: seq_len ${seqLen} is longer than the model's block_size ${cfg.block_size}`,
    );
  }
  if (p.batch_tokens % seqLen !== 0) {
    throw new Error(
      `train: batch_tokens ${p.batch_tokens} is not a multiple of seq_len ${seqLen} ` +
        `(expected batch_tokens = micro_batch × seq_len × micro-batches)`,
    );
  }
  const rows = p.batch_tokens / seqLen;
  let micro = p.micro_batch;
  if (micro === undefined) {
    micro = 1;
    for (let d = 1; d <= rows && d * seqLen <= DEFAULT_MICRO_TOKENS; d++) {
      if (rows % d === 0) micro = d;
    }
  }
  if (rows % micro !== 0) {
    throw new Error(
      `train: batch_tokens ${p.batch_tokens} = ${rows} sequences of ${seqLen} tokens, ` +
        `which micro_batch ${micro} does not divide (expected batch_tokens = micro_batch × seq_len × micro-batches)`,
    );
  }
  if (p.warmup >= p.steps) {
    throw new Error(`train: warmup ${p.warmup} must be shorter than steps ${p.steps}`);
  }
  const minLr = p.min_lr ?? p.lr / 10;
  let swa: ResolvedTrainParams["swa"] = null;
  if (p.swa) {
    const startStep = Math.min(p.steps - 1, Math.round(p.swa.start * p.steps));
    swa = {
      ...p.swa,
      lr: p.swa.lr ?? minLr,
      anneal_steps: p.swa.anneal_steps ?? p.steps - startStep,
      start_step: startStep,
    };
  }
  return { ...p, min_lr: minLr, micro_batch: micro, seq_len: seqLen, n_micro: rows / micro, swa };
}

/**
 * Most tokens one optimizer step may take: its windows are allocated at once (8 bytes a
 * token: inputs and targets), so this is 1 GiB, and 40x GPT-3's 3.2M-token batch. A
 * fixed bound, not this machine's memory: a plan must not depend on where it is made.
 */
export const MAX_BATCH_TOKENS = 2 ** 27;

/**
 * What run() would reject, found while planning (`--dry-run` too): an unknown preset,
 * bad model sizes, warmup >= steps, a batch that micro-batches do not divide, a batch
 * beyond MAX_BATCH_TOKENS (which would sit for ages before its first step).
 */
export function checkTrainParams(params: TrainParams): void {
  const fail = (e: unknown, param: string): never => {
    throw new ParamError(
      param,
      String((e as Error).message).replace(/^(train|model config): /, ""),
    );
  };
  let cfg: GPTConfig;
  try {
    cfg = modelConfig(params.preset, GPT2_VOCAB_SIZE, params.model);
  } catch (e) {
    return fail(e, /unknown model preset/.test(String(e)) ? "preset" : "model");
  }
  if (params.batch_tokens > MAX_BATCH_TOKENS) {
    const gib = (8 * params.batch_tokens / 2 ** 30).toFixed(0);
    throw new ParamError(
      "batch_tokens",
      `${params.batch_tokens} tokens a step need ${gib} GiB for their windows alone; ` +
        `at most ${MAX_BATCH_TOKENS} (1 GiB)`,
    );
  }
  try {
    resolveTrainParams(params, cfg);
  } catch (e) {
    // Its messages start with the param at fault: "train: warmup 100 must be ...".
    const first = String((e as Error).message).replace(/^train: /, "").split(" ")[0];
    const named = ["seq_len", "batch_tokens", "warmup"].includes(first) ? first : "batch_tokens";
    return fail(e, /which micro_batch/.test(String(e)) ? "micro_batch" : named);
  }
}
