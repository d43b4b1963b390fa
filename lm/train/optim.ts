// The optimizer side of training: AdamW with decoupled weight decay and global-norm
// gradient clipping (both as torch does them, so a step matches torch.optim.AdamW), the
// gradient accumulation that lets one step hold more tokens than fit in memory at once,
// and the weight averages kept during training (EMA, SWA: torch.optim.swa_utils).
//
// Hand-written rather than tf.train.adam because tfjs has no decoupled weight decay, no
// per-parameter decay mask, no clipping, and its optimizer state cannot be read back
// bit-exactly for a resume. Every update is tfjs ops on tf.Variables, so it runs on any
// backend (wasm, webgpu) without copying weights to JavaScript.
import * as tf from "@tensorflow/tfjs-core";

export type Params = Record<string, tf.Variable>;
export type Grads = Record<string, tf.Tensor>;

/** A tensor as plain data (for saving state). */
export interface TensorArray {
  shape: number[];
  data: Float32Array;
}

export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay: p -= lr·weight_decay·p before the Adam step. */
  weight_decay: number;
  /** Maximum global gradient norm; 0 turns clipping off. */
  grad_clip: number;
  /** Which parameters get weight decay (default: all). The model's `isDecayed` goes here. */
  decayed: (name: string) => boolean;
}

export const ADAMW_DEFAULTS: AdamWOptions = {
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weight_decay: 0.1,
  grad_clip: 1.0,
  decayed: () => true,
};

/** What a resume needs to continue AdamW exactly: the step count and both moments. */
export interface AdamWState {
  step: number;
  m: Record<string, TensorArray>;
  v: Record<string, TensorArray>;
}

/** sqrt(Σ over all tensors of Σ g²): the norm of all gradients as one vector. */
export function globalNorm(grads: Grads): tf.Scalar {
  return tf.tidy(() => {
    const squares = Object.values(grads).map((g) => tf.sum(tf.square(g)));
    return tf.sqrt(tf.addN(squares)) as tf.Scalar;
  });
}

/**
 * torch.nn.utils.clip_grad_norm_: scale every gradient by min(1, maxNorm / (norm + 1e-6)).
 * Returns new tensors (the caller disposes them) and the norm before clipping.
 */
export function clipByGlobalNorm(grads: Grads, maxNorm: number): { grads: Grads; norm: tf.Scalar } {
  const norm = globalNorm(grads);
  const clipped = tf.tidy(() => {
    const coef = tf.minimum(tf.div(maxNorm, tf.add(norm, 1e-6)), 1);
    const out: Grads = {};
    for (const [name, g] of Object.entries(grads)) out[name] = tf.mul(g, coef);
    return out;
  });
  return { grads: clipped, norm };
}

export class AdamW {
  readonly options: AdamWOptions;
  /** Updates done so far (torch's state["step"]). */
  step = 0;
  private readonly m: Params = {};
  private readonly v: Params = {};

  constructor(readonly params: Params, options: Partial<AdamWOptions> = {}) {
    this.options = { ...ADAMW_DEFAULTS, ...options };
    for (const [name, p] of Object.entries(params)) {
      this.m[name] = ownedVariable(tf.zerosLike(p));
      this.v[name] = ownedVariable(tf.zerosLike(p));
    }
  }

  /**
   * Clip `grads` by global norm, then one AdamW update of every parameter at `lr`.
   * Returns the global gradient norm before clipping (a scalar the caller disposes).
   * A parameter without a gradient is treated as having a zero gradient.
   */
  update(grads: Grads, lr: number): tf.Scalar {
    const { beta1, beta2, eps, weight_decay, grad_clip, decayed } = this.options;
    for (const name of Object.keys(grads)) {
      if (!(name in this.params)) {
        throw new Error(`AdamW: gradient for unknown parameter "${name}"`);
      }
    }
    let norm: tf.Scalar;
    let used = grads;
    if (grad_clip > 0) {
      const clipped = clipByGlobalNorm(grads, grad_clip);
      norm = clipped.norm;
      used = clipped.grads;
    } else {
      norm = globalNorm(grads);
    }
    this.step += 1;
    const biasCorrection1 = 1 - beta1 ** this.step;
    const biasCorrection2Sqrt = Math.sqrt(1 - beta2 ** this.step);
    const stepSize = lr / biasCorrection1;
    for (const [name, p] of Object.entries(this.params)) {
      const m = this.m[name];
      const v = this.v[name];
      tf.tidy(() => {
        const g = used[name] ?? tf.zerosLike(p);
        const decayedP = weight_decay > 0 && decayed(name) ? tf.mul(p, 1 - lr * weight_decay) : p;
        m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1)));
        v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2)));
        const denom = tf.add(tf.div(tf.sqrt(v), biasCorrection2Sqrt), eps);
        p.assign(tf.sub(decayedP, tf.mul(tf.div(m, denom), stepSize)));
      });
    }
    if (used !== grads) tf.dispose(Object.values(used));
    return norm;
  }

  async exportState(): Promise<AdamWState> {
    const m: Record<string, TensorArray> = {};
    const v: Record<string, TensorArray> = {};
    for (const name of Object.keys(this.params)) {
      m[name] = await toArray(this.m[name]);
      v[name] = await toArray(this.v[name]);
    }
    return { step: this.step, m, v };
  }

  /** Restore what `exportState` gave (names and shapes must match the parameters). */
  importState(state: AdamWState): void {
    for (const [name, p] of Object.entries(this.params)) {
      assignFrom(this.m[name], fromArray(state.m[name], p, `AdamW state m["${name}"]`));
      assignFrom(this.v[name], fromArray(state.v[name], p, `AdamW state v["${name}"]`));
    }
    this.step = state.step;
  }

  dispose(): void {
    tf.dispose([...Object.values(this.m), ...Object.values(this.v)]);
  }
}

/** Read a tensor into plain data (`await data()`: dataSync throws on webgpu). */
export async function toArray(t: tf.Tensor): Promise<TensorArray> {
  return { shape: [...t.shape], data: new Float32Array(await t.data()) };
}

/** A non-trainable variable that takes over `t` (no other reference to t is kept). */
function ownedVariable(t: tf.Tensor): tf.Variable {
  const v = tf.variable(t, false);
  t.dispose();
  return v;
}

/** v := t, then drop t. */
function assignFrom(v: tf.Variable, t: tf.Tensor): void {
  v.assign(t);
  t.dispose();
}

/** A tensor from plain data, checked against the variable it will be assigned to. */
function fromArray(a: TensorArray | undefined, like: tf.Tensor, what: string): tf.Tensor {
  if (!a) throw new Error(`${what}: missing from the saved state`);
  if (a.shape.join(",") !== like.shape.join(",")) {
    throw new Error(`${what}: saved shape [${a.shape}] but the parameter has [${like.shape}]`);
  }
  return tf.tensor(a.data, a.shape, "float32");
}

// ---------------------------------------------------------------------------------------
// Gradient accumulation

/**
 * Gradients of the mean loss over `microBatches` equal-sized micro-batches: each one's
 * gradient is summed, then the sum is scaled by 1/n, so the step sees the same gradient
 * as one batch n times larger. `lossOf(i)` builds micro-batch i's mean loss (inside the
 * gradient tape). Only one micro-batch's activations are alive at a time. Returns the
 * gradients by parameter name and the mean loss (the caller disposes both).
 */
export function accumulateGradients(
  params: Params,
  names: string[],
  microBatches: number,
  lossOf: (micro: number) => tf.Scalar,
): { grads: Grads; loss: tf.Scalar } {
  if (!Number.isInteger(microBatches) || microBatches < 1) {
    throw new Error(
      `accumulateGradients: microBatches must be a positive integer, got ${microBatches}`,
    );
  }
  const vars = names.map((name) => {
    const v = params[name];
    if (!v) throw new Error(`accumulateGradients: no parameter named "${name}"`);
    return v;
  });
  const nameOfVar = new Map(vars.map((v, i) => [v.name, names[i]]));
  let sum: Grads = {};
  let lossSum: tf.Scalar = tf.scalar(0);
  for (let i = 0; i < microBatches; i++) {
    const { value, grads } = tf.variableGrads(() => lossOf(i), vars);
    const next = tf.tidy(() => {
      const out: Grads = {};
      for (const [varName, g] of Object.entries(grads)) {
        const name = nameOfVar.get(varName)!;
        out[name] = sum[name] ? tf.add(sum[name], g) : tf.clone(g);
      }
      return out;
    });
    const nextLoss = tf.add(lossSum, value) as tf.Scalar;
    tf.dispose([...Object.values(sum), ...Object.values(grads), value, lossSum]);
    sum = next;
    lossSum = nextLoss;
  }
  if (microBatches === 1) return { grads: sum, loss: lossSum };
  const scale = 1 / microBatches;
  const grads = tf.tidy(() => {
    const out: Grads = {};
    for (const [name, g] of Object.entries(sum)) out[name] = tf.mul(g, scale);
    return out;
  });
  const loss = tf.mul(lossSum, scale) as tf.Scalar;
  tf.dispose([...Object.values(sum), lossSum]);
  return { grads, loss };
}

// ---------------------------------------------------------------------------------------
// Weight averages kept during training (the paper's EMA and SWA baselines)

/**
 * A running average of the weights, one copy per parameter. EMA: avg = decay·avg +
 * (1 - decay)·w. SWA: the uniform mean of every weight it was given, avg += (w - avg)/(n+1)
 * (as torch's AveragedModel; the paper's Algorithm 2 pseudocode swaps the two factors,
 * which would weigh the newest checkpoint by n/(n+1): not a mean). The first update of
 * either copies the weights.
 */
export class WeightAverage {
  /** Updates taken so far. */
  count = 0;
  readonly weights: Params = {};

  constructor(readonly kind: "ema" | "swa", readonly decay = 0.9) {}

  update(params: Params): void {
    for (const [name, p] of Object.entries(params)) {
      const avg = this.weights[name];
      if (this.count === 0 || !avg) {
        avg?.dispose();
        this.weights[name] = ownedVariable(tf.clone(p));
        continue;
      }
      tf.tidy(() => {
        if (this.kind === "ema") {
          avg.assign(tf.add(tf.mul(avg, this.decay), tf.mul(p, 1 - this.decay)));
        } else {
          avg.assign(tf.add(avg, tf.div(tf.sub(p, avg), this.count + 1)));
        }
      });
    }
    this.count += 1;
  }

  /** Restore saved weights and count (for a resume). */
  restore(count: number, arrays: Record<string, TensorArray>, like: Params): void {
    this.dispose();
    this.count = count;
    if (count === 0) return;
    for (const [name, p] of Object.entries(like)) {
      const saved = fromArray(arrays[name], p, `${this.kind} weights["${name}"]`);
      this.weights[name] = ownedVariable(saved);
    }
  }

  dispose(): void {
    tf.dispose(Object.values(this.weights));
    for (const name of Object.keys(this.weights)) delete this.weights[name];
  }
}
