// Forward-only evaluation of a GPT on a fixed, ordered set of held-out windows.
//
// One forward pass per batch gives, for every position, the cross-entropy of the next
// token and the argmax prediction (so held-out loss and checkpoint diversity cost one
// pass). Losses are summed on the host in float64, so the mean over many windows does
// not drift with float32 accumulation. Every batch runs inside tf.tidy and the results
// are copied out with `await data()` (which also works on webgpu), so GPU/wasm memory
// stays flat however many checkpoints are evaluated.
import * as tf from "@tensorflow/tfjs-core";
import { rowScores } from "../backend/head_loss.ts";
import type { GPTConfig, Weights } from "../model/gpt.ts";
import {
  isNeox,
  type ModelConfig,
  modelForward,
  modelWeights,
  readCheckpointF32,
} from "../model/model.ts";
import { neoxConfigFromJson, neoxScoreBatch } from "../model/neox.ts";
import { evalWindows, openTokens, readMeta, tokenFileName } from "../data/windows.ts";
import type { SeriesInfo } from "../checkpoints/series.ts";

/** Per-position scores of one batch, row-major (B, T). */
export interface BatchScores {
  /** Cross-entropy −log p(target) at each position. */
  nll: Float32Array;
  /** Argmax of the logits at each position. */
  argmax: Int32Array;
}

/**
 * Score a batch: `x`, `y` are (B, T) token ids row-major. Returns per-position
 * cross-entropy of `y` and the argmax prediction.
 */
export async function scoreBatch(
  cfg: ModelConfig,
  w: Weights,
  x: Int32Array,
  y: Int32Array,
  B: number,
  T: number,
): Promise<BatchScores> {
  if (x.length !== B * T || y.length !== B * T) {
    throw new Error(
      `scoreBatch: expected ${B}x${T} = ${B * T} tokens, got x ${x.length}, y ${y.length}`,
    );
  }
  if (T > cfg.block_size) {
    throw new Error(
      `scoreBatch: sequence length ${T} exceeds the model's block_size ${cfg.block_size}`,
    );
  }
  if (isNeox(cfg)) return await neoxScoreBatch(cfg, w, x, y, B, T); // head in chunks
  const V = cfg.vocab_size;
  const [nllT, argmaxT] = tf.tidy(() => {
    const idx = tf.tensor2d(x, [B, T], "int32");
    const logits = tf.reshape(modelForward(cfg, w, idx), [B * T, V]); // (N, V)
    const rows = rowScores(logits as tf.Tensor2D, y); // wasm: one softmax, one pass
    if (rows) return [tf.tensor1d(rows.nll), tf.tensor1d(rows.argmax, "int32")];
    const lse = tf.logSumExp(logits, 1); // (N)
    // Target logit: gather from the flat logits at n*V + y[n] (no one-hot, no (N, V) mask).
    const flatIndex = new Int32Array(B * T);
    for (let n = 0; n < B * T; n++) flatIndex[n] = n * V + y[n];
    const target = tf.gather(tf.reshape(logits, [B * T * V]), tf.tensor1d(flatIndex, "int32")); // (N)
    return [tf.sub(lse, target), tf.argMax(logits, 1)]; // (N), (N)
  });
  try {
    const nll = (await nllT.data()) as Float32Array;
    const argmax = (await argmaxT.data()) as Int32Array;
    return { nll: Float32Array.from(nll), argmax: Int32Array.from(argmax) };
  } finally {
    nllT.dispose();
    argmaxT.dispose();
  }
}

/** A fixed set of `count` windows of `seqLen` tokens: inputs x and next-token targets y. */
export interface Windows {
  x: Int32Array; // (count, seqLen)
  y: Int32Array; // (count, seqLen)
  count: number;
  seqLen: number;
}

export interface WindowsResult {
  /** Sum of per-token cross-entropy over all positions (float64). */
  sumLoss: number;
  /** Number of positions scored (count × seqLen). */
  nTokens: number;
  /** sumLoss / nTokens. */
  meanLoss: number;
  /** Argmax prediction per position, (count, seqLen), when asked for. */
  predictions: Int32Array | null;
  /** Sum of cross-entropy over each window's positions (float64), when asked for. */
  windowSums: Float64Array | null;
}

export interface EvaluateOptions {
  /** Windows per forward pass. */
  batchSize: number;
  /** Keep the argmax predictions (for diversity). */
  keepPredictions?: boolean;
  /** Keep each window's summed loss (for paired intervals over windows). */
  keepWindowSums?: boolean;
  /** Called after each batch with windows done so far. */
  onBatch?: (windowsDone: number) => void;
  /** Stop early (throws) when aborted. */
  signal?: AbortSignal;
}

/** Mean loss of a model over a window set, batched and forward-only. */
export async function evaluateWindows(
  cfg: ModelConfig,
  w: Weights,
  windows: Windows,
  opts: EvaluateOptions,
): Promise<WindowsResult> {
  const { count, seqLen: T } = windows;
  if (count <= 0) throw new Error("evaluateWindows: the window set is empty");
  if (!(opts.batchSize >= 1)) {
    throw new Error(`evaluateWindows: batch size must be >= 1, got ${opts.batchSize}`);
  }
  const predictions = opts.keepPredictions ? new Int32Array(count * T) : null;
  const windowSums = opts.keepWindowSums ? new Float64Array(count) : null;
  let sumLoss = 0;
  for (let start = 0; start < count; start += opts.batchSize) {
    if (opts.signal?.aborted) throw new Error("evaluation cancelled");
    const B = Math.min(opts.batchSize, count - start);
    const x = windows.x.subarray(start * T, (start + B) * T);
    const y = windows.y.subarray(start * T, (start + B) * T);
    const scores = await scoreBatch(cfg, w, x, y, B, T);
    for (let b = 0; b < B; b++) {
      let windowSum = 0;
      for (let t = 0; t < T; t++) windowSum += scores.nll[b * T + t];
      sumLoss += windowSum;
      if (windowSums) windowSums[start + b] = windowSum;
    }
    predictions?.set(scores.argmax, start * T);
    opts.onBatch?.(start + B);
  }
  const nTokens = count * T;
  return { sumLoss, nTokens, meanLoss: sumLoss / nTokens, predictions, windowSums };
}

/** Token-weighted mean of per-domain results (the 'all' domain). */
export function poolResults(parts: { sumLoss: number; nTokens: number }[]): {
  sumLoss: number;
  nTokens: number;
  meanLoss: number;
} {
  let sumLoss = 0;
  let nTokens = 0;
  for (const p of parts) {
    sumLoss += p.sumLoss;
    nTokens += p.nTokens;
  }
  return { sumLoss, nTokens, meanLoss: nTokens > 0 ? sumLoss / nTokens : NaN };
}

// ---------------------------------------------------------------------------------------
// Held-out data and checkpoints, as the evaluate and lmc steps read them

/** One held-out domain's fixed windows. */
export interface HeldOutDomain {
  domain: string;
  windows: Windows;
}

/**
 * The fixed evaluation windows of each held-out domain of a tokenize output
 * (`val-<domain>.bin` + meta.json): the same windows for every checkpoint.
 */
export async function loadHeldOut(
  tokensDir: string,
  seqLen: number,
  maxWindows: number,
  domains?: string[],
): Promise<HeldOutDomain[]> {
  const meta = await readMeta(tokensDir);
  const wanted = domains ?? meta.domains;
  if (wanted.length === 0) {
    throw new Error(`evaluate: ${tokensDir}/meta.json lists no held-out domains`);
  }
  const out: HeldOutDomain[] = [];
  for (const domain of wanted) {
    if (!meta.domains.includes(domain)) {
      throw new Error(
        `evaluate: held-out domain '${domain}' is not in ${tokensDir}/meta.json (domains: ${
          meta.domains.join(", ")
        })`,
      );
    }
    const file = await openTokens(`${tokensDir}/${tokenFileName(`val-${domain}`)}`, meta.dtype);
    try {
      const w = evalWindows(file, seqLen, maxWindows);
      out.push({ domain, windows: { x: w.x, y: w.y, count: w.count, seqLen } });
    } finally {
      file.close();
    }
  }
  return out;
}

/** The model config of a series of either family: GPT-NeoX when model.arch says so, else GPT-2. */
export function modelConfigFromSeries(info: SeriesInfo, where: string): ModelConfig {
  const m = info.model ?? {};
  if (m.arch === "gpt_neox") return neoxConfigFromJson(m, `${where}: series.json model`);
  return configFromSeries(info, where);
}

/** The GPT-2 config stored in a series.json, checked field by field. */
export function configFromSeries(info: SeriesInfo, where: string): GPTConfig {
  const m = info.model ?? {};
  const int = (name: keyof GPTConfig) => {
    const v = m[name];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new Error(
        `${where}: series.json model.${name} must be a positive integer, got ${JSON.stringify(v)}`,
      );
    }
    return v;
  };
  return {
    n_layer: int("n_layer"),
    n_head: int("n_head"),
    n_embd: int("n_embd"),
    vocab_size: int("vocab_size"),
    block_size: int("block_size"),
    bias: m.bias === true,
  };
}

/** Load one checkpoint file as model weights (tf.Variables: dispose them when done). */
export async function loadCheckpoint(
  cfg: ModelConfig,
  path: string,
): Promise<Record<string, tf.Variable>> {
  return modelWeights(cfg, await readCheckpointF32(path));
}

/** Dispose every tensor of a weight set. */
export function disposeWeights(w: Record<string, tf.Tensor>): void {
  for (const t of Object.values(w)) t.dispose();
}
