// The on-disk format of a checkpoint series, shared by the steps that write series
// (train, average) and those that read them (average, evaluate).
//
// A series is a folder with `series.json` and one safetensors file per checkpoint:
//   <dir>/series.json                    { format, label, method, params, checkpoints }
//   <dir>/step-000200.safetensors        Hugging Face GPT-2 tensor names
// A step output may hold several series in subfolders (train writes `original/`,
// and `ema/`, `swa/` when asked): `listSeries(dir)` finds them all.

export interface CheckpointEntry {
  /** Training step this checkpoint stands for. */
  step: number;
  /** Tokens seen by training at that step. */
  tokens: number;
  /** File name relative to the series folder. */
  file: string;
  /** For averaged checkpoints: the source steps that went into it. */
  sources?: number[];
}

export interface SeriesInfo {
  format: "checkpoint-series/1";
  /** Human label, e.g. "original", "LAWA k=5 ν=2", "EMA 0.9". */
  label: string;
  /** "original" | "lawa" | "ema" | "swa" | ... */
  method: string;
  /** Method params (k, nu, interval, alpha, ...) and, under `train`, the training params. */
  params: Record<string, unknown>;
  /** Model config, so a reader can build the model: { n_layer, n_head, n_embd, vocab_size, block_size, bias }. */
  model: Record<string, unknown>;
  checkpoints: CheckpointEntry[];
}

export const SERIES_FILE = "series.json";

export function checkpointFileName(step: number): string {
  return `step-${String(step).padStart(6, "0")}.safetensors`;
}

export async function writeSeriesInfo(dir: string, info: SeriesInfo): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/${SERIES_FILE}`, JSON.stringify(info, null, 2) + "\n");
}

export async function readSeriesInfo(dir: string): Promise<SeriesInfo> {
  const text = await Deno.readTextFile(`${dir}/${SERIES_FILE}`);
  const info = JSON.parse(text) as SeriesInfo;
  if (info.format !== "checkpoint-series/1") {
    throw new Error(`${dir}/${SERIES_FILE}: unknown series format ${JSON.stringify(info.format)}`);
  }
  return info;
}

/** All series under `dir` (itself and its direct subfolders), sorted by folder name. */
export async function listSeries(dir: string): Promise<{ dir: string; info: SeriesInfo }[]> {
  const found: { dir: string; info: SeriesInfo }[] = [];
  const tryDir = async (d: string) => {
    try {
      found.push({ dir: d, info: await readSeriesInfo(d) });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  };
  await tryDir(dir);
  const subdirs: string[] = [];
  for await (const entry of Deno.readDir(dir)) if (entry.isDirectory) subdirs.push(entry.name);
  for (const name of subdirs.sort()) await tryDir(`${dir}/${name}`);
  return found;
}
