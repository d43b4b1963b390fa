// Evaluation throughput: forward-only held-out scoring (lm/eval/loss.ts: loss + argmax per
// position) against a training step (forward + backward + Adam update) on the same model
// and the same token batches, in the same run. The goal is evaluation >= 2.5x faster per
// token, so evaluating every checkpoint of several series costs little next to training.
// Two evaluations: with the argmax predictions (what `diversity: true` needs) and losses
// only (the `evaluate` step's default), each timed alternately with training.
//
//   deno run --allow-all bench/eval.ts [--backend=wasm] [--repeats=5] [--batch=8]
import * as tf from "@tensorflow/tfjs";
import { backendInfo, type BackendName, setBackend } from "../lm/backend/backend.ts";
import { type GPTConfig, initWeights, meanLoss } from "../lm/model/gpt.ts";
import { evaluateWindows, type Windows } from "../lm/eval/loss.ts";

function flag(name: string, fallback: string): string {
  const hit = Deno.args.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : fallback;
}

const backend = flag("backend", "wasm");
const repeats = Math.max(3, Number(flag("repeats", "5")));
const B = Number(flag("batch", "8"));
const cfg: GPTConfig = {
  n_layer: 4,
  n_head: 4,
  n_embd: 128,
  vocab_size: 8192,
  block_size: 128,
  bias: false,
};
const T = cfg.block_size;
const BATCHES = 4; // batches per timed run

await setBackend(backend as BackendName);
const info = backendInfo();
console.log(
  `backend ${info.name} ${info.version} (${info.detail}) · model ${cfg.n_layer}L w${cfg.n_embd} ${cfg.n_head}H T${T} vocab ${cfg.vocab_size} · batch ${B}x${T} · ${BATCHES} batches per run`,
);

// The same fixed pseudo-random token batches for both measurements.
let state = 12345;
const nextToken = () => (state = (state * 1103515245 + 12345) % 2147483648) % cfg.vocab_size;
const x = Int32Array.from({ length: BATCHES * B * T }, nextToken);
const y = Int32Array.from({ length: BATCHES * B * T }, nextToken);
const windows: Windows = { x, y, count: BATCHES * B, seqLen: T };
const tokensPerRun = BATCHES * B * T;

const w = initWeights(cfg, 0);
const optimizer = tf.train.adam(1e-4);

async function trainRun(): Promise<void> {
  for (let i = 0; i < BATCHES; i++) {
    const xs = tf.tensor2d(x.subarray(i * B * T, (i + 1) * B * T), [B, T], "int32");
    const ys = tf.tensor2d(y.subarray(i * B * T, (i + 1) * B * T), [B, T], "int32");
    const loss = optimizer.minimize(() => meanLoss(cfg, w, xs, ys), true)!;
    await loss.data(); // wait for the step to finish
    tf.dispose([loss, xs, ys]);
  }
}

const evalRun = (keepPredictions: boolean) => async () => {
  await evaluateWindows(cfg, w, windows, { batchSize: B, keepPredictions });
};

/** Warm both up, then alternate timed runs so that machine noise hits both alike. */
async function timeBoth(
  evalRun: () => Promise<void>,
): Promise<{ train: number[]; evaluate: number[] }> {
  await trainRun();
  await evalRun();
  const train: number[] = [];
  const evaluate: number[] = [];
  for (let r = 0; r < repeats; r++) {
    let t0 = performance.now();
    await trainRun();
    train.push((performance.now() - t0) / 1000);
    t0 = performance.now();
    await evalRun();
    evaluate.push((performance.now() - t0) / 1000);
  }
  return { train: train.sort((a, b) => a - b), evaluate: evaluate.sort((a, b) => a - b) };
}

const median = (s: number[]) => s[Math.floor(s.length / 2)];
const rate = (s: number) => Math.round(tokensPerRun / s);

for (const [what, keep] of [["with predictions", true], ["losses only", false]] as const) {
  const { train: trainS, evaluate: evalS } = await timeBoth(evalRun(keep));
  console.log(`${what}:`);
  console.log(
    `  train step (fwd+bwd+adam): best ${rate(trainS[0])} tok/s, median ${
      rate(median(trainS))
    } tok/s ` +
      `(min ${trainS[0].toFixed(3)} s, median ${
        median(trainS).toFixed(3)
      } s per ${tokensPerRun} tokens)`,
  );
  console.log(
    `  evaluation (fwd only):     best ${rate(evalS[0])} tok/s, median ${
      rate(median(evalS))
    } tok/s ` +
      `(min ${evalS[0].toFixed(3)} s, median ${
        median(evalS).toFixed(3)
      } s per ${tokensPerRun} tokens)`,
  );
  const ratioBest = trainS[0] / evalS[0];
  const ratioMedian = median(trainS) / median(evalS);
  console.log(
    `  ratio evaluation/training tokens/s (${what}): best ${ratioBest.toFixed(2)}x, median ${
      ratioMedian.toFixed(2)
    }x (goal >= 2.5x) ${ratioMedian >= 2.5 ? "OK" : "BELOW GOAL"}`,
  );
}
optimizer.dispose();
for (const v of Object.values(w)) v.dispose();
