// Forward-only evaluation of a GPT on a fixed, ordered set of held-out windows.
//
// One forward pass per batch gives, for every position, the cross-entropy of the next
// token and the argmax prediction (so held-out loss and checkpoint diversity cost one
// pass). Losses are summed on the host in float64, so the mean over many windows does
// not drift with float32 accumulation. Every batch runs inside tf.tidy (each layer in
// its own, the output head a chunk of positions at a time) and the results are copied
// out with `await data()` (which also works on webgpu), so GPU/wasm memory holds one
// layer's activations and one chunk's logits, however many checkpoints are evaluated.
import * as tf from "@tensorflow/tfjs-core";
import { rowScores } from "../backend/head_loss.ts";
import { type GPTConfig, headLogits, hiddenStates, type Weights } from "../model/gpt.ts";
import { isNeox, type ModelConfig, modelWeights, readCheckpointF32 } from "../model/model.ts";
import { neoxConfigFromJson, neoxHeadLogits, neoxHidden } from "../model/neox.ts";
import { evalWindows, openTokens, readMeta, tokenFileName } from "../data/windows.ts";
import type { SeriesInfo } from "../checkpoints/series.ts";

/** Per-position scores of one batch, row-major (B, T). */
export interface BatchScores {
  /** Cross-entropy −log p(target) at each position. */
  nll: Float32Array;
  /** Argmax of the logits at each position (empty when not asked for). */
  argmax: Int32Array;
}

/** Logit values per chunk of the output head: 16M floats (64 MB) at a time. */
const HEAD_CHUNK_VALUES = 1 << 24;

export interface ScoreOptions {
  /**
   * Rows (positions) of logits per chunk of the output head; default 64 MB of logits.
   */
  headRows?: number;
  /** Compute the argmax predictions (default true); without, `argmax` is empty. */
  argmax?: boolean;
}

/**
 * Score a batch: `x`, `y` are (B, T) token ids row-major. Returns per-position
 * cross-entropy of `y` and the argmax prediction. Each half-layer runs in its own tidy
 * scope and the output head a chunk of rows at a time, each chunk's logits freed
 * before the next: 2048 tokens of a 50257-word vocabulary are 412 MB of logits, which
 * with the softmax beside them and every layer's activations overran the wasm
 * backend's 4 GB (gpt2-small at 4 x 512: about 6.5 GB of tensors at the peak, now 0.8).
 */
export async function scoreBatch(
  cfg: ModelConfig,
  w: Weights,
  x: Int32Array,
  y: Int32Array,
  B: number,
  T: number,
  opts: ScoreOptions = {},
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
  const N = B * T, V = cfg.vocab_size;
  const C = isNeox(cfg) ? cfg.hidden_size : cfg.n_embd;
  const rows = opts.headRows ?? Math.max(1, Math.floor(HEAD_CHUNK_VALUES / V));
  if (!Number.isInteger(rows) || rows < 1) {
    throw new Error(`scoreBatch: head rows per chunk must be a positive integer, got ${rows}`);
  }
  const head = (part: tf.Tensor2D) => isNeox(cfg) ? neoxHeadLogits(w, part) : headLogits(w, part);
  const h = tf.tidy(() => {
    const idx = tf.tensor2d(x, [B, T], "int32");
    return isNeox(cfg) ? neoxHidden(cfg, w, idx) : hiddenStates(cfg, w, idx); // (N, C)
  });
  const withArgmax = opts.argmax ?? true;
  const nll = new Float32Array(N), argmax = new Int32Array(withArgmax ? N : 0);
  try {
    for (let start = 0; start < N; start += rows) {
      const n = Math.min(rows, N - start);
      const targets = y.subarray(start, start + n);
      const [nllT, argmaxT] = tf.tidy(() => {
        const logits = head(tf.slice(h, [start, 0], [n, C])); // (n, V)
        return scoreLogits(logits, targets, withArgmax);
      });
      try {
        nll.set((await nllT.data()) as Float32Array, start);
        if (withArgmax) argmax.set((await argmaxT.data()) as Int32Array, start);
      } finally {
        nllT.dispose();
        argmaxT.dispose();
      }
    }
  } finally {
    h.dispose();
  }
  return { nll, argmax };
}

/** Cross-entropy against targets (n) and argmax of logits (n, V) -> (n), (n). In tf.tidy. */
function scoreLogits(
  logits: tf.Tensor2D,
  targets: Int32Array,
  withArgmax: boolean,
): [tf.Tensor1D, tf.Tensor1D] {
  const rows = rowScores(logits, targets, withArgmax); // wasm: one softmax, one pass
  if (rows) return [tf.tensor1d(rows.nll), tf.tensor1d(rows.argmax, "int32")];
  const [n, V] = logits.shape;
  const lse = tf.logSumExp(logits, 1); // (n)
  // Target logit: gather from the flat logits at i*V + t_i (no one-hot, no (n, V) mask).
  const flatIndex = new Int32Array(n);
  for (let i = 0; i < n; i++) flatIndex[i] = i * V + targets[i];
  const target = tf.gather(tf.reshape(logits, [n * V]), tf.tensor1d(flatIndex, "int32")); // (n)
  const argmax = withArgmax ? tf.argMax(logits, 1) : tf.tensor1d([], "int32");
  return [tf.sub(lse, target) as tf.Tensor1D, argmax as tf.Tensor1D];
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
    const scores = await scoreBatch(cfg, w, x, y, B, T, { argmax: predictions !== null });
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
