// What a training run will cost before it runs (`--dry-run`): disk from its checkpoint
// plan, time from the last tokens/s measured on the same backend. Every finished train
// step writes `_side/run.json` (the train manifest: backend, adapter, model size,
// tokens/s; a side file, being a measurement: pipeline/store.ts);
// an estimate for another model size scales that throughput by training FLOPs per token
// (6·N + 12·L·C·T, the usual dense-transformer count), which is rough across sizes but
// says whether a run takes hours or months.
import type { BackendInfo } from "../backend/backend.ts";
import { type GPTConfig, parameterShapes, trainableNames } from "../model/gpt.ts";
import { planLawa } from "../averaging/plan.ts";
import { isKeptStep } from "../checkpoints/train_disk.ts";
import { type CheckpointDtype, checkpointDtypeBytes } from "../checkpoints/training_state.ts";
import { SIDE_DIR } from "../../pipeline/store.ts";

/** The train manifest's file name; entries made before side files kept it at their top. */
export const RUN_MANIFEST = "run.json";
/** Where a train entry keeps its train manifest: a side file, out of the entry's digest. */
export const RUN_MANIFEST_PATH = `${SIDE_DIR}/${RUN_MANIFEST}`;

/** The train manifest every finished train step writes. */
export interface RunManifest {
  format: "train-run/1";
  backend: string;
  backend_version: string;
  /** Device or library: the webgpu adapter's name, the wasm threads, ... */
  backend_detail: string;
  adapter: BackendInfo["adapter"] | null;
  preset: string;
  model: GPTConfig;
  n_params: number;
  flops_per_token: number;
  batch_tokens: number;
  status: string;
  steps_done: number;
  /** Median over the run's steps, the first (compilation, warm-up) left out. */
  tokens_per_s: number | null;
  finished: string;
}

/** Numbers stored in a checkpoint (every tensor, the frozen biases included). */
export function storedParams(cfg: GPTConfig): number {
  return parameterShapes(cfg).reduce((n, [, shape]) => n + shape.reduce((a, b) => a * b, 1), 0);
}

function trainableParams(cfg: GPTConfig): number {
  const names = new Set(trainableNames(cfg));
  return parameterShapes(cfg)
    .filter(([name]) => names.has(name))
    .reduce((n, [, shape]) => n + shape.reduce((a, b) => a * b, 1), 0);
}

/** Training FLOPs per token: 6·N (forward + backward of the matmuls) + 12·L·C·T (attention). */
export function flopsPerToken(cfg: GPTConfig, seqLen: number): number {
  return 6 * trainableParams(cfg) + 12 * cfg.n_layer * cfg.n_embd * seqLen;
}

function median(xs: number[]): number | null {
  const ok = xs.filter((x) => Number.isFinite(x) && x > 0).sort((a, b) => a - b);
  if (ok.length === 0) return null;
  const mid = Math.floor(ok.length / 2);
  return ok.length % 2 ? ok[mid] : (ok[mid - 1] + ok[mid]) / 2;
}

export async function writeRunManifest(
  outDir: string,
  run: {
    backend: BackendInfo;
    model: GPTConfig;
    params: { preset: string; batch_tokens: number; seq_len: number };
    status: string;
    steps_done: number;
    tokens_per_s: number[];
  },
): Promise<RunManifest> {
  const manifest: RunManifest = {
    format: "train-run/1",
    backend: run.backend.name,
    backend_version: run.backend.version,
    backend_detail: run.backend.detail,
    adapter: run.backend.adapter ?? null,
    preset: run.params.preset,
    model: run.model,
    n_params: storedParams(run.model),
    flops_per_token: flopsPerToken(run.model, run.params.seq_len),
    batch_tokens: run.params.batch_tokens,
    status: run.status,
    steps_done: run.steps_done,
    tokens_per_s: median(run.tokens_per_s.slice(run.tokens_per_s.length > 1 ? 1 : 0)),
    finished: new Date().toISOString(),
  };
  await Deno.mkdir(`${outDir}/${SIDE_DIR}`, { recursive: true });
  await Deno.writeTextFile(
    `${outDir}/${RUN_MANIFEST_PATH}`,
    JSON.stringify(manifest, null, 2) + "\n",
  );
  return manifest;
}

/** A train entry's manifest (from its side files, else where older entries kept it). */
async function readRunManifest(entryDir: string): Promise<RunManifest | null> {
  for (const path of [RUN_MANIFEST_PATH, RUN_MANIFEST]) {
    try {
      return JSON.parse(await Deno.readTextFile(`${entryDir}/${path}`));
    } catch {
      // not there, or not JSON: try the older place
    }
  }
  return null;
}

/**
 * The most recently finished train run on `backend` in the artifacts' cache, or null.
 * With `flopsPerToken`, a run of a model that costs the same per token (the same model)
 * is preferred to a newer one of another size, since no scaling is then needed.
 */
export async function lastMeasured(
  artifacts: string,
  backend: string,
  flopsPerToken?: number,
): Promise<RunManifest | null> {
  let best: RunManifest | null = null;
  const better = (m: RunManifest, than: RunManifest | null) => {
    if (!than) return true;
    const same = (r: RunManifest) => r.flops_per_token === flopsPerToken;
    if (same(m) !== same(than)) return same(m);
    return m.finished > than.finished;
  };
  try {
    for await (const entry of Deno.readDir(`${artifacts}/cache`)) {
      if (!entry.isDirectory || entry.name.startsWith(".")) continue;
      const m = await readRunManifest(`${artifacts}/cache/${entry.name}`);
      if (!m) continue;
      if (m.format !== "train-run/1" || m.backend !== backend || !m.tokens_per_s) continue;
      if (better(m, best)) best = m;
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return best;
}

/** What the estimate needs of a train step's params (after defaults). */
export interface PlanParams {
  steps: number;
  save_every: number;
  batch_tokens: number;
  seq_len: number;
  keep_every: number;
  dtype: CheckpointDtype;
  ema: boolean;
  /** Step SWA starts at, or null without SWA. */
  swa_start: number | null;
  /** Online LAWA (nu, interval in training steps, default save_every), or null. */
  online_lawa: { k: number; nu?: number; interval?: number; start: number } | null;
}

export interface DiskEstimate {
  /** Bytes left when the run has finished. */
  final: number;
  /** Most bytes on disk at once (with the resume state and LAWA's members in flight). */
  peak: number;
  checkpoints: number;
}

/** Disk of a run from its checkpoint plan (safetensors headers are ignored: kilobytes). */
export function estimateDisk(cfg: GPTConfig, p: PlanParams): DiskEstimate {
  const n = storedParams(cfg);
  const ckpt = n * checkpointDtypeBytes(p.dtype);
  const saves: number[] = [];
  for (let s = p.save_every; s <= p.steps; s += p.save_every) saves.push(s);
  if (saves.at(-1) !== p.steps) saves.push(p.steps);
  const kept = saves.filter((s) => isKeptStep(s, p));
  const swaKept = p.swa_start === null ? 0 : kept.filter((s) => s > p.swa_start!).length;
  let lawa = 0, inFlight = 0;
  if (p.online_lawa) {
    const o = p.online_lawa;
    lawa = planLawa(saves, {
      k: o.k,
      nu: o.nu ?? p.save_every,
      interval: o.interval ?? p.save_every,
      start: o.start,
    }).windows.length;
    inFlight = Math.min(saves.length, ((o.k - 1) * (o.nu ?? p.save_every)) / p.save_every + 1);
  }
  const checkpoints = kept.length * (1 + (p.ema ? 1 : 0)) + swaKept + lawa;
  const final = checkpoints * ckpt;
  // Resume state: weights, both AdamW moments and the EMA/SWA copies in float32, written
  // beside the previous one before that is removed.
  const stateCopies = 3 + (p.ema ? 1 : 0) + (p.swa_start !== null ? 1 : 0);
  const peak = final + 2 * stateCopies * n * 4 + inFlight * ckpt;
  return { final, peak, checkpoints };
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = bytes, i = 0;
  while (v >= 1000 && i < units.length - 1) [v, i] = [v / 1000, i + 1];
  return `${v >= 100 || i === 0 ? v.toFixed(0) : v.toPrecision(2)} ${units[i]}`;
}

export function formatDuration(seconds: number): string {
  if (seconds < 90) return `${seconds.toFixed(0)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(0)} min`;
  if (seconds < 2 * 86400) return `${(seconds / 3600).toFixed(1)} h`;
  if (seconds < 730 * 86400) return `${(seconds / 86400).toFixed(1)} days`;
  return `${Math.round(seconds / (365.25 * 86400)).toLocaleString("en-US")} years`;
}

/** Seconds for `tokens` from a measured run, scaled by FLOPs per token; null if none. */
export function estimateSeconds(
  tokens: number,
  flops: number,
  measured: Pick<RunManifest, "tokens_per_s" | "flops_per_token"> | null,
): number | null {
  if (!measured?.tokens_per_s) return null;
  const rate = measured.tokens_per_s * measured.flops_per_token / flops;
  return tokens / rate;
}

/** The dry-run text: "disk 12 GB (peak 15 GB, 70 checkpoints) · time ≈ 3.1 days at ...". */
export function describeEstimate(
  cfg: GPTConfig,
  p: PlanParams,
  backend: string,
  measured: RunManifest | null,
): string {
  const disk = estimateDisk(cfg, p);
  const flops = flopsPerToken(cfg, p.seq_len);
  const seconds = estimateSeconds(p.steps * p.batch_tokens, flops, measured);
  const diskText = `disk ${formatBytes(disk.final)} (peak ${formatBytes(disk.peak)}, ` +
    `${disk.checkpoints} checkpoints)`;
  if (seconds === null || !measured) {
    return `${diskText} · time unknown: no finished train run on ${backend} in this artifacts folder to measure tokens/s`;
  }
  const rate = p.steps * p.batch_tokens / seconds;
  const scaled = measured.flops_per_token === flops
    ? ""
    : `, scaled by FLOPs from ${Math.round(measured.tokens_per_s!)} tok/s of ${measured.preset}`;
  return `${diskText} · time ≈ ${formatDuration(seconds)} at ${formatRate(rate)} tok/s ` +
    `(${backend} on ${measured.backend_detail}${scaled})`;
}

function formatRate(r: number): string {
  return r >= 1000 ? `${(r / 1000).toFixed(1)}k` : r.toFixed(r >= 10 ? 0 : 2);
}
