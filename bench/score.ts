// Scoring throughput of Pythia-160M (GPT-NeoX, random weights of its exact shape) on
// the default CPU backend, forward only, as `deno task score` and the evaluate step run
// it; against GPT-2 small of the same width, depth and vocabulary (the model family the
// project was built around) on the same token windows, in the same run. NeoX adds rotary
// embeddings and an untied head; the goal is NeoX >= 0.8x GPT-2's tokens/s.
//
//   deno run --allow-all bench/score.ts [--backend=wasm] [--repeats=3] [--batch=1] [--seq=512]
import * as tf from "@tensorflow/tfjs-core";
import { backendInfo, type BackendName, setBackend } from "../lm/backend/backend.ts";
import { type GPTConfig, weightsFromArrays } from "../lm/model/gpt.ts";
import {
  neoxConfigFromJson,
  neoxParameterShapes,
  neoxWeightsFromArrays,
} from "../lm/model/neox.ts";
import { parameterShapes } from "../lm/model/gpt.ts";
import type { ModelConfig } from "../lm/model/model.ts";
import { evaluateWindows, type Windows } from "../lm/eval/loss.ts";

function flag(name: string, fallback: string): string {
  const hit = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : fallback;
}

const backend = flag("backend", "wasm");
const repeats = Math.max(2, Number(flag("repeats", "3")));
const B = Number(flag("batch", "1"));
const T = Number(flag("seq", "512"));

/** EleutherAI/pythia-160m's config.json (the fields the model reads). */
const PYTHIA_160M = neoxConfigFromJson({
  model_type: "gpt_neox",
  vocab_size: 50304,
  hidden_size: 768,
  num_attention_heads: 12,
  num_hidden_layers: 12,
  intermediate_size: 3072,
  max_position_embeddings: 2048,
  rotary_pct: 0.25,
  rotary_emb_base: 10000,
  layer_norm_eps: 1e-5,
  hidden_act: "gelu",
  use_parallel_residual: true,
  tie_word_embeddings: false,
}, "pythia-160m");
const GPT2_SMALL: GPTConfig = {
  n_layer: 12,
  n_head: 12,
  n_embd: 768,
  vocab_size: 50304,
  block_size: 2048,
  bias: true,
};

/** Small random values of every parameter (a fixed LCG: the numbers do not matter). */
function randomArrays(shapes: [string, number[]][]) {
  let s = 1;
  const out: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [name, shape] of shapes) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) {
      s = (s * 1103515245 + 12345) % 2147483648;
      data[i] = (s / 2147483648 - 0.5) * 0.04;
    }
    out[name] = { shape, data };
  }
  return out;
}

await setBackend(backend as BackendName);
const info = backendInfo();
const params = neoxParameterShapes(PYTHIA_160M).reduce(
  (n, [, s]) => n + s.reduce((a, b) => a * b, 1),
  0,
);
console.log(
  `backend ${info.name} ${info.version} (${info.threads} thread(s)) · pythia-160m (${
    (params / 1e6).toFixed(1)
  }M params, random) vs gpt2-small (vocab 50304) · batch ${B}x${T}`,
);

let state = 12345;
const nextToken = () => (state = (state * 1103515245 + 12345) % 2147483648) % 50277;
const x = Int32Array.from({ length: B * T }, nextToken);
const y = Int32Array.from({ length: B * T }, nextToken);
const windows: Windows = { x, y, count: B, seqLen: T };

type Model = { cfg: ModelConfig; w: Record<string, tf.Tensor> };

/** Warm both up, then alternate timed runs so that machine noise hits both alike. */
async function timeBoth(a: Model, b: Model): Promise<[number[], number[]]> {
  const run = async (m: Model) => {
    const t0 = performance.now();
    await evaluateWindows(m.cfg, m.w, windows, { batchSize: B });
    return (performance.now() - t0) / 1000;
  };
  await run(a);
  await run(b);
  const sa: number[] = [], sb: number[] = [];
  for (let r = 0; r < repeats; r++) {
    sa.push(await run(a));
    sb.push(await run(b));
  }
  return [sa.sort((x, y) => x - y), sb.sort((x, y) => x - y)];
}

const neox: Model = {
  cfg: PYTHIA_160M,
  w: neoxWeightsFromArrays(PYTHIA_160M, randomArrays(neoxParameterShapes(PYTHIA_160M))),
};
const gpt: Model = {
  cfg: GPT2_SMALL,
  w: weightsFromArrays(GPT2_SMALL, randomArrays(parameterShapes(GPT2_SMALL))),
};
const [neoxS, gptS] = await timeBoth(neox, gpt);
for (const m of [neox, gpt]) Object.values(m.w).forEach((t) => t.dispose());

const median = (s: number[]) => s[Math.floor(s.length / 2)];
const rate = (s: number) => Math.round((B * T) / s);
console.log(
  `pythia-160m forward: median ${rate(median(neoxS))} tok/s, best ${rate(neoxS[0])} tok/s`,
);
console.log(`gpt2-small forward:  median ${rate(median(gptS))} tok/s, best ${rate(gptS[0])} tok/s`);
const ratio = median(gptS) / median(neoxS);
console.log(
  `ratio pythia-160m / gpt2-small tokens/s: ${ratio.toFixed(2)}x (goal >= 0.8x) ${
    ratio >= 0.8 ? "OK" : "BELOW GOAL"
  }`,
);
