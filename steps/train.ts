// The `train` step: pre-trains a GPT-2 on a tokenize step's train.bin with AdamW, warmup
// + cosine LR, gradient accumulation, and the paper's in-training averages (EMA, SWA).
//
// Outputs (under ctx.outDir):
//   original/   the checkpoint series: step-NNNNNN.safetensors every save_every steps
//   ema/, swa/  the EMA and SWA series at the same steps (SWA from its start on), if asked
//   state/      everything a resume needs (lm/checkpoints/training_state.ts); removed when the run ends
//   _side/train_log.jsonl  the log rows, so rows from before a crash survive a resume
//   _side/run.json         the train manifest (backend, model size, tokens/s: lm/train/estimate.ts)
// Rows: train_log (one per step) and train_runs (one per run: completed or diverged).
// Wall-clock timings (elapsed_s, tokens_per_s, wall_s) are measurements, not results:
// they live in side files only (pipeline/store.ts), so the digest that downstream keys
// hash is the same for two runs of the same config and seed on the same machine.
//
// Determinism: the windows of step s depend only on (seed, s) (lm/data/windows.ts), the weights
// on the seed, and nothing else draws random numbers, so on the cpu backend a run that
// was killed and resumed ends with the same bits as one that was not.
import * as tf from "@tensorflow/tfjs-core";
import { defineStep, type InputRef, type InputValue, type StepContext } from "../pipeline/step.ts";
import { SIDE_DIR } from "../pipeline/store.ts";
import { readJsonLog } from "../pipeline/jsonl.ts";
import {
  type Batch,
  openTokens,
  readMeta,
  type TokenFile,
  tokenFileName,
  trainBatch,
} from "../lm/data/windows.ts";
import {
  type GPTConfig,
  initWeights,
  isDecayed,
  meanLoss,
  modelConfig,
  trainableNames,
} from "../lm/model/gpt.ts";
import { backendInfo, type BackendName, setBackend } from "../lm/backend/backend.ts";
import { checkLogitsFit, softwareAdapterWarning, takeWebgpuError } from "../lm/backend/webgpu.ts";
import { TrainDisk } from "../lm/checkpoints/train_disk.ts";
import { type CheckpointDtype } from "../lm/checkpoints/training_state.ts";
import {
  describeEstimate,
  flopsPerToken,
  lastMeasured,
  writeRunManifest,
} from "../lm/train/estimate.ts";
import { GPT2_VOCAB_SIZE } from "../lm/data/tokenizer.ts";
import {
  accumulateGradients,
  AdamW,
  type Params,
  toArray,
  WeightAverage,
} from "../lm/train/optim.ts";
import { type CosineSchedule, type SwaSchedule, trainingLrAt } from "../lm/train/schedule.ts";
import {
  type Arrays,
  loadTrainState,
  saveTrainState,
  writeCheckpoint,
  writeTextAtomic,
} from "../lm/checkpoints/training_state.ts";
import { appendRows, tablesOf, TRAIN_LOG, TRAIN_RUNS } from "./tables.ts";
import {
  checkpointFileName,
  readSeriesInfo,
  type SeriesInfo,
  writeSeriesInfo,
} from "../lm/checkpoints/series.ts";
import {
  checkTrainParams,
  type ResolvedTrainParams,
  resolveTrainParams,
  type TrainParams,
  trainParams,
} from "../lm/train/params.ts";

interface LogRow {
  /** Optimizer updates done after this step (1-based). */
  step: number;
  tokens: number;
  loss: number;
  lr: number;
  grad_norm: number;
  tokens_per_s: number;
  elapsed_s: number;
}

/** The resume log: a side file, since its rows carry wall-clock timings. */
const LOG_FILE = `${SIDE_DIR}/train_log.jsonl`;

// ---------------------------------------------------------------------------------------
// Output series

/** One checkpoint series being written (original, ema or swa). */
class SeriesWriter {
  constructor(
    readonly dir: string,
    readonly info: SeriesInfo,
    readonly dtype: CheckpointDtype = "float32",
  ) {}

  /** A writer that continues what `dir` holds up to `upToStep` (from an interrupted run). */
  static async open(
    dir: string,
    fresh: SeriesInfo,
    upToStep: number,
    dtype: CheckpointDtype = "float32",
  ): Promise<SeriesWriter> {
    let info = fresh;
    try {
      const old = await readSeriesInfo(dir);
      info = { ...fresh, checkpoints: old.checkpoints.filter((c) => c.step <= upToStep) };
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    await writeSeriesInfo(dir, info);
    return new SeriesWriter(dir, info, dtype);
  }

  async add(step: number, tokens: number, weights: Arrays, meta: Record<string, number>) {
    const file = checkpointFileName(step);
    await writeCheckpoint(`${this.dir}/${file}`, weights, { step, tokens, ...meta }, this.dtype);
    this.info.checkpoints = this.info.checkpoints.filter((c) => c.step !== step);
    this.info.checkpoints.push({ step, tokens, file });
    await writeSeriesInfo(this.dir, this.info);
  }
}

async function arraysOf(weights: Params): Promise<Arrays> {
  const out: Arrays = {};
  for (const [name, t] of Object.entries(weights)) out[name] = await toArray(t);
  return out;
}

// ---------------------------------------------------------------------------------------
// Log rows that survive a resume

async function readLogRows(path: string, upToStep: number): Promise<LogRow[]> {
  const rows: LogRow[] = [];
  for (const value of await readJsonLog(path)) {
    const row = value as LogRow;
    for (const key of Object.keys(row) as (keyof LogRow)[]) {
      if (row[key] === null) row[key] = NaN; // JSON writes NaN as null
    }
    if (row.step <= upToStep) rows.push(row);
  }
  return rows;
}

function formatRate(tokensPerSecond: number): string {
  return tokensPerSecond >= 1000
    ? `${(tokensPerSecond / 1000).toFixed(1)}k`
    : tokensPerSecond.toFixed(0);
}

// ---------------------------------------------------------------------------------------
// The training loop

export async function runTraining(
  ctx: StepContext,
  params: TrainParams,
  tokensDir: string,
): Promise<void> {
  const meta = await readMeta(tokensDir);
  const backend = await setBackend(params.backend ?? (ctx.backend as BackendName), {
    quiet: true,
  });
  const device = backendInfo();
  ctx.progress.log(`train: backend ${device.name} ${device.version} on ${device.detail}`);
  const deviceWarning = device.adapter ? softwareAdapterWarning(device.adapter) : null;
  if (deviceWarning) ctx.progress.log(`train: ${deviceWarning}`);
  const cfg = modelConfig(params.preset, meta.vocab_size, params.model);
  const p = resolveTrainParams(params, cfg);
  if (device.adapter) checkLogitsFit(device.adapter, p.micro_batch, p.seq_len, cfg.vocab_size);
  const file = await openTokens(`${tokensDir}/${tokenFileName("train")}`, meta.dtype);
  try {
    await trainLoop(ctx, p, cfg, file, backend);
  } finally {
    file.close();
  }
}

async function trainLoop(
  ctx: StepContext,
  p: ResolvedTrainParams,
  cfg: GPTConfig,
  file: TokenFile,
  backend: { name: string; version: string },
): Promise<void> {
  const stateDir = `${ctx.outDir}/state`;
  const logPath = `${ctx.outDir}/${LOG_FILE}`;
  const base: CosineSchedule = { lr: p.lr, min_lr: p.min_lr, warmup: p.warmup, steps: p.steps };
  const swaSchedule: SwaSchedule | null = p.swa
    ? { start_step: p.swa.start_step, swa_lr: p.swa.lr, anneal_steps: p.swa.anneal_steps }
    : null;
  const rowsPerStep = p.micro_batch * p.n_micro;

  const weights = initWeights(cfg, ctx.seed);
  const trainable: Params = {};
  const names = trainableNames(cfg);
  for (const name of names) trainable[name] = weights[name];
  const optimizer = new AdamW(trainable, {
    weight_decay: p.weight_decay,
    grad_clip: p.grad_clip,
    decayed: isDecayed,
  });
  const ema = p.ema ? new WeightAverage("ema", p.ema.decay) : null;
  const swa = p.swa ? new WeightAverage("swa") : null;

  // Resume from an interrupted run, or start fresh.
  const saved = await loadTrainState(stateDir);
  let done = 0; // optimizer updates done
  let elapsedBefore = 0;
  if (saved) {
    if (JSON.stringify(saved.params) !== JSON.stringify(p)) {
      throw new Error(
        `train: ${stateDir} holds the state of a run with other params; remove it to start over`,
      );
    }
    for (const [name, w] of Object.entries(weights)) {
      const a = saved.weights[name];
      if (!a) throw new Error(`train: ${stateDir}: saved weights lack "${name}"`);
      const t = tf.tensor(a.data, a.shape, "float32");
      w.assign(t);
      t.dispose();
    }
    optimizer.importState(saved.adam);
    if (ema && saved.ema) ema.restore(saved.ema.count, saved.ema.weights, weights);
    if (swa && saved.swa) swa.restore(saved.swa.count, saved.swa.weights, weights);
    done = saved.step;
    elapsedBefore = saved.elapsed_s;
  } else if (ema) {
    ema.update(weights); // the average starts from the initial weights (Algorithm 2)
  }
  const log = await readLogRows(logPath, done);
  await Deno.mkdir(`${ctx.outDir}/${SIDE_DIR}`, { recursive: true });
  await writeTextAtomic(logPath, log.map((r) => JSON.stringify(r) + "\n").join(""));

  const trainInfo = {
    train: p,
    seed: ctx.seed,
    backend: backend.name,
    backend_version: backend.version,
  };
  const model = { ...cfg } as unknown as Record<string, unknown>;
  const seriesInfo = (
    label: string,
    method: string,
    extra: Record<string, unknown>,
  ): SeriesInfo => ({
    format: "checkpoint-series/1",
    label,
    method,
    params: { ...extra, ...trainInfo },
    model,
    checkpoints: [],
  });
  const dtype = p.checkpoint_dtype ?? "float32";
  const original = await SeriesWriter.open(
    `${ctx.outDir}/original`,
    seriesInfo("original", "original", {}),
    done,
    dtype,
  );
  const disk = new TrainDisk(ctx.outDir, {
    save_every: p.save_every,
    batch_tokens: p.batch_tokens,
    steps: p.steps,
    keep_every: p.keep_every ?? 1,
    dtype,
    online_lawa: p.online_lawa ?? null,
  });
  await disk.resume(done, original.dir, original.info);
  const emaSeries = p.ema
    ? await SeriesWriter.open(
      `${ctx.outDir}/ema`,
      seriesInfo(`EMA ${p.ema.decay}${p.ema.every > 1 ? ` every ${p.ema.every}` : ""}`, "ema", {
        ...p.ema,
      }),
      done,
      dtype,
    )
    : null;
  const swaSeries = p.swa
    ? await SeriesWriter.open(
      `${ctx.outDir}/swa`,
      seriesInfo(`SWA from step ${p.swa.start_step}`, "swa", { ...p.swa }),
      done,
      dtype,
    )
    : null;

  ctx.progress.start(`train ${ctx.node}`, p.steps, "step");
  if (done > 0) ctx.progress.log(`train: resuming at step ${done} of ${p.steps}`);
  const t0 = performance.now();
  const elapsed = () => elapsedBefore + (performance.now() - t0) / 1000;
  let status: "completed" | "diverged" = "completed";
  let lastLoss = log.length > 0 ? log[log.length - 1].loss : NaN;

  const checkpointAt = async (step: number, lr: number, loss: number) => {
    const tokens = step * p.batch_tokens;
    const meta = { lr, loss };
    const current = await arraysOf(weights);
    const emaArrays = ema ? await arraysOf(ema.weights) : null;
    const swaArrays = swa && swa.count > 0 ? await arraysOf(swa.weights) : null;
    const kept = disk.isKept(step);
    if (kept) {
      await original.add(step, tokens, current, meta);
      if (emaSeries && emaArrays) await emaSeries.add(step, tokens, emaArrays, meta);
      if (swaSeries && swaArrays) await swaSeries.add(step, tokens, swaArrays, meta);
    }
    const keptPath = kept ? `${original.dir}/${checkpointFileName(step)}` : null;
    await disk.afterSave(step, tokens, current, meta, keptPath, original.info);
    await saveTrainState(stateDir, {
      step,
      tokens,
      elapsed_s: elapsed(),
      weights: current,
      adam: await optimizer.exportState(),
      ema: ema ? { count: ema.count, weights: emaArrays ?? {} } : null,
      swa: swa ? { count: swa.count, weights: swaArrays ?? {} } : null,
      params: p,
    });
  };

  try {
    while (done < p.steps) {
      if (ctx.signal.aborted) throw new Error(`train: cancelled at step ${done} of ${p.steps}`);
      const s = done; // 0-based index of this update
      const stepStart = performance.now();
      const lr = trainingLrAt(s, base, swaSchedule);
      // The whole step's windows at once, so the data of a step does not depend on how
      // it is split into micro-batches.
      const batch: Batch = trainBatch(file, rowsPerStep, p.seq_len, ctx.seed, s);
      const microTokens = p.micro_batch * p.seq_len;
      const { grads, loss } = accumulateGradients(weights, names, p.n_micro, (i) => {
        const x = tf.tensor2d(batch.x.subarray(i * microTokens, (i + 1) * microTokens), [
          p.micro_batch,
          p.seq_len,
        ], "int32");
        const y = tf.tensor2d(batch.y.subarray(i * microTokens, (i + 1) * microTokens), [
          p.micro_batch,
          p.seq_len,
        ], "int32");
        return meanLoss(cfg, weights, x, y);
      });
      let lossValue = (await loss.data())[0];
      loss.dispose();
      if (p.nan_at_step === s + 1) lossValue = NaN;
      if (!Number.isFinite(lossValue)) {
        tf.dispose(Object.values(grads));
        status = "diverged";
        lastLoss = lossValue;
        log.push({
          step: s + 1,
          tokens: (s + 1) * p.batch_tokens,
          loss: lossValue,
          lr,
          grad_norm: NaN,
          tokens_per_s: NaN,
          elapsed_s: elapsed(),
        });
        ctx.progress.log(`train: loss is ${lossValue} at step ${s + 1}: run diverged, stopping`);
        break;
      }
      const normTensor = optimizer.update(grads, lr);
      const gradNorm = (await normTensor.data())[0];
      const deviceError = takeWebgpuError();
      if (deviceError) {
        throw new Error(`train: a webgpu kernel failed at step ${s + 1}: ${deviceError}`);
      }
      tf.dispose([normTensor, ...Object.values(grads)]);
      done = s + 1;
      if (ema && p.ema && done % p.ema.every === 0) ema.update(weights);
      if (swa && p.swa && s >= p.swa.start_step && (s - p.swa.start_step) % p.swa.every === 0) {
        swa.update(weights);
      }
      const seconds = (performance.now() - stepStart) / 1000;
      const row: LogRow = {
        step: done,
        tokens: done * p.batch_tokens,
        loss: lossValue,
        lr,
        grad_norm: gradNorm,
        tokens_per_s: p.batch_tokens / seconds,
        elapsed_s: elapsed(),
      };
      log.push(row);
      lastLoss = lossValue;
      await Deno.writeTextFile(logPath, JSON.stringify(row) + "\n", { append: true });
      if (done % p.save_every === 0 || done === p.steps) await checkpointAt(done, lr, lossValue);
      ctx.progress.update(
        done,
        `loss ${lossValue.toFixed(3)} · ${formatRate(row.tokens_per_s)} tok/s`,
      );
    }
  } finally {
    optimizer.dispose();
    ema?.dispose();
    swa?.dispose();
    tf.dispose(Object.values(weights));
  }

  appendRows(ctx.results, TRAIN_LOG, log.map(({ loss, ...r }) => ({ ...r, train_loss: loss })));
  appendRows(ctx.results, TRAIN_RUNS, [{
    status,
    steps_done: done,
    final_train_loss: lastLoss,
    preset: p.preset,
    lr: p.lr,
    batch_tokens: p.batch_tokens,
    seed: ctx.seed,
    wall_s: elapsed(),
  }]);
  await disk.finish(original.info);
  await writeRunManifest(ctx.outDir, {
    backend: backendInfo(),
    model: cfg,
    params: p,
    status,
    steps_done: done,
    tokens_per_s: log.map((r) => r.tokens_per_s),
  });
  await Deno.remove(stateDir, { recursive: true }).catch(() => {});
}

export const trainStep = defineStep({
  name: "train",
  module: import.meta.url,
  params: trainParams,
  inputs: ["tokens"],
  tables: tablesOf(TRAIN_LOG, TRAIN_RUNS),
  resumable: true,
  check: (params: TrainParams) => checkTrainParams(params),
  async run(ctx: StepContext, params: TrainParams, inputs: Record<string, InputValue>) {
    const tokens = inputs.tokens;
    if (!tokens || Array.isArray(tokens)) {
      throw new Error(
        `train: input "tokens" must be one tokenize output, got ${
          Array.isArray(tokens) ? "a list" : "nothing"
        }`,
      );
    }
    await runTraining(ctx, params, (tokens as InputRef).dir);
  },
  /** Disk from the checkpoint plan, time from the last measured tokens/s on the backend. */
  async estimate(params: TrainParams, inputs: Record<string, InputValue> | null, env) {
    const tokens = inputs?.tokens;
    let vocab: number | null = null;
    if (tokens && !Array.isArray(tokens)) vocab = (await readMeta(tokens.dir)).vocab_size;
    const cfg = modelConfig(params.preset, vocab ?? GPT2_VOCAB_SIZE, params.model);
    const p = resolveTrainParams(params, cfg);
    const backend = p.backend ?? env.backend;
    const text = describeEstimate(
      cfg,
      {
        steps: p.steps,
        save_every: p.save_every,
        batch_tokens: p.batch_tokens,
        seq_len: p.seq_len,
        keep_every: p.keep_every ?? 1,
        dtype: p.checkpoint_dtype ?? "float32",
        ema: p.ema !== null,
        swa_start: p.swa?.start_step ?? null,
        online_lawa: p.online_lawa ?? null,
      },
      backend,
      await lastMeasured(env.artifacts, backend, flopsPerToken(cfg, p.seq_len)),
    );
    return vocab === null ? `${text} (vocabulary of ${GPT2_VOCAB_SIZE} assumed)` : text;
  },
});
