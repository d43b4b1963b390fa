// What training writes to disk besides its log: model checkpoints (safetensors with
// Hugging Face GPT-2 names, loadable by transformers) and the full training state a
// resume needs (weights, AdamW moments, EMA/SWA copies, the step and tokens seen).
//
// The state is two files in its own folder:
//   state-<step>.safetensors   tensors "weights/<name>", "adam.m/<name>", "adam.v/<name>",
//                              "ema/<name>", "swa/<name>" (float32, bit-exact)
//   state.json                 { format, file, step, tokens, elapsed_s, adam_step,
//                                ema_count, swa_count, params }
// The tensors are written first (atomically), then state.json is replaced atomically to
// point at them, and only then are older state files removed: a crash at any moment
// leaves a complete, consistent state (the old one or the new one).
import { readSafetensorsF32, writeSafetensors } from "./safetensors.ts";
import { type DType, encodeFloats } from "./dtypes.ts";
import type { AdamWState, TensorArray } from "../train/optim.ts";

export type Arrays = Record<string, TensorArray>;

/** A weight average's saved form. */
export interface AverageState {
  count: number;
  weights: Arrays;
}

export interface TrainState {
  /** Optimizer updates done: training continues at this 0-based step. */
  step: number;
  /** Tokens trained on so far. */
  tokens: number;
  /** Training wall time so far (seconds), summed over interrupted runs. */
  elapsed_s: number;
  weights: Arrays;
  adam: AdamWState;
  ema: AverageState | null;
  swa: AverageState | null;
  /** The training params this state belongs to (a resume checks they are the same). */
  params: unknown;
}

const STATE_FORMAT = "train-state/1";
const STATE_JSON = "state.json";

interface StateJson {
  format: typeof STATE_FORMAT;
  file: string;
  step: number;
  tokens: number;
  elapsed_s: number;
  adam_step: number;
  ema_count: number | null;
  swa_count: number | null;
  params: unknown;
}

/** Write `text` to `path` atomically (temp file in the same folder, then rename). */
export async function writeTextAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.writeTextFile(tmp, text);
  await Deno.rename(tmp, path);
}

/** How model checkpoints are stored: float32 (exact) or bfloat16 (half the disk). */
export type CheckpointDtype = "float32" | "bfloat16";

/** Bytes per stored number of a checkpoint dtype. */
export function checkpointDtypeBytes(dtype: CheckpointDtype): number {
  return dtype === "bfloat16" ? 2 : 4;
}

/**
 * A model checkpoint: tensors under their own names, float32 or bfloat16 (rounded to
 * nearest even, as torch's .to(torch.bfloat16)), metadata as strings. The resume state
 * is always float32; bfloat16 is for the series that averaging and evaluation read.
 */
export async function writeCheckpoint(
  path: string,
  weights: Arrays,
  metadata: Record<string, string | number>,
  dtype: CheckpointDtype = "float32",
): Promise<void> {
  const tensors: Record<string, { dtype: DType; shape: number[]; data: ArrayBufferView }> = {};
  for (const [name, t] of Object.entries(weights)) {
    tensors[name] = dtype === "bfloat16"
      ? { dtype: "BF16", shape: t.shape, data: encodeFloats(t.data, "BF16") }
      : { dtype: "F32", shape: t.shape, data: t.data };
  }
  const meta: Record<string, string> = { format: "pt" }; // transformers refuses files without it
  for (const [k, v] of Object.entries(metadata)) meta[k] = String(v);
  await writeSafetensors(path, tensors, meta);
}

function stateFileName(step: number): string {
  return `state-${String(step).padStart(6, "0")}.safetensors`;
}

export async function saveTrainState(dir: string, state: TrainState): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const tensors: Arrays = {};
  const put = (prefix: string, arrays: Arrays) => {
    for (const [name, t] of Object.entries(arrays)) tensors[`${prefix}/${name}`] = t;
  };
  put("weights", state.weights);
  put("adam.m", state.adam.m);
  put("adam.v", state.adam.v);
  if (state.ema) put("ema", state.ema.weights);
  if (state.swa) put("swa", state.swa.weights);
  const file = stateFileName(state.step);
  await writeCheckpoint(`${dir}/${file}`, tensors, { step: state.step });
  const json: StateJson = {
    format: STATE_FORMAT,
    file,
    step: state.step,
    tokens: state.tokens,
    elapsed_s: state.elapsed_s,
    adam_step: state.adam.step,
    ema_count: state.ema?.count ?? null,
    swa_count: state.swa?.count ?? null,
    params: state.params,
  };
  await writeTextAtomic(`${dir}/${STATE_JSON}`, JSON.stringify(json, null, 2) + "\n");
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name !== file && entry.name !== STATE_JSON) {
      await Deno.remove(`${dir}/${entry.name}`).catch(() => {});
    }
  }
}

/** The state saved in `dir`, or null when there is none (a fresh run). */
export async function loadTrainState(dir: string): Promise<TrainState | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${dir}/${STATE_JSON}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const json = JSON.parse(text) as StateJson;
  if (json.format !== STATE_FORMAT) {
    throw new Error(
      `${dir}/${STATE_JSON}: unknown training state format ${JSON.stringify(json.format)}`,
    );
  }
  const { tensors } = await readSafetensorsF32(`${dir}/${json.file}`);
  const take = (prefix: string): Arrays => {
    const out: Arrays = {};
    for (const [key, t] of Object.entries(tensors)) {
      if (key.startsWith(prefix + "/")) out[key.slice(prefix.length + 1)] = t;
    }
    return out;
  };
  return {
    step: json.step,
    tokens: json.tokens,
    elapsed_s: json.elapsed_s,
    weights: take("weights"),
    adam: { step: json.adam_step, m: take("adam.m"), v: take("adam.v") },
    ema: json.ema_count === null ? null : { count: json.ema_count, weights: take("ema") },
    swa: json.swa_count === null ? null : { count: json.swa_count, weights: take("swa") },
    params: json.params,
  };
}
