// What a training run keeps on disk, so that a paper-scale run (GPT-2, 70K steps, a
// checkpoint every 200 steps) needs gigabytes rather than most of a terabyte:
//
// - checkpoints in bfloat16 if asked (half of float32; averaging still reads them into
//   a float64 accumulator);
// - `keep_every`: only every N-th saved checkpoint (and the last) stays in the series;
// - online LAWA (lm/averaging/online.ts): the averaged series is written as training
//   goes, and a checkpoint that is not kept is written to `window/` only while a LAWA
//   window still needs it, then deleted.
//
// Layout under the train step's output folder: original/ (kept checkpoints), lawa/
// (online LAWA series), window/ (members in flight; empty once the run ends).
import { OnlineLawa, type OnlineLawaParams } from "../averaging/online.ts";
import { checkpointFileName, type SeriesInfo, writeSeriesInfo } from "./series.ts";
import { type Arrays, type CheckpointDtype, writeCheckpoint } from "./training_state.ts";

export interface TrainDiskParams {
  save_every: number;
  batch_tokens: number;
  steps: number;
  keep_every: number;
  dtype: CheckpointDtype;
  online_lawa: OnlineLawaParams | null;
}

export const WINDOW_DIR = "window";
export const LAWA_DIR = "lawa";

/** Whether the checkpoint saved at `step` stays in the series (every N-th save and the last). */
export function isKeptStep(
  step: number,
  p: Pick<TrainDiskParams, "save_every" | "keep_every" | "steps">,
): boolean {
  if (step === p.steps) return true;
  return step % p.save_every === 0 && (step / p.save_every) % p.keep_every === 0;
}

export class TrainDisk {
  readonly online: OnlineLawa | null;
  private readonly windowDir: string;
  private readonly lawaDir: string;

  constructor(readonly outDir: string, readonly p: TrainDiskParams) {
    this.windowDir = `${outDir}/${WINDOW_DIR}`;
    this.lawaDir = `${outDir}/${LAWA_DIR}`;
    this.online = p.online_lawa ? new OnlineLawa(p.online_lawa, p.save_every, this.lawaDir) : null;
  }

  isKept(step: number): boolean {
    return isKeptStep(step, this.p);
  }

  /**
   * Pick up what an interrupted run left (checkpoints and LAWA outputs up to `done`).
   * `originalDir`/`original` are the original series as reopened by the train step.
   */
  async resume(done: number, originalDir: string, original: SeriesInfo): Promise<void> {
    const online = this.online;
    if (!online) return;
    await Deno.mkdir(this.windowDir, { recursive: true });
    await Deno.mkdir(this.lawaDir, { recursive: true });
    for (const c of original.checkpoints) {
      if (c.step <= done) {
        online.remember({ step: c.step, tokens: c.tokens, path: `${originalDir}/${c.file}` });
      }
    }
    for await (const entry of Deno.readDir(this.windowDir)) {
      const m = /^step-(\d+)\.safetensors$/.exec(entry.name);
      const step = m ? Number(m[1]) : NaN;
      if (!(step <= done)) {
        await Deno.remove(`${this.windowDir}/${entry.name}`).catch(() => {});
        continue;
      }
      online.remember({
        step,
        tokens: step * this.p.batch_tokens,
        path: `${this.windowDir}/${entry.name}`,
      });
    }
    try {
      const old = JSON.parse(await Deno.readTextFile(`${this.lawaDir}/series.json`)) as SeriesInfo;
      for (const c of old.checkpoints) {
        if (c.step <= done) online.outputs.push({ ...c, sources: c.sources ?? [] });
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }

  /**
   * After the checkpoint at `step` was saved (`keptPath`: its file in the original
   * series, or null when it was not kept): write it to window/ if a LAWA window needs
   * it, average the window ending here, and delete members no later window uses.
   */
  async afterSave(
    step: number,
    tokens: number,
    weights: Arrays,
    metadata: Record<string, number>,
    keptPath: string | null,
    original: SeriesInfo,
  ): Promise<void> {
    const online = this.online;
    if (!online) return;
    let path = keptPath;
    if (path === null) {
      await Deno.mkdir(this.windowDir, { recursive: true });
      path = `${this.windowDir}/${checkpointFileName(step)}`;
      await writeCheckpoint(path, weights, { step, tokens, ...metadata }, this.p.dtype);
    }
    await Deno.mkdir(this.lawaDir, { recursive: true });
    const out = await online.add({ step, tokens, path });
    if (out) await writeSeriesInfo(this.lawaDir, online.seriesInfo(original));
    for (const held of online.heldSteps()) {
      if (online.stillNeeded(held, step, this.p.steps)) continue;
      online.forget(held);
      if (!this.isKept(held)) {
        await Deno.remove(`${this.windowDir}/${checkpointFileName(held)}`).catch(() => {});
      }
    }
  }

  /** Once training ended: the series.json of the LAWA series (also when it is empty). */
  async finish(original: SeriesInfo): Promise<void> {
    if (!this.online) return;
    await Deno.mkdir(this.lawaDir, { recursive: true });
    await writeSeriesInfo(this.lawaDir, this.online.seriesInfo(original));
    await Deno.remove(this.windowDir, { recursive: true }).catch(() => {});
  }
}
