// GPT-2 as plain tfjs ops: the model every experiment trains, averages and evaluates.
//
// Weights live in a flat record keyed by Hugging Face GPT-2 names (Conv1D layout: a
// projection weight is (in, out) so y = x @ W + b), so a checkpoint written from here
// loads unchanged into transformers' GPT2LMHeadModel and a PyTorch checkpoint loads
// here. Pre-LayerNorm blocks, learned positions, causal attention, GELU (tanh form),
// output head tied to the token embedding.
//
// Three pieces are written by hand with tf.customGrad instead of composed from tfjs
// ops, for the wasm backend's sake:
// - the embedding lookup: tf.gather's gradient needs UnsortedSegmentSum, which wasm
//   lacks; its gradient here is a tf.scatterND (sums repeated tokens) on every backend;
// - the cross-entropy: one softmax serves forward and backward (grad = p - onehot), the
//   target logits are a gather and the one-hot a scatter (no dense one-hot, and
//   float32 tf.oneHot is wrong on wasm);
// - GELU: one fused derivative instead of a tape of eight elementwise ops.
//
// Without a gradient tape (evaluation) each half of each block runs in its own tf.tidy,
// so memory holds one half-layer's activations, not the whole model's; training keeps
// every layer's tensors for the backward pass. The ops are the same either way.
//
// Shape legend (used in the comments below):
//   B  batch (sequences per micro-batch)     T  time (tokens per sequence, <= block_size)
//   C  channels (n_embd)                     nh heads (n_head), hs = C / nh per head
//   V  vocabulary (vocab_size)               N  = B*T rows when time is flattened
import * as tf from "@tensorflow/tfjs-core";
import { fusedHeadLossAvailable, headLoss } from "../backend/head_loss.ts";

export interface GPTConfig {
  n_layer: number;
  n_head: number;
  n_embd: number;
  vocab_size: number;
  block_size: number;
  /** Biases in linear layers and LayerNorms (the paper trains without). */
  bias: boolean;
}

type Preset = Omit<GPTConfig, "vocab_size" | "block_size"> & { block_size: number };

export const PRESETS: Record<string, Preset> = {
  // The paper's GPT-2 sizes (Table 3), trained at sequence length 1024 without biases.
  "gpt2-small": { n_layer: 12, n_head: 12, n_embd: 768, block_size: 1024, bias: false },
  "gpt2-medium": { n_layer: 24, n_head: 16, n_embd: 1024, block_size: 1024, bias: false },
  "gpt2-large": { n_layer: 36, n_head: 20, n_embd: 1280, block_size: 1024, bias: false },
  // CPU-scale models for the default pipelines and tests.
  "cpu-tiny": { n_layer: 2, n_head: 2, n_embd: 32, block_size: 64, bias: false },
  "cpu-micro": { n_layer: 2, n_head: 2, n_embd: 64, block_size: 64, bias: false },
  "cpu-small": { n_layer: 4, n_head: 4, n_embd: 128, block_size: 128, bias: false },
  "cpu-base": { n_layer: 6, n_head: 8, n_embd: 256, block_size: 256, bias: false },
};

export const LAYER_NORM_EPS = 1e-5;
export const INIT_STD = 0.02;

/** The config of a named preset for a tokenizer's vocabulary, with optional overrides. */
export function modelConfig(
  preset: string,
  vocab_size: number,
  overrides: Partial<GPTConfig> = {},
): GPTConfig {
  const base = PRESETS[preset];
  if (!base) {
    throw new Error(
      `unknown model preset "${preset}": expected one of ${Object.keys(PRESETS).join(", ")}`,
    );
  }
  const cfg: GPTConfig = { ...base, vocab_size, ...overrides };
  checkConfig(cfg);
  return cfg;
}

function checkConfig(cfg: GPTConfig): void {
  for (const key of ["n_layer", "n_head", "n_embd", "vocab_size", "block_size"] as const) {
    const v = cfg[key];
    if (!Number.isInteger(v) || v <= 0) {
      throw new Error(`model config: ${key} must be a positive integer, got ${v}`);
    }
  }
  if (cfg.n_embd % cfg.n_head !== 0) {
    throw new Error(
      `model config: n_embd ${cfg.n_embd} is not divisible by n_head ${cfg.n_head}`,
    );
  }
}

/** Weights by Hugging Face GPT-2 name, float32. */
export type Weights = Record<string, tf.Tensor>;

/** Every stored tensor's name and shape, in Hugging Face order (biases included). */
export function parameterShapes(cfg: GPTConfig): [string, number[]][] {
  const C = cfg.n_embd;
  const shapes: [string, number[]][] = [
    ["transformer.wte.weight", [cfg.vocab_size, C]],
    ["transformer.wpe.weight", [cfg.block_size, C]],
  ];
  for (let i = 0; i < cfg.n_layer; i++) {
    const h = `transformer.h.${i}`;
    shapes.push(
      [`${h}.ln_1.weight`, [C]],
      [`${h}.ln_1.bias`, [C]],
      [`${h}.attn.c_attn.weight`, [C, 3 * C]],
      [`${h}.attn.c_attn.bias`, [3 * C]],
      [`${h}.attn.c_proj.weight`, [C, C]],
      [`${h}.attn.c_proj.bias`, [C]],
      [`${h}.ln_2.weight`, [C]],
      [`${h}.ln_2.bias`, [C]],
      [`${h}.mlp.c_fc.weight`, [C, 4 * C]],
      [`${h}.mlp.c_fc.bias`, [4 * C]],
      [`${h}.mlp.c_proj.weight`, [4 * C, C]],
      [`${h}.mlp.c_proj.bias`, [C]],
    );
  }
  shapes.push(["transformer.ln_f.weight", [C]], ["transformer.ln_f.bias", [C]]);
  return shapes;
}

/** Names of every stored tensor (biases included, even with bias=false). */
export function parameterNames(cfg: GPTConfig): string[] {
  return parameterShapes(cfg).map(([name]) => name);
}

/** Weight decay applies: the 2-D matmul weights only (not embeddings, norms, biases). */
export function isDecayed(name: string): boolean {
  return /\.(c_attn|c_proj|c_fc)\.weight$/.test(name);
}

/** Names the optimizer updates: with bias=false the (zero) bias tensors are frozen. */
export function trainableNames(cfg: GPTConfig): string[] {
  return parameterNames(cfg).filter((name) => cfg.bias || !name.endsWith(".bias"));
}

/**
 * GPT-2 initialisation: N(0, 0.02) for embeddings and projections, the residual
 * projections (attn.c_proj, mlp.c_proj) scaled by 1/sqrt(2·n_layer); LayerNorm weight 1,
 * biases 0. The random numbers come from tfjs's seeded JavaScript generator, so the
 * same seed gives the same weights on every backend.
 */
export function initWeights(cfg: GPTConfig, seed: number): Record<string, tf.Variable> {
  checkConfig(cfg);
  const trainable = new Set(trainableNames(cfg));
  const residualStd = INIT_STD / Math.sqrt(2 * cfg.n_layer);
  const weights: Record<string, tf.Variable> = {};
  parameterShapes(cfg).forEach(([name, shape], index) => {
    const initial = tf.tidy(() => {
      if (name.endsWith(".bias")) return tf.zeros(shape);
      if (/\.ln_(1|2|f)\.weight$/.test(name)) return tf.ones(shape);
      const std = /\.c_proj\.weight$/.test(name) ? residualStd : INIT_STD;
      return tf.randomNormal(shape, 0, std, "float32", tensorSeed(seed, index));
    });
    weights[name] = tf.variable(initial, trainable.has(name));
    initial.dispose();
  });
  return weights;
}

/**
 * The generator seed of the index-th initial tensor. Never 0: tfjs reads a seed of 0 as
 * "no seed" and falls back to Math.random, which made seed 0 irreproducible.
 */
export function tensorSeed(seed: number, index: number): number {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new Error(`seed must be a non-negative integer, got ${seed}`);
  }
  return seed * 1009 + index + 1;
}

/** Tensors named in checkpoints of GPT2LMHeadModel that this model does not store. */
function isIgnorableExtra(name: string): boolean {
  // lm_head is tied to wte; attn.bias / attn.masked_bias are HF's causal-mask buffers.
  return name === "lm_head.weight" || /^transformer\.h\.\d+\.attn\.(masked_)?bias$/.test(name);
}

/** Variables from plain arrays (a checkpoint); checks every name and shape first. */
export function weightsFromArrays(
  cfg: GPTConfig,
  arrays: Record<string, { shape: number[]; data: Float32Array }>,
): Record<string, tf.Variable> {
  checkConfig(cfg);
  const expected = parameterShapes(cfg);
  const missing = expected.filter(([name]) => !(name in arrays)).map(([name]) => name);
  if (missing.length > 0) {
    throw new Error(
      `weights: ${missing.length} tensor(s) missing for the model config, e.g. ${
        missing.slice(0, 3).join(", ")
      }`,
    );
  }
  const known = new Set(expected.map(([name]) => name));
  const unknown = Object.keys(arrays).filter((n) => !known.has(n) && !isIgnorableExtra(n));
  if (unknown.length > 0) {
    throw new Error(
      `weights: unexpected tensor(s) ${
        unknown.slice(0, 3).join(", ")
      } (not in a ${cfg.n_layer}-layer GPT-2)`,
    );
  }
  for (const [name, shape] of expected) {
    const got = arrays[name];
    const size = shape.reduce((a, b) => a * b, 1);
    if (got.shape.join(",") !== shape.join(",") || got.data.length !== size) {
      throw new Error(
        `weights: ${name} has shape [${got.shape}] (${got.data.length} values), expected [${shape}]`,
      );
    }
  }
  const trainable = new Set(trainableNames(cfg));
  const weights: Record<string, tf.Variable> = {};
  for (const [name, shape] of expected) {
    const initial = tf.tensor(arrays[name].data, shape, "float32");
    weights[name] = tf.variable(initial, trainable.has(name));
    initial.dispose();
  }
  return weights;
}

/** Copies every tensor out (with `await data()`, which also works on webgpu). */
export async function exportWeights(
  w: Weights,
): Promise<Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }>> {
  const out: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const [name, t] of Object.entries(w)) {
    const values = await t.data();
    const data = values instanceof Float32Array
      ? values
      : Float32Array.from(values as ArrayLike<number>);
    out[name] = { dtype: "F32", shape: [...t.shape], data };
  }
  return out;
}

// ---------------------------------------------------------------------------------
// Building blocks

/** tf.customGrad passes the inputs, then a function that saves tensors for backward. */
type CustomGradArgs = (tf.Tensor | tf.GradSaveFunc)[];

function param(w: Weights, name: string): tf.Tensor {
  const t = w[name];
  if (!t) throw new Error(`weights: tensor ${name} is missing`);
  return t;
}

/** Token embedding lookup whose gradient is a scatter-add (wasm has no gather grad). */
function embed(wte: tf.Tensor2D, idxFlat: tf.Tensor1D): tf.Tensor2D {
  const V = wte.shape[0];
  const lookup = tf.customGrad((...args: CustomGradArgs) => {
    const [table, save] = args as [tf.Tensor, tf.GradSaveFunc];
    save([idxFlat]); // the ids must outlive the forward pass's scope for the backward
    return {
      value: tf.gather(table, idxFlat), // (N, C)
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        tf.scatterND(tf.expandDims(saved[0], 1), dy, [V, dy.shape[1]!]), // (V, C)
    };
  });
  return lookup(wte) as tf.Tensor2D;
}

/** y = x @ W (+ b): x (N, in), W (in, out) -> (N, out). */
function linear(cfg: GPTConfig, w: Weights, prefix: string, x: tf.Tensor2D): tf.Tensor2D {
  const y: tf.Tensor2D = tf.matMul(x, param(w, `${prefix}.weight`) as tf.Tensor2D);
  return cfg.bias ? tf.add(y, param(w, `${prefix}.bias`)) as tf.Tensor2D : y;
}

/** LayerNorm over the last axis: x (N, C) -> (N, C). */
function layerNorm(cfg: GPTConfig, w: Weights, prefix: string, x: tf.Tensor2D): tf.Tensor2D {
  const { mean, variance } = tf.moments(x, -1, true); // (N, 1) each
  const xhat = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, LAYER_NORM_EPS)));
  const scaled = tf.mul(xhat, param(w, `${prefix}.weight`));
  return (cfg.bias ? tf.add(scaled, param(w, `${prefix}.bias`)) : scaled) as tf.Tensor2D;
}

const GELU_K = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

/**
 * GELU, tanh approximation ("gelu_new"), with its derivative written out. Computed as
 * x * sigmoid(2u), which equals x/2 (1 + tanh u): wasm's Sigmoid is ~6x faster than its
 * Tanh.
 */
const gelu = tf.customGrad((...args: CustomGradArgs) => {
  const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
  // 2u = 2k (x + a x^3) = x (2k + 2ka x^2); s = sigmoid(2u); y = x s
  const x2 = tf.square(x);
  const s = tf.sigmoid(tf.mul(x, tf.add(tf.mul(x2, 2 * GELU_K * GELU_A), 2 * GELU_K)));
  save([x, s]);
  return {
    value: tf.mul(x, s),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [xs, ss] = saved;
      // dy/dx = s + x s (1 - s) 2k (1 + 3a x^2)
      const du = tf.add(tf.mul(tf.square(xs), 6 * GELU_K * GELU_A), 2 * GELU_K);
      const slope = tf.mul(tf.mul(ss, tf.sub(1, ss)), tf.mul(xs, du));
      return tf.mul(dy, tf.add(ss, slope));
    },
  };
});

/** Additive causal mask (T, T): 0 where key j <= query i, -1e9 above the diagonal. */
function causalMask(T: number): tf.Tensor2D {
  const mask = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) mask[i * T + j] = -1e9;
  return tf.tensor2d(mask, [T, T]);
}

/** Multi-head causal self-attention: x (B*T, C) -> (B*T, C). */
function attention(
  cfg: GPTConfig,
  w: Weights,
  prefix: string,
  x: tf.Tensor2D,
  B: number,
  T: number,
  mask: tf.Tensor2D,
): tf.Tensor2D {
  const C = cfg.n_embd, nh = cfg.n_head, hs = C / nh;
  const qkv = linear(cfg, w, `${prefix}.c_attn`, x); // (B*T, 3C)
  // (B*T, 3C) -> (3, B, nh, T, hs): q, k, v each as (B*nh, T, hs)
  const heads = tf.transpose(tf.reshape(qkv, [B, T, 3, nh, hs]), [2, 0, 3, 1, 4]);
  const [q, k, v] = tf.unstack(tf.reshape(heads, [3, B * nh, T, hs])) as tf.Tensor3D[];
  const qScaled = tf.mul(q, 1 / Math.sqrt(hs));
  const scores = tf.add(tf.matMul(qScaled, k, false, true), mask); // (B*nh, T, T)
  const att = tf.softmax(scores, -1);
  const y = tf.matMul(att, v); // (B*nh, T, hs)
  // (B, nh, T, hs) -> (B, T, nh, hs) -> (B*T, C)
  const merged = tf.reshape(tf.transpose(tf.reshape(y, [B, nh, T, hs]), [0, 2, 1, 3]), [B * T, C]);
  return linear(cfg, w, `${prefix}.c_proj`, merged as tf.Tensor2D);
}

/** The attention half of block i, residual included: x (B*T, C) -> x + attn(ln_1(x)). */
function attentionHalf(
  cfg: GPTConfig,
  w: Weights,
  i: number,
  x: tf.Tensor2D,
  B: number,
  T: number,
  mask: tf.Tensor2D,
): tf.Tensor2D {
  const h = `transformer.h.${i}`;
  const attn = attention(cfg, w, `${h}.attn`, layerNorm(cfg, w, `${h}.ln_1`, x), B, T, mask);
  return tf.add(x, attn); // (B*T, C)
}

/** The MLP half of block i, residual included: x (B*T, C) -> x + mlp(ln_2(x)). */
function mlpHalf(cfg: GPTConfig, w: Weights, i: number, x: tf.Tensor2D): tf.Tensor2D {
  const h = `transformer.h.${i}`;
  const fc = gelu(linear(cfg, w, `${h}.mlp.c_fc`, layerNorm(cfg, w, `${h}.ln_2`, x))); // (B*T, 4C)
  return tf.add(x, linear(cfg, w, `${h}.mlp.c_proj`, fc as tf.Tensor2D)); // (B*T, C)
}

export interface HiddenOptions {
  /**
   * Run each half of each block (attention, MLP) in its own tf.tidy, so its
   * intermediates (the attention scores, the MLP's 4C-wide activations) are freed
   * before the next: memory then holds one half-layer's activations instead of every
   * layer's. The same ops in the same order, so the same numbers. Default: on when no
   * gradient is being recorded; a gradient needs every layer's saved tensors, so
   * training keeps the one scope of its caller.
   */
  freeEachLayer?: boolean;
}

/**
 * The final hidden states after ln_f: (B, T) token ids -> (B*T, C). Call inside tf.tidy
 * (or a gradient function).
 */
export function hiddenStates(
  cfg: GPTConfig,
  w: Weights,
  idx: tf.Tensor2D,
  opts: HiddenOptions = {},
): tf.Tensor2D {
  const [B, T] = idx.shape;
  if (T > cfg.block_size) {
    throw new Error(`sequence length ${T} exceeds the model's block_size ${cfg.block_size}`);
  }
  const freeEachLayer = opts.freeEachLayer ?? !tf.engine().isTapeOn();
  const C = cfg.n_embd;
  const idxFlat = tf.reshape(tf.cast(idx, "int32"), [B * T]) as tf.Tensor1D;
  const tok = embed(param(w, "transformer.wte.weight") as tf.Tensor2D, idxFlat); // (B*T, C)
  const pos = tf.slice(param(w, "transformer.wpe.weight"), [0, 0], [T, C]); // (T, C)
  let x = tf.reshape(tf.add(tf.reshape(tok, [B, T, C]), pos), [B * T, C]) as tf.Tensor2D;
  const mask = causalMask(T);
  for (let i = 0; i < cfg.n_layer; i++) {
    const halves = [
      (input: tf.Tensor2D) => attentionHalf(cfg, w, i, input, B, T, mask),
      (input: tf.Tensor2D) => mlpHalf(cfg, w, i, input),
    ];
    for (const half of halves) {
      if (!freeEachLayer) {
        x = half(x);
        continue;
      }
      const input = x;
      x = tf.tidy(() => half(input)); // (B*T, C); the half's intermediates freed
      input.dispose();
    }
  }
  return layerNorm(cfg, w, "transformer.ln_f", x);
}

/** Logits of the tied head: h (N, C) @ wte^T -> (N, V). Call inside tf.tidy. */
export function headLogits(w: Weights, h: tf.Tensor2D): tf.Tensor2D {
  return tf.matMul(h, param(w, "transformer.wte.weight") as tf.Tensor2D, false, true);
}

/**
 * (B, T) int32 token ids -> logits (B, T, V). Call inside tf.tidy. The whole (B*T, V)
 * logits at once: evaluation scores the head a chunk of rows at a time instead
 * (lm/eval/loss.ts).
 */
export function forward(
  cfg: GPTConfig,
  w: Weights,
  idx: tf.Tensor2D,
  opts: HiddenOptions = {},
): tf.Tensor3D {
  const [B, T] = idx.shape;
  return tf.reshape(headLogits(w, hiddenStates(cfg, w, idx, opts)), [B, T, cfg.vocab_size]);
}

/**
 * Cross-entropy of each row of logits (N, V) against targets (N) int32 -> (N).
 * Forward: one softmax p = softmax(z), kept for the backward; the loss of row i is
 * logsumexp(z_i) - z_i[t_i] = max(z_i) - z_i[t_i] - log(max(p_i)), because softmax at a
 * row's maximum is exp(max - logsumexp) (and max(p_i) >= 1/V never underflows). This
 * costs one softmax kernel and two max-reductions instead of logSoftmax's six passes.
 * Backward: dy * (p - onehot(t)), with the one-hot part as a scatter of dy into the
 * N target positions (no dense one-hot tensor).
 */
function crossEntropyRows(logits: tf.Tensor2D, targets: tf.Tensor1D, V: number): tf.Tensor1D {
  const N = logits.shape[0];
  // Flat index i*V + t_i of every row's target logit: (N) int32.
  const targetIndex = tf.add(tf.mul(tf.range(0, N, 1, "int32"), tf.scalar(V, "int32")), targets);
  const ce = tf.customGrad((...args: CustomGradArgs) => {
    const [z, save] = args as [tf.Tensor2D, tf.GradSaveFunc];
    const p = tf.softmax(z, -1); // (N, V)
    const zTarget = tf.gather(tf.reshape(z, [N * V]), targetIndex); // (N)
    save([p, targetIndex]);
    return {
      value: tf.sub(tf.sub(tf.max(z, -1), zTarget), tf.log(tf.max(p, -1))),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [ps, index] = saved;
        const hits = tf.scatterND(tf.expandDims(index, 1), dy, [N * V]); // dy at targets
        return tf.sub(tf.mul(ps, tf.expandDims(dy, 1)), tf.reshape(hits, [N, V]));
      },
    };
  });
  return ce(logits) as tf.Tensor1D;
}

/** Cross-entropy at every position: (B, T) ids and targets -> (B, T). Call inside tf.tidy. */
export function tokenLosses(
  cfg: GPTConfig,
  w: Weights,
  idx: tf.Tensor2D,
  targets: tf.Tensor2D,
): tf.Tensor2D {
  const [B, T] = idx.shape;
  if (targets.shape[0] !== B || targets.shape[1] !== T) {
    throw new Error(`targets have shape [${targets.shape}], expected [${B},${T}] like the inputs`);
  }
  const flatTargets = tf.reshape(tf.cast(targets, "int32"), [B * T]) as tf.Tensor1D;
  if (fusedHeadLossAvailable()) {
    // wasm with a native BLAS: head and loss as one op, fewer passes over the logits.
    const wte = param(w, "transformer.wte.weight") as tf.Tensor2D;
    return tf.reshape(headLoss(hiddenStates(cfg, w, idx), wte, flatTargets), [B, T]);
  }
  const logits = headLogits(w, hiddenStates(cfg, w, idx)); // (B*T, V)
  return tf.reshape(crossEntropyRows(logits, flatTargets, cfg.vocab_size), [B, T]);
}

/** Mean cross-entropy over all positions. Call inside tf.tidy or tf.variableGrads. */
export function meanLoss(
  cfg: GPTConfig,
  w: Weights,
  idx: tf.Tensor2D,
  targets: tf.Tensor2D,
): tf.Scalar {
  return tf.mean(tokenLosses(cfg, w, idx, targets));
}
