// GPT-NeoX (the Pythia models) as plain tfjs ops, forward only: the model behind
// EleutherAI's public checkpoints that the paper averages with LAWA.
//
// It follows transformers' modeling_gpt_neox.py so that a Hugging Face checkpoint gives
// the same numbers here: the fused query_key_value projection laid out per head as
// [n_heads, 3, head_size]; rotary position embeddings (rotate_half form, base
// `rotary_emb_base`) on the first `rotary_pct` of each head's dimensions; attention
// scaled by 1/sqrt(head_size) under a causal mask; LayerNorm with bias; exact (erf)
// GELU; a parallel residual x + attn(ln1(x)) + mlp(ln2(x)) when `use_parallel_residual`
// (Pythia), else the sequential one; and an output head `embed_out` untied from
// `embed_in`. Linear weights are torch's (out, in). Weights are a flat record keyed by
// Hugging Face names; the buffers old Pythia files carry (attention.bias,
// attention.masked_bias, attention.rotary_emb.inv_freq) are recognised and ignored.
//
// Shape legend: B batch, T time (tokens), C channels (hidden_size), nh heads, hs = C / nh
// per head, R = rotary_pct * hs rotated dims, F intermediate_size, V vocabulary.
import * as tf from "@tensorflow/tfjs-core";

export interface NeoxConfig {
  arch: "gpt_neox";
  vocab_size: number;
  hidden_size: number;
  num_attention_heads: number;
  num_hidden_layers: number;
  intermediate_size: number;
  max_position_embeddings: number;
  rotary_pct: number;
  rotary_emb_base: number;
  layer_norm_eps: number;
  use_parallel_residual: boolean;
  /** The longest window the model takes (= max_position_embeddings). */
  block_size: number;
}

/** The model config from a Hugging Face config.json of model_type gpt_neox. */
export function neoxConfigFromJson(json: Record<string, unknown>, where: string): NeoxConfig {
  const int = (key: string, fallback?: number): number => {
    const v = json[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new Error(`${where}: ${key} must be a positive integer, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const num = (key: string, fallback: number): number => {
    const v = json[key] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new Error(`${where}: ${key} must be a number, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const act = json.hidden_act ?? "gelu";
  if (act !== "gelu") {
    throw new Error(`${where}: hidden_act ${JSON.stringify(act)} is not supported (only "gelu")`);
  }
  if (json.tie_word_embeddings === true) {
    throw new Error(`${where}: tied embeddings are not GPT-NeoX's layout (embed_out is separate)`);
  }
  const cfg: NeoxConfig = {
    arch: "gpt_neox",
    vocab_size: int("vocab_size"),
    hidden_size: int("hidden_size"),
    num_attention_heads: int("num_attention_heads"),
    num_hidden_layers: int("num_hidden_layers"),
    intermediate_size: int("intermediate_size", 4 * int("hidden_size")),
    max_position_embeddings: int("max_position_embeddings"),
    rotary_pct: num("rotary_pct", 0.25),
    rotary_emb_base: num("rotary_emb_base", 10000),
    layer_norm_eps: num("layer_norm_eps", 1e-5),
    use_parallel_residual: json.use_parallel_residual !== false,
    block_size: int("max_position_embeddings"),
  };
  if (cfg.hidden_size % cfg.num_attention_heads !== 0) {
    throw new Error(
      `${where}: hidden_size ${cfg.hidden_size} is not divisible by num_attention_heads ${cfg.num_attention_heads}`,
    );
  }
  if (!(cfg.rotary_pct > 0 && cfg.rotary_pct <= 1) || rotaryDims(cfg) % 2 !== 0) {
    throw new Error(`${where}: rotary_pct ${cfg.rotary_pct} must give an even number of dims`);
  }
  return cfg;
}

function headSize(cfg: NeoxConfig): number {
  return cfg.hidden_size / cfg.num_attention_heads;
}

/** Dimensions of each head that get rotary embeddings (HF: int(head_size * rotary_pct)). */
export function rotaryDims(cfg: NeoxConfig): number {
  return Math.floor(headSize(cfg) * cfg.rotary_pct);
}

/** Every parameter's Hugging Face name and shape. */
export function neoxParameterShapes(cfg: NeoxConfig): [string, number[]][] {
  const C = cfg.hidden_size, F = cfg.intermediate_size;
  const shapes: [string, number[]][] = [["gpt_neox.embed_in.weight", [cfg.vocab_size, C]]];
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const p = `gpt_neox.layers.${i}`;
    shapes.push(
      [`${p}.input_layernorm.weight`, [C]],
      [`${p}.input_layernorm.bias`, [C]],
      [`${p}.post_attention_layernorm.weight`, [C]],
      [`${p}.post_attention_layernorm.bias`, [C]],
      [`${p}.attention.query_key_value.weight`, [3 * C, C]],
      [`${p}.attention.query_key_value.bias`, [3 * C]],
      [`${p}.attention.dense.weight`, [C, C]],
      [`${p}.attention.dense.bias`, [C]],
      [`${p}.mlp.dense_h_to_4h.weight`, [F, C]],
      [`${p}.mlp.dense_h_to_4h.bias`, [F]],
      [`${p}.mlp.dense_4h_to_h.weight`, [C, F]],
      [`${p}.mlp.dense_4h_to_h.bias`, [C]],
    );
  }
  shapes.push(
    ["gpt_neox.final_layer_norm.weight", [C]],
    ["gpt_neox.final_layer_norm.bias", [C]],
    ["embed_out.weight", [cfg.vocab_size, C]],
  );
  return shapes;
}

/** Buffers of old Pythia checkpoints that are not parameters (masks, rotary table). */
export function isNeoxBuffer(name: string): boolean {
  return /^gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)$/.test(name);
}

/** Tensors (eval only) from plain arrays; every name and shape checked first. */
export function neoxWeightsFromArrays(
  cfg: NeoxConfig,
  arrays: Record<string, { shape: number[]; data: Float32Array }>,
): Record<string, tf.Variable> {
  const expected = neoxParameterShapes(cfg);
  const missing = expected.filter(([name]) => !(name in arrays)).map(([name]) => name);
  if (missing.length > 0) {
    throw new Error(
      `weights: ${missing.length} GPT-NeoX tensor(s) missing, e.g. ${
        missing.slice(0, 3).join(", ")
      }`,
    );
  }
  const known = new Set(expected.map(([name]) => name));
  const unknown = Object.keys(arrays).filter((n) => !known.has(n) && !isNeoxBuffer(n));
  if (unknown.length > 0) {
    throw new Error(
      `weights: unexpected tensor(s) ${
        unknown.slice(0, 3).join(", ")
      } (not in a ${cfg.num_hidden_layers}-layer GPT-NeoX)`,
    );
  }
  const weights: Record<string, tf.Variable> = {};
  for (const [name, shape] of expected) {
    const got = arrays[name];
    if (got.shape.join(",") !== shape.join(",")) {
      throw new Error(`weights: ${name} has shape [${got.shape}], expected [${shape}]`);
    }
    const t = tf.tensor(got.data, shape, "float32");
    weights[name] = tf.variable(t, false);
    t.dispose();
  }
  return weights;
}

// ---------------------------------------------------------------------------------
// Forward

type Weights = Record<string, tf.Tensor>;

function param(w: Weights, name: string): tf.Tensor {
  const t = w[name];
  if (!t) throw new Error(`weights: tensor ${name} is missing`);
  return t;
}

/** torch Linear: x (N, in) @ W(out, in)^T + b. */
function linear(w: Weights, prefix: string, x: tf.Tensor2D): tf.Tensor2D {
  const y = tf.matMul(x, param(w, `${prefix}.weight`) as tf.Tensor2D, false, true);
  return tf.add(y, param(w, `${prefix}.bias`));
}

function layerNorm(w: Weights, prefix: string, x: tf.Tensor2D, eps: number): tf.Tensor2D {
  const { mean, variance } = tf.moments(x, -1, true);
  const xhat = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
  return tf.add(tf.mul(xhat, param(w, `${prefix}.weight`)), param(w, `${prefix}.bias`));
}

/** Exact GELU: x/2 (1 + erf(x / sqrt 2)). */
function gelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

/** cos and sin tables (T, rot) of the rotary embedding, computed in float64. */
function rotaryTables(cfg: NeoxConfig, T: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const rot = rotaryDims(cfg);
  const half = rot / 2;
  const cos = new Float32Array(T * rot), sin = new Float32Array(T * rot);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < half; j++) {
      const angle = t / cfg.rotary_emb_base ** ((2 * j) / rot);
      for (const col of [j, j + half]) {
        cos[t * rot + col] = Math.cos(angle);
        sin[t * rot + col] = Math.sin(angle);
      }
    }
  }
  return { cos: tf.tensor2d(cos, [T, rot]), sin: tf.tensor2d(sin, [T, rot]) };
}

/** Rotary embedding on the first `rot` dims of x (BH, T, hs): x·cos + rotate_half(x)·sin. */
function applyRotary(
  x: tf.Tensor3D,
  rot: number,
  tables: { cos: tf.Tensor2D; sin: tf.Tensor2D },
): tf.Tensor3D {
  const [BH, T, hs] = x.shape;
  const half = rot / 2;
  const x1 = tf.slice(x, [0, 0, 0], [BH, T, half]);
  const x2 = tf.slice(x, [0, 0, half], [BH, T, half]);
  const xRot = tf.slice(x, [0, 0, 0], [BH, T, rot]);
  const rotated = tf.concat([tf.neg(x2), x1], -1);
  const embedded = tf.add(tf.mul(xRot, tables.cos), tf.mul(rotated, tables.sin));
  if (rot === hs) return embedded as tf.Tensor3D;
  return tf.concat([embedded, tf.slice(x, [0, 0, rot], [BH, T, hs - rot])], -1) as tf.Tensor3D;
}

function causalMask(T: number): tf.Tensor2D {
  const mask = new Float32Array(T * T);
  for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) mask[i * T + j] = -1e9;
  return tf.tensor2d(mask, [T, T]);
}

function attention(
  cfg: NeoxConfig,
  w: Weights,
  prefix: string,
  x: tf.Tensor2D,
  B: number,
  T: number,
  ctx: { mask: tf.Tensor2D; cos: tf.Tensor2D; sin: tf.Tensor2D },
): tf.Tensor2D {
  const C = cfg.hidden_size, nh = cfg.num_attention_heads, hs = headSize(cfg);
  const rot = rotaryDims(cfg);
  const qkv = linear(w, `${prefix}.query_key_value`, x); // (B*T, 3C) = (B, T, nh, 3, hs)
  const heads = tf.transpose(tf.reshape(qkv, [B, T, nh, 3, hs]), [3, 0, 2, 1, 4]);
  const [q, k, v] = tf.unstack(tf.reshape(heads, [3, B * nh, T, hs])) as tf.Tensor3D[];
  const qr = applyRotary(q, rot, ctx), kr = applyRotary(k, rot, ctx);
  const scores = tf.add(tf.matMul(tf.mul(qr, 1 / Math.sqrt(hs)), kr, false, true), ctx.mask);
  const y = tf.matMul(tf.softmax(scores, -1), v); // (B*nh, T, hs)
  const merged = tf.reshape(tf.transpose(tf.reshape(y, [B, nh, T, hs]), [0, 2, 1, 3]), [B * T, C]);
  return linear(w, `${prefix}.dense`, merged as tf.Tensor2D);
}

function mlp(w: Weights, prefix: string, x: tf.Tensor2D): tf.Tensor2D {
  const h = gelu(linear(w, `${prefix}.dense_h_to_4h`, x)) as tf.Tensor2D;
  return linear(w, `${prefix}.dense_4h_to_h`, h);
}

/** (B, T) token ids -> final hidden states (B*T, C), after the last LayerNorm. Call inside tf.tidy. */
export function neoxHidden(cfg: NeoxConfig, w: Weights, idx: tf.Tensor2D): tf.Tensor2D {
  const [B, T] = idx.shape;
  if (T > cfg.block_size) {
    throw new Error(`sequence length ${T} exceeds max_position_embeddings ${cfg.block_size}`);
  }
  const eps = cfg.layer_norm_eps;
  const ids = tf.reshape(tf.cast(idx, "int32"), [B * T]);
  let x = tf.gather(param(w, "gpt_neox.embed_in.weight"), ids) as tf.Tensor2D; // (B*T, C)
  const ctx = { mask: causalMask(T), ...rotaryTables(cfg, T) };
  // One tidy scope per layer, so that a layer's intermediates (attention scores above
  // all) are freed before the next: forward-only memory is one layer's, not the model's.
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    const p = `gpt_neox.layers.${i}`;
    const input = x;
    x = tf.tidy(() => {
      const ln1 = layerNorm(w, `${p}.input_layernorm`, input, eps);
      const attn = attention(cfg, w, `${p}.attention`, ln1, B, T, ctx);
      if (cfg.use_parallel_residual) {
        const ln2 = layerNorm(w, `${p}.post_attention_layernorm`, input, eps);
        return tf.add(tf.add(input, attn), mlp(w, `${p}.mlp`, ln2));
      }
      const mid = tf.add(input, attn) as tf.Tensor2D;
      return tf.add(
        mid,
        mlp(w, `${p}.mlp`, layerNorm(w, `${p}.post_attention_layernorm`, mid, eps)),
      );
    });
    input.dispose();
  }
  return layerNorm(w, "gpt_neox.final_layer_norm", x, eps);
}

/** The output head (untied): hidden states (n, C) -> logits (n, V). Call inside tf.tidy. */
export function neoxHeadLogits(w: Weights, h: tf.Tensor2D): tf.Tensor2D {
  return tf.matMul(h, param(w, "embed_out.weight") as tf.Tensor2D, false, true); // (n, V)
}

/** (B, T) token ids -> logits (B, T, V). Call inside tf.tidy. */
export function neoxForward(cfg: NeoxConfig, w: Weights, idx: tf.Tensor2D): tf.Tensor3D {
  const [B, T] = idx.shape;
  return tf.reshape(neoxHeadLogits(w, neoxHidden(cfg, w, idx)), [B, T, cfg.vocab_size]);
}
