// The `evaluate` step: every checkpoint of every series in its input, scored on the
// held-out domains of a tokenize output over a fixed, ordered set of windows (the same
// windows for every checkpoint, so curves compare). Forward-only and batched.
//
// Rows: `series` (one per series), `eval_loss` (per checkpoint and domain, plus 'all',
// the token-weighted mean), `eval_windows` (the loss of every window, for paired
// intervals), `diversity` (argmax disagreement between consecutive
// checkpoints of a series, when asked), `zeroshot` (task metrics, when tasks are given)
// and `spikes` (the largest single-checkpoint rise of the 'all' loss per series).
import { z } from "zod";
import { defineStep, type InputRef, type InputValue, type Row } from "../pipeline/step.ts";
import { listSeries, type SeriesInfo } from "../lm/checkpoints/series.ts";
import { type BackendName, setBackend } from "../lm/backend/backend.ts";
import {
  disposeWeights,
  evaluateWindows,
  type HeldOutDomain,
  loadCheckpoint,
  loadHeldOut,
  modelConfigFromSeries,
  poolResults,
  scoreBatch,
} from "../lm/eval/loss.ts";
import { concatPredictions, diversity } from "../lm/eval/diversity.ts";
import {
  buildLastWordDocs,
  loadTaskFile,
  runTask,
  type TaskDoc,
  type TaskType,
} from "../lm/eval/zeroshot.ts";
import { openTokens, readMeta, tokenFileName, type TokenMeta } from "../lm/data/windows.ts";
import { type Tokenizer, UNK_TEXT } from "../lm/data/tokenizer.ts";
import { tokenizerForTokens } from "../lm/data/hf_tokenizer.ts";
import {
  appendRows,
  DIVERSITY,
  EVAL_LOSS,
  EVAL_WINDOWS,
  type RowOf,
  SERIES,
  SPIKES,
  tablesOf,
  ZEROSHOT,
} from "./tables.ts";

const FileTask = z.object({
  /** Name in the `zeroshot` table. */
  name: z.string().min(1),
  type: z.enum(["multiple_choice", "lambada", "word_perplexity"]),
  /** JSONL file (see lm/eval/zeroshot.ts for the formats). */
  path: z.string().min(1),
  /** Use only the first `limit` lines. */
  limit: z.number().int().positive().optional(),
});
const HeldOutLastWord = z.object({
  /** Final-word prediction on passages of each held-out domain (task `lastword-<domain>`). */
  type: z.literal("heldout_lastword"),
  passages: z.number().int().positive().default(50),
  /** Held-out tokens each passage is cut from (default: min(96, block_size)). */
  passage_tokens: z.number().int().positive().optional(),
  /** Words of context a passage needs before its final word. */
  min_context_words: z.number().int().nonnegative().default(8),
});

const Params = z.object({
  /** Window length (default: the model's block_size). */
  seq_len: z.number().int().positive().optional(),
  /**
   * Held-out tokens per evaluated checkpoint, summed over domains: each domain gets
   * ceil(heldout_tokens / (domains × seq_len)) windows, evenly spaced over its val file
   * (fewer if the file is shorter). 32,768 by default, enough to resolve gaps of ~0.01.
   */
  heldout_tokens: z.number().int().positive().default(32768),
  /** Windows per held-out domain, instead of deriving them from heldout_tokens. */
  max_windows: z.number().int().positive().optional(),
  /**
   * Score only checkpoints whose step is a multiple of this (every series of a pipeline
   * with the same value is scored at the same steps). Default: every checkpoint.
   */
  step_every: z.number().int().positive().optional(),
  /** Windows per forward pass. */
  batch_size: z.number().int().positive().default(8),
  /**
   * Which series of the input to score, by subfolder name ("original", "ema", "swa";
   * "." for a series at the top of the input). Default: every series found.
   */
  series: z.array(z.string().min(1)).optional(),
  /** Held-out domains to score (default: all in meta.json). */
  domains: z.array(z.string()).optional(),
  /** Diversity between consecutive checkpoints of each series. */
  diversity: z.boolean().default(true),
  zeroshot: z.object({
    tasks: z.array(z.union([FileTask, HeldOutLastWord])).min(1),
    /** Score every checkpoint, or only the last of each series. */
    checkpoints: z.enum(["last", "all"]).default("last"),
  }).nullable().default(null),
});
type EvalParams = z.infer<typeof Params>;

function single(v: InputValue | undefined, name: string): InputRef {
  if (!v) throw new Error(`evaluate: missing input '${name}'`);
  if (Array.isArray(v)) {
    if (v.length !== 1) {
      throw new Error(`evaluate: input '${name}' must be one instance, got ${v.length}`);
    }
    return v[0];
  }
  return v;
}

function numberOrNull(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/** The `series` row: method params, and lr / batch size / seed / backend of the training run. */
export function seriesRow(seriesId: string, info: SeriesInfo, ref: InputRef): RowOf<typeof SERIES> {
  const p = info.params ?? {};
  const train = (p.train && typeof p.train === "object" ? p.train : {}) as Record<string, unknown>;
  const fromRef = ref.step === "train" ? ref.params : {};
  const lr = numberOrNull(train.lr) ?? numberOrNull(fromRef.lr);
  const batchTokens = numberOrNull(train.batch_tokens) ?? numberOrNull(fromRef.batch_tokens);
  const seed = numberOrNull(p.seed);
  const backend = typeof p.backend === "string" ? p.backend : null;
  const name = [
    info.label,
    lr !== null ? `lr ${lr}` : "",
    batchTokens !== null ? `${batchTokens} tok/step` : "",
    seed !== null ? `seed ${seed}` : "",
  ].filter((s) => s).join(" · ");
  return {
    series_id: seriesId,
    name,
    label: info.label,
    method: info.method,
    k: numberOrNull(p.k),
    nu: numberOrNull(p.nu),
    lr,
    batch_tokens: batchTokens,
    seed,
    backend,
    params: JSON.stringify(p),
  };
}

/** Windows per domain so that the domains together hold at least `tokens` tokens. */
export function windowsPerDomain(tokens: number, domains: number, seqLen: number): number {
  return Math.max(1, Math.ceil(tokens / (Math.max(1, domains) * seqLen)));
}

/** The checkpoints to score, in step order: all, or those at multiples of `every`. */
export function scoredCheckpoints<C extends { step: number }>(
  checkpoints: readonly C[],
  every?: number,
): C[] {
  const sorted = [...checkpoints].sort((a, b) => a.step - b.step);
  if (!every) return sorted;
  const kept = sorted.filter((c) => c.step % every === 0);
  if (kept.length === 0) {
    throw new Error(
      `evaluate: no checkpoint at a multiple of step_every ${every} (steps ${
        sorted.map((c) => c.step).join(", ")
      })`,
    );
  }
  return kept;
}

/** The largest rise of a loss curve from one checkpoint to the next (null if < 2 points). */
export function largestRise(
  curve: { step: number; loss: number }[],
): { step: number; rise: number } | null {
  const sorted = [...curve].sort((a, b) => a.step - b.step);
  let best: { step: number; rise: number } | null = null;
  for (let i = 1; i < sorted.length; i++) {
    const rise = sorted[i].loss - sorted[i - 1].loss;
    if (!best || rise > best.rise) best = { step: sorted[i].step, rise };
  }
  return best;
}

/** The tokenizer, with "<|unk|>" in text mapped back to the <unk> id. */
function taskCodec(tok: Tokenizer): { encode(text: string): number[] } {
  if (tok.unkId === null) return tok;
  const unk = tok.unkId;
  return {
    encode(text: string): number[] {
      const out: number[] = [];
      text.split(UNK_TEXT).forEach((piece, i) => {
        if (i > 0) out.push(unk);
        if (piece !== "") out.push(...tok.encode(piece));
      });
      return out;
    },
  };
}

interface LoadedTask {
  name: string;
  type: TaskType;
  docs: TaskDoc[];
}

async function loadTasks(
  spec: NonNullable<EvalParams["zeroshot"]>,
  tokensDir: string,
  meta: TokenMeta,
  tok: Tokenizer,
  domains: string[],
  blockSize: number,
): Promise<LoadedTask[]> {
  const tasks: LoadedTask[] = [];
  for (const t of spec.tasks) {
    if (t.type === "heldout_lastword") {
      const codec = taskCodec(tok);
      for (const domain of domains) {
        const file = await openTokens(`${tokensDir}/${tokenFileName(`val-${domain}`)}`, meta.dtype);
        const tokens = file.read(0, file.length);
        file.close();
        const docs = buildLastWordDocs(tokens, (ids) => tok.decode(ids), {
          passages: t.passages,
          passageTokens: Math.min(t.passage_tokens ?? 96, blockSize, tokens.length),
          eotId: meta.eot_id,
          minContextWords: t.min_context_words,
          acceptWord: (w) => tok.unkId === null || !codec.encode(" " + w).includes(tok.unkId),
        });
        if (docs.length === 0) {
          throw new Error(`evaluate: no final-word passages found in val-${domain}`);
        }
        tasks.push({ name: `lastword-${domain}`, type: "lambada", docs });
      }
    } else {
      const docs = await loadTaskFile(t.path, t.type);
      tasks.push({ name: t.name, type: t.type, docs: t.limit ? docs.slice(0, t.limit) : docs });
    }
  }
  return tasks;
}

export const evaluateStep = defineStep({
  name: "evaluate",
  module: import.meta.url,
  params: Params,
  // Zero-shot task files are read by path: their contents are part of the cache key.
  files: (params) => (params.zeroshot?.tasks ?? []).flatMap((t) => "path" in t ? [t.path] : []),
  inputs: ["series", "tokens"],
  tables: tablesOf(SERIES, EVAL_LOSS, EVAL_WINDOWS, DIVERSITY, ZEROSHOT, SPIKES),
  async run(ctx, params, inputs) {
    const seriesRef = single(inputs.series, "series");
    const tokensRef = single(inputs.tokens, "tokens");
    await setBackend(ctx.backend as BackendName); // checked there, with a clear error

    const all = await listSeries(seriesRef.dir);
    const relOf = (dir: string) =>
      dir === seriesRef.dir ? "." : dir.slice(seriesRef.dir.length + 1);
    const found = params.series ? all.filter((s) => params.series!.includes(relOf(s.dir))) : all;
    if (found.length === 0) {
      const had = all.map((s) => relOf(s.dir)).join(", ") || "none";
      throw new Error(
        `evaluate: no checkpoint series ${
          params.series ? `named ${params.series.join(", ")} ` : ""
        }(series.json) in the output of ${seriesRef.node} (found: ${had})`,
      );
    }
    const meta = await readMeta(tokensRef.dir);
    const domains = params.domains ?? meta.domains;
    const plans = found.map(({ dir, info }) => {
      const rel = relOf(dir);
      const cfg = modelConfigFromSeries(info, `${seriesRef.node}/${rel}`);
      // A Hugging Face tokenizer's ids may be fewer than the model's padded vocabulary.
      const fits = meta.tokenizer.kind === "hf"
        ? meta.vocab_size <= cfg.vocab_size
        : meta.vocab_size === cfg.vocab_size;
      if (!fits) {
        throw new Error(
          `evaluate: series ${rel} has vocab_size ${cfg.vocab_size} but the tokens have ${meta.vocab_size}`,
        );
      }
      const seqLen = params.seq_len ?? cfg.block_size;
      if (seqLen > cfg.block_size) {
        throw new Error(
          `evaluate: seq_len ${seqLen} exceeds block_size ${cfg.block_size} of series ${rel}`,
        );
      }
      if (info.checkpoints.length === 0) {
        throw new Error(`evaluate: series ${rel} has no checkpoints`);
      }
      return { dir, info, cfg, seqLen, id: `${seriesRef.key}/${rel}` };
    });

    // Fixed windows per sequence length, loaded once and shared by all checkpoints.
    const heldOutBySeqLen = new Map<number, HeldOutDomain[]>();
    for (const p of plans) {
      if (!heldOutBySeqLen.has(p.seqLen)) {
        heldOutBySeqLen.set(
          p.seqLen,
          await loadHeldOut(
            tokensRef.dir,
            p.seqLen,
            params.max_windows ?? windowsPerDomain(params.heldout_tokens, domains.length, p.seqLen),
            domains,
          ),
        );
      }
    }
    const tok = params.zeroshot ? await tokenizerForTokens(meta, tokensRef.dir) : null;
    const tasks = params.zeroshot && tok
      ? await loadTasks(params.zeroshot, tokensRef.dir, meta, tok, domains, plans[0].cfg.block_size)
      : [];

    const windowTokens = (h: HeldOutDomain[]) =>
      h.reduce((n, d) => n + d.windows.count * d.windows.seqLen, 0);
    const total = plans.reduce(
      (n, p) =>
        n +
        scoredCheckpoints(p.info.checkpoints, params.step_every).length *
          windowTokens(heldOutBySeqLen.get(p.seqLen)!),
      0,
    );
    ctx.progress.start("evaluate", total, "tok");
    let done = 0;
    const t0 = performance.now();
    const summary: Row[] = [];

    for (const plan of plans) {
      appendRows(ctx.results, SERIES, [seriesRow(plan.id, plan.info, seriesRef)]);
      const heldOut = heldOutBySeqLen.get(plan.seqLen)!;
      const checkpoints = scoredCheckpoints(plan.info.checkpoints, params.step_every);
      const curve: { step: number; loss: number }[] = [];
      let previous: { step: number; predictions: Int32Array } | null = null;

      for (const [ci, ck] of checkpoints.entries()) {
        if (ctx.signal.aborted) throw new Error("evaluate: cancelled");
        const w = await loadCheckpoint(plan.cfg, `${plan.dir}/${ck.file}`);
        try {
          const parts: { domain: string; sumLoss: number; nTokens: number }[] = [];
          const predictions: Int32Array[] = [];
          for (const { domain, windows } of heldOut) {
            const base = done;
            const r = await evaluateWindows(plan.cfg, w, windows, {
              batchSize: params.batch_size,
              keepPredictions: params.diversity,
              keepWindowSums: true,
              signal: ctx.signal,
              onBatch: (windowsDone) => {
                const tokPerS = (base + windowsDone * windows.seqLen) /
                  ((performance.now() - t0) / 1000);
                ctx.progress.update(
                  base + windowsDone * windows.seqLen,
                  `${plan.info.label} step ${ck.step} · ${domain} · ${Math.round(tokPerS)} tok/s`,
                );
              },
            });
            done = base + r.nTokens;
            parts.push({ domain, sumLoss: r.sumLoss, nTokens: r.nTokens });
            appendRows(
              ctx.results,
              EVAL_WINDOWS,
              Array.from(r.windowSums!, (sum, window) => ({
                series_id: plan.id,
                step: ck.step,
                domain,
                window,
                loss: sum / windows.seqLen,
                n_tokens: windows.seqLen,
              })),
            );
            if (r.predictions) predictions.push(r.predictions);
          }
          const all = poolResults(parts);
          const rows: RowOf<typeof EVAL_LOSS>[] = [...parts, { domain: "all", ...all }].map((p) => {
            const loss = p.sumLoss / p.nTokens;
            return {
              series_id: plan.id,
              step: ck.step,
              tokens: ck.tokens,
              domain: p.domain,
              loss,
              ppl: Math.exp(loss),
              n_tokens: p.nTokens,
            };
          });
          appendRows(ctx.results, EVAL_LOSS, rows);
          summary.push(...rows);
          curve.push({ step: ck.step, loss: all.meanLoss });

          if (params.diversity) {
            const current = concatPredictions(predictions);
            if (previous) {
              appendRows(ctx.results, DIVERSITY, [{
                series_id: plan.id,
                step_a: previous.step,
                step_b: ck.step,
                diversity: diversity(previous.predictions, current),
              }]);
            }
            previous = { step: ck.step, predictions: current };
          }

          const zeroshotHere = params.zeroshot &&
            (params.zeroshot.checkpoints === "all" || ci === checkpoints.length - 1);
          if (zeroshotHere && tok) {
            for (const task of tasks) {
              const metrics = await runTask(task.type, task.docs, {
                codec: taskCodec(tok),
                scorer: (x, y, B, T) => scoreBatch(plan.cfg, w, x, y, B, T),
                eotId: meta.eot_id,
                maxLen: plan.cfg.block_size,
                batchSize: params.batch_size,
              });
              appendRows(
                ctx.results,
                ZEROSHOT,
                metrics.map((m) => ({ series_id: plan.id, step: ck.step, task: task.name, ...m })),
              );
              ctx.progress.log(
                `${plan.info.label} step ${ck.step} ${task.name}: ` +
                  metrics.map((m) => `${m.metric} ${m.value.toFixed(4)}`).join(", "),
              );
            }
          }
        } finally {
          disposeWeights(w);
        }
      }
      const spike = largestRise(curve);
      if (spike) appendRows(ctx.results, SPIKES, [{ series_id: plan.id, ...spike }]);
    }
    await Deno.writeTextFile(
      `${ctx.outDir}/eval_loss.json`,
      JSON.stringify(summary, null, 1) + "\n",
    );
  },
});
