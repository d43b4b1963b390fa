// One small interface over the two model families, so evaluation and `deno task score`
// take either a GPT-2 (lm/model/gpt.ts: the models trained here, and Hugging Face GPT-2
// folders) or a GPT-NeoX (lm/model/neox.ts: Pythia). A config says which it is: a
// NeoxConfig carries `arch: "gpt_neox"`, a GPTConfig has no `arch`. Both expose
// `vocab_size` and `block_size`, which is all the evaluation code reads.
//
// Weights are read from any checkpoint layout Hugging Face uses: model.safetensors,
// a sharded model.safetensors.index.json, pytorch_model.bin or a sharded
// pytorch_model.bin.index.json (lm/checkpoints/torch_bin.ts), every float dtype decoded
// to float32.
import type * as tf from "@tensorflow/tfjs-core";
import { type GPTConfig, weightsFromArrays } from "./gpt.ts";
import { type NeoxConfig, neoxConfigFromJson, neoxWeightsFromArrays } from "./neox.ts";
import { CheckpointReader, INDEX_SUFFIX } from "../checkpoints/sharded.ts";
import { decodeToF32, isFloatDType } from "../checkpoints/dtypes.ts";
import { readTorchBin } from "../checkpoints/torch_bin.ts";

export type ModelConfig = GPTConfig | NeoxConfig;
export type FloatArrays = Record<string, { shape: number[]; data: Float32Array }>;

export function isNeox(cfg: ModelConfig): cfg is NeoxConfig {
  return (cfg as NeoxConfig).arch === "gpt_neox";
}

/** Hugging Face GPT-2 names without the `transformer.` prefix (as in the hub's gpt2) get it. */
function gpt2Name(name: string): string {
  return /^(h\.\d+\.|wte\.|wpe\.|ln_f\.)/.test(name) ? `transformer.${name}` : name;
}

/** Model weights (eval tensors) from float arrays, for either family. */
export function modelWeights(cfg: ModelConfig, arrays: FloatArrays): Record<string, tf.Variable> {
  if (isNeox(cfg)) return neoxWeightsFromArrays(cfg, arrays);
  const renamed: FloatArrays = {};
  for (const [name, t] of Object.entries(arrays)) renamed[gpt2Name(name)] = t;
  return weightsFromArrays(cfg, renamed);
}

/** The config of a Hugging Face config.json (model_type gpt2 or gpt_neox). */
export function configFromHfJson(json: Record<string, unknown>, where: string): ModelConfig {
  if (json.model_type === "gpt_neox") return neoxConfigFromJson(json, where);
  if (json.model_type === "gpt2") {
    const int = (key: string) => {
      const v = json[key];
      if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
        throw new Error(`${where}: ${key} must be a positive integer, got ${JSON.stringify(v)}`);
      }
      return v;
    };
    return {
      n_layer: int("n_layer"),
      n_head: int("n_head"),
      n_embd: int("n_embd"),
      vocab_size: int("vocab_size"),
      block_size: int("n_positions"),
      bias: true,
    };
  }
  throw new Error(
    `${where}: model_type ${JSON.stringify(json.model_type)} is not supported (gpt2 or gpt_neox)`,
  );
}

/** Read every float tensor of a checkpoint file or index (safetensors or .bin) as float32. */
export async function readCheckpointF32(path: string): Promise<FloatArrays> {
  const out: FloatArrays = {};
  if (/\.bin(\.index\.json)?$/.test(path)) {
    for (const [name, t] of await readTorchBin(path)) {
      if (isFloatDType(t.dtype)) out[name] = { shape: t.shape, data: decodeToF32(t.data, t.dtype) };
    }
    return out;
  }
  const reader = await CheckpointReader.open(path);
  try {
    for (const [name, t] of reader.tensors) {
      if (!isFloatDType(t.dtype)) continue;
      out[name] = { shape: t.shape, data: decodeToF32(await reader.readBytes(name), t.dtype) };
    }
  } finally {
    reader.close();
  }
  return out;
}

/** Weight files a Hugging Face model folder may hold, in the order they are preferred. */
const WEIGHT_FILES = [
  "model.safetensors",
  `model${INDEX_SUFFIX}`,
  "pytorch_model.bin",
  "pytorch_model.bin.index.json",
];

/** The weights file (or index) of a model folder. */
export async function findWeights(folder: string): Promise<string> {
  for (const name of WEIGHT_FILES) {
    try {
      await Deno.stat(`${folder}/${name}`);
      return `${folder}/${name}`;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  throw new Error(`${folder}: no weights (expected one of ${WEIGHT_FILES.join(", ")})`);
}

export interface LoadedModel {
  config: ModelConfig;
  weights: Record<string, tf.Variable>;
  /** tokenizer.json of the folder, when it has one. */
  tokenizerPath: string | null;
}

/** A Hugging Face model folder (config.json + weights [+ tokenizer.json]), ready to score. */
export async function loadModel(folder: string): Promise<LoadedModel> {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await Deno.readTextFile(`${folder}/config.json`));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`${folder}: no config.json`);
    throw e;
  }
  const config = configFromHfJson(json, `${folder}/config.json`);
  const weights = modelWeights(config, await readCheckpointF32(await findWeights(folder)));
  let tokenizerPath: string | null = `${folder}/tokenizer.json`;
  try {
    await Deno.stat(tokenizerPath);
  } catch {
    tokenizerPath = null;
  }
  return { config, weights, tokenizerPath };
}
