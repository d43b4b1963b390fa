// LAWA computed while training runs, so a long run keeps only the checkpoints its
// windows still need instead of every member (at GPT-2 scale ~350 checkpoints of
// 0.25-0.5 GB): each time a checkpoint lands, the window ending at it (if the plan has
// one) is averaged at once, and the train step deletes members no later window uses.
//
// The math is lm/averaging/averaging.ts's own: windows come from `planLawa` over the
// steps saved so far (a window ending at t depends only on steps <= t, so this is the
// plan the `average` step makes afterwards), and each window is written by
// `averageCheckpoints` over its k members (float64 accumulation, output in the
// members' dtype). So the online series equals averaging the saved checkpoints with
// the `average` step, up to the rounding of the final float cast.
import { averageCheckpoints, type AveragedCheckpoint } from "./averaging.ts";
import {
  type AverageOptions,
  type CheckpointRef,
  methodParams,
  planLawa,
  seriesLabel,
} from "./plan.ts";
import type { SeriesInfo } from "../checkpoints/series.ts";

/** Online LAWA in the `average` step's terms: nu, interval and start are training steps. */
export interface OnlineLawaParams {
  k: number;
  /** Distance between window members (a multiple of the checkpoint spacing; default: it). */
  nu?: number;
  /** A window ends every `interval` steps (a multiple of the checkpoint spacing; default: it). */
  interval?: number;
  /** First training step a window may end at. */
  start: number;
}

export class OnlineLawa {
  readonly options: AverageOptions;
  /** Checkpoints saved so far, by step (members stay here until `forget`). */
  private readonly saved = new Map<number, CheckpointRef>();
  private readonly steps: number[] = [];
  readonly outputs: AveragedCheckpoint[] = [];

  /**
   * `spacing`: training steps between saved checkpoints (save_every); `outDir`: where
   * the averaged checkpoints go (step-NNNNNN.safetensors).
   */
  constructor(
    readonly params: OnlineLawaParams,
    readonly spacing: number,
    readonly outDir: string,
  ) {
    const nu = params.nu ?? spacing;
    const interval = params.interval ?? spacing;
    if (!Number.isInteger(params.k) || params.k <= 0) {
      throw new Error(`online LAWA: k must be a positive integer, got ${params.k}`);
    }
    for (const [name, value] of [["nu", nu], ["interval", interval]] as const) {
      if (!Number.isInteger(value) || value <= 0 || value % spacing !== 0) {
        throw new Error(
          `online LAWA: ${name} ${value} must be a positive multiple of save_every ${spacing} (training steps)`,
        );
      }
    }
    this.options = {
      method: "lawa",
      k: params.k,
      nu,
      interval,
      start: params.start,
      alpha: 0.1,
      stepSize: 1,
      initPoint: 0,
      dtype: "source",
      accumulate: "float64",
    };
  }

  /** Tell it about a checkpoint that exists on disk (also those from before a resume). */
  remember(ref: CheckpointRef): void {
    if (!this.saved.has(ref.step)) this.steps.push(ref.step);
    this.saved.set(ref.step, ref);
  }

  /**
   * A checkpoint at `ref.step` was just saved: average the window ending there, if the
   * plan has one. Returns the averaged checkpoint written, or null.
   */
  async add(ref: CheckpointRef): Promise<AveragedCheckpoint | null> {
    this.remember(ref);
    const window = planLawa(this.steps, this.options).windows.find((w) => w.step === ref.step);
    if (!window) return null;
    const members = window.members.map((s) => this.saved.get(s)!);
    // Only this window's members are handed over, so plan just its end step: start at
    // it, with the members' own spacing as the interval (the sums are the same).
    const only = { ...this.options, start: window.step, interval: this.options.nu };
    const result = await averageCheckpoints(members, only, this.outDir);
    const out = result.outputs[0];
    this.outputs.splice(0, this.outputs.length, ...this.outputs.filter((o) => o.step !== out.step));
    this.outputs.push(out);
    return out;
  }

  /**
   * Whether a window ending after `done` (and at most at `lastStep`) may still use the
   * checkpoint at `step`. A checkpoint s is a member of the windows ending at
   * s, s + ν, ..., s + (k-1)ν that lie on the interval grid.
   */
  stillNeeded(step: number, done: number, lastStep: number): boolean {
    const { k, nu, interval, start } = this.options;
    for (let j = 0; j < k; j++) {
      const t = step + j * nu;
      if (t <= done || t > lastStep) continue;
      if (t >= start && (t - start) % interval === 0) return true;
    }
    return false;
  }

  /** Drop a checkpoint from what windows may use (its file was deleted). */
  forget(step: number): void {
    this.saved.delete(step);
    const i = this.steps.indexOf(step);
    if (i >= 0) this.steps.splice(i, 1);
  }

  /** Steps of the checkpoints it still holds. */
  heldSteps(): number[] {
    return [...this.steps].sort((a, b) => a - b);
  }

  /**
   * series.json of the averaged series, in the form the `average` step writes (so
   * evaluation, savings and figures treat both alike). `source` is the original series'
   * info (its training params, seed and backend are carried over).
   */
  seriesInfo(source: SeriesInfo): SeriesInfo {
    return {
      format: "checkpoint-series/1",
      label: seriesLabel(this.options),
      method: "lawa",
      params: {
        ...methodParams(this.options), // nu and interval in training steps
        checkpoint_spacing: this.spacing,
        source_series: source.label,
        online: true,
        ...Object.fromEntries(
          ["train", "seed", "backend", "backend_version"]
            .filter((key) => source.params[key] !== undefined)
            .map((key) => [key, source.params[key]]),
        ),
      },
      model: source.model,
      checkpoints: [...this.outputs]
        .sort((a, b) => a.step - b.step)
        .map((o) => ({ step: o.step, tokens: o.tokens ?? 0, file: o.file, sources: o.sources })),
    };
  }
}
