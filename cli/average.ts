// `deno task average`: LAWA / EMA / SWA over a user's own folder of safetensors
// checkpoints (a series folder of this project, or Hugging Face style checkpoints,
// sharded or not). Everything is validated before anything is written, and the output
// folder appears only when complete (written next to it, then renamed).
import { averageCheckpoints } from "../lm/averaging/averaging.ts";
import {
  type AverageOptions,
  type CheckpointRef,
  DEFAULT_AVERAGE_OPTIONS,
  methodParams,
  seriesLabel,
  typicalSpacing,
} from "../lm/averaging/plan.ts";
import {
  CheckpointReader,
  INDEX_SUFFIX,
  resolveCheckpointPath,
} from "../lm/checkpoints/sharded.ts";
import { type DType, isFloatDType } from "../lm/checkpoints/dtypes.ts";
import { listSeries, type SeriesInfo, writeSeriesInfo } from "../lm/checkpoints/series.ts";

export const HELP = `Average safetensors checkpoints (LAWA, EMA, SWA).

Usage: deno task average [options] <dir> <out>

  <dir>  a checkpoint series folder (series.json), or a folder of checkpoints:
           <dir>/step1000/model.safetensors       (one subfolder per checkpoint)
           <dir>/step1000/model.safetensors.index.json + shards
           <dir>/checkpoint-1000.safetensors      (one file per checkpoint)
           <dir>/ckpt-1000.safetensors.index.json + shards beside it
         The step of a checkpoint is the LAST number in its file or folder name
         (step-000200 -> 200, checkpoint-1000 -> 1000, global_step500 -> 500).
  <out>  folder to create (must not exist or be empty): one step-NNNNNN.safetensors per
         averaged checkpoint, named by the step it stands for (its newest member), with
         the source steps in its metadata, and a series.json.

Options (steps are training steps, as read from the names):
  --method lawa|ema|swa   default lawa
  --k N                   LAWA: checkpoints per window (default 5)
  --nu N                  LAWA: steps between window members, a multiple of the most
                          common gap between consecutive checkpoints (default: that gap)
  --interval N            LAWA: a window ends at every checkpoint step t with
                          (t - start) % interval == 0 (default: nu)
  --start STEP            first step: LAWA window ends and EMA/SWA members are >= STEP
                          (default 0; SWA "late" = 75% of training)
  --alpha A               EMA weight of the newest checkpoint, decay 1-A (default 0.1)
  --step-size N           EMA/SWA: update at every N-th checkpoint (default 1)
  --init-point N          EMA/SWA: update only after the N-th checkpoint (default 0)
  --dtype source|float32  output dtype of float tensors (default source)
  --accumulate float64|float32   accumulator precision (default float64)
  -h, --help              this text

LAWA windows hold exactly the steps t, t-nu, ..., t-(k-1)nu; a window with a missing
checkpoint is skipped (and listed in the summary), never filled with a neighbour.
Integer tensors are copied from the newest member; names are matched after stripping
"_orig_mod." and "module." prefixes.
`;

export interface CliOptions {
  dir: string;
  out: string;
  average: Partial<AverageOptions> & Pick<AverageOptions, "method">;
  help: boolean;
}

const NUMERIC_FLAGS: Record<string, keyof AverageOptions> = {
  "k": "k",
  "nu": "nu",
  "interval": "interval",
  "start": "start",
  "alpha": "alpha",
  "step-size": "stepSize",
  "init-point": "initPoint",
};

export function parseAverageArgs(args: string[]): CliOptions {
  const average: Record<string, unknown> = { method: "lawa" };
  const positional: string[] = [];
  let help = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "-h" || arg === "--help") {
      help = true;
      continue;
    }
    if (!arg.startsWith("--")) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const flag = arg.slice(2, eq < 0 ? undefined : eq);
    const value = eq < 0 ? args[++i] : arg.slice(eq + 1);
    if (value === undefined) throw new Error(`option --${flag} needs a value`);
    if (flag in NUMERIC_FLAGS) {
      const n = Number(value);
      if (value.trim() === "" || !Number.isFinite(n)) {
        throw new Error(`option --${flag} expects a number, got ${JSON.stringify(value)}`);
      }
      average[NUMERIC_FLAGS[flag]] = n;
    } else if (flag === "method") {
      if (!["lawa", "ema", "swa"].includes(value)) {
        throw new Error(`option --method expects lawa, ema or swa, got ${JSON.stringify(value)}`);
      }
      average.method = value;
    } else if (flag === "dtype") {
      if (value !== "source" && value !== "float32") {
        throw new Error(`option --dtype expects source or float32, got ${JSON.stringify(value)}`);
      }
      average.dtype = value;
    } else if (flag === "accumulate") {
      if (value !== "float64" && value !== "float32") {
        throw new Error(
          `option --accumulate expects float64 or float32, got ${JSON.stringify(value)}`,
        );
      }
      average.accumulate = value;
    } else {
      throw new Error(`unknown option --${flag} (see --help)`);
    }
  }
  if (help) return { dir: "", out: "", average: average as CliOptions["average"], help };
  if (positional.length !== 2) {
    throw new Error(`expected <dir> <out>, got ${positional.length} arguments (see --help)`);
  }
  return {
    dir: positional[0],
    out: positional[1],
    average: average as CliOptions["average"],
    help,
  };
}

/** The step a checkpoint name stands for: the last number in it (extensions removed). */
export function stepFromName(name: string): number | null {
  const base = name.replace(/\.safetensors\.index\.json$/, "").replace(/\.safetensors$/, "");
  const digits = base.match(/\d+/g);
  return digits ? Number(digits[digits.length - 1]) : null;
}

export interface FoundCheckpoints {
  checkpoints: CheckpointRef[];
  /** The series the checkpoints come from, when `dir` holds series.json files. */
  series?: SeriesInfo;
}

/** Find the checkpoints in `dir` (see HELP for the layouts understood). */
export async function discoverCheckpoints(dir: string): Promise<FoundCheckpoints> {
  try {
    if (!(await Deno.stat(dir)).isDirectory) throw new Error(`${dir}: not a folder`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`${dir}: folder not found`);
    throw e;
  }
  const series = await listSeries(dir);
  if (series.length > 0) {
    const original = series.filter((s) => s.info.method === "original");
    const chosen = series.length === 1 ? series[0] : original.length === 1 ? original[0] : null;
    if (!chosen) {
      throw new Error(
        `${dir}: holds ${series.length} series (${
          series.map((s) => s.dir).join(", ")
        }); pass one folder`,
      );
    }
    return {
      series: chosen.info,
      checkpoints: chosen.info.checkpoints.map((c) => ({
        step: c.step,
        tokens: c.tokens,
        path: `${chosen.dir}/${c.file}`,
      })),
    };
  }

  const files: string[] = [];
  const folders: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    (e.isDirectory ? folders : e.isFile ? files : []).push(e.name);
  }
  const found: { name: string; path: string }[] = [];
  const shards = new Set<string>();
  for (const name of files.filter((n) => n.endsWith(INDEX_SUFFIX))) {
    found.push({ name, path: `${dir}/${name}` });
    try {
      const index = JSON.parse(await Deno.readTextFile(`${dir}/${name}`));
      for (const shard of Object.values(index.weight_map ?? {})) shards.add(String(shard));
    } catch {
      throw new Error(`${dir}/${name}: index is not valid JSON`);
    }
  }
  for (const name of files) {
    if (name.endsWith(".safetensors") && !shards.has(name)) {
      found.push({ name, path: `${dir}/${name}` });
    }
  }
  for (const name of folders) {
    let hasSafetensors = false;
    for await (const e of Deno.readDir(`${dir}/${name}`)) {
      if (e.isFile && (e.name.endsWith(".safetensors") || e.name.endsWith(INDEX_SUFFIX))) {
        hasSafetensors = true;
      }
    }
    if (hasSafetensors) found.push({ name, path: await resolveCheckpointPath(`${dir}/${name}`) });
  }
  if (found.length === 0) {
    throw new Error(
      `${dir}: no safetensors checkpoints (no series.json, *.safetensors or checkpoint folders)`,
    );
  }
  const byStep = new Map<number, string>();
  const checkpoints: CheckpointRef[] = [];
  for (const { name, path } of found) {
    const step = stepFromName(name);
    if (step === null) {
      throw new Error(`${dir}/${name}: no step number in the name (expected e.g. step1000)`);
    }
    if (byStep.has(step)) {
      throw new Error(`${dir}: ${byStep.get(step)} and ${name} both read as step ${step}`);
    }
    byStep.set(step, name);
    checkpoints.push({ step, path });
  }
  checkpoints.sort((a, b) => a.step - b.step);
  return { checkpoints };
}

async function assertFreshOutput(out: string): Promise<void> {
  try {
    for await (const _ of Deno.readDir(out)) {
      throw new Error(`${out}: output folder exists and is not empty`);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    if (e instanceof Deno.errors.NotADirectory) {
      throw new Error(`${out}: output path exists and is a file`);
    }
    throw e;
  }
}

/** An absolute path with links resolved, also for a path that does not exist yet. */
async function canonicalPath(path: string): Promise<string> {
  const trimmed = path.replace(/\/+$/, "") || "/";
  try {
    return await Deno.realPath(trimmed);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    const cut = trimmed.lastIndexOf("/");
    const parent = cut < 0 ? "." : trimmed.slice(0, cut) || "/";
    return `${await canonicalPath(parent)}/${trimmed.slice(cut + 1)}`.replace(/^\/\//, "/");
  }
}

/** An output inside the input folder would be read as members by the next average of it. */
export async function assertOutsideInput(dir: string, out: string): Promise<void> {
  const [d, o] = [await canonicalPath(dir), await canonicalPath(out)];
  if (o === d || o.startsWith(d === "/" ? "/" : `${d}/`)) {
    throw new Error(
      `${out}: the output folder is inside the input folder ${dir} (the next average of ` +
        `${dir} would average the averages); write it elsewhere`,
    );
  }
}

/** Index and kind of the first NaN or infinity in raw tensor bytes, or null. */
export function firstNonFinite(bytes: Uint8Array, dtype: DType): string | null {
  const count = bytes.length / (dtype === "F64" ? 8 : dtype === "F32" ? 4 : 2);
  const describe = (i: number, v: number) => `${Number.isNaN(v) ? "NaN" : v} at index ${i}`;
  if (dtype === "F32" || dtype === "F64") {
    const Arr = dtype === "F32" ? Float32Array : Float64Array;
    const aligned = bytes.byteOffset % Arr.BYTES_PER_ELEMENT === 0 ? bytes : bytes.slice();
    const v = new Arr(aligned.buffer as ArrayBuffer, aligned.byteOffset, count);
    for (let i = 0; i < count; i++) if (!Number.isFinite(v[i])) return describe(i, v[i]);
    return null;
  }
  // BF16 and F16: an exponent of all ones is NaN or infinity.
  const mask = dtype === "BF16" ? 0x7f80 : 0x7c00;
  const mant = dtype === "BF16" ? 0x007f : 0x03ff;
  for (let i = 0; i < count; i++) {
    const h = bytes[2 * i] | (bytes[2 * i + 1] << 8);
    if ((h & mask) === mask) {
      return describe(i, h & mant ? NaN : h & 0x8000 ? -Infinity : Infinity);
    }
  }
  return null;
}

/**
 * Members that would make a wrong average without a word: a NaN or infinity in a
 * float tensor (it spreads to every window holding it), and a tensor stored in
 * different float dtypes by different members (the output dtype would depend on which
 * member is newest) unless `--dtype float32` asks for one output dtype.
 */
export async function checkMembers(
  checkpoints: CheckpointRef[],
  outputDtype: AverageOptions["dtype"] | undefined,
): Promise<void> {
  const dtypes = new Map<string, { dtype: DType; file: string }>();
  let buffer = new Uint8Array(0);
  for (const c of checkpoints) {
    const reader = await CheckpointReader.open(c.path);
    try {
      for (const [name, t] of reader.tensors) {
        if (!isFloatDType(t.dtype)) continue;
        const first = dtypes.get(name);
        if (!first) dtypes.set(name, { dtype: t.dtype, file: t.file });
        else if (first.dtype !== t.dtype && outputDtype !== "float32") {
          throw new Error(
            `${t.file}: tensor ${name} is ${t.dtype} but ${first.dtype} in ${first.file}: ` +
              `members of mixed float dtypes need an explicit output dtype (--dtype float32)`,
          );
        }
        if (buffer.length < t.end - t.begin) buffer = new Uint8Array(t.end - t.begin);
        const bad = firstNonFinite(await reader.readBytes(name, buffer), t.dtype);
        if (bad !== null) {
          throw new Error(
            `${t.file}: tensor ${name} holds ${bad}: a checkpoint with NaN or infinity ` +
              `cannot be averaged (leave it out of the folder)`,
          );
        }
      }
    } finally {
      reader.close();
    }
  }
}

/** Run the command; throws an Error with a one-line message on bad input. */
export async function runAverageCli(args: string[], log: (line: string) => void): Promise<void> {
  const cli = parseAverageArgs(args);
  if (cli.help) {
    log(HELP);
    return;
  }
  await assertOutsideInput(cli.dir, cli.out);
  await assertFreshOutput(cli.out);
  const found = await discoverCheckpoints(cli.dir);
  await checkMembers(found.checkpoints, cli.average.dtype);
  const steps = found.checkpoints.map((c) => c.step);
  const nu = cli.average.nu ?? typicalSpacing(steps);
  const opts: AverageOptions = {
    ...DEFAULT_AVERAGE_OPTIONS,
    ...cli.average,
    nu,
    interval: cli.average.interval ?? nu,
  };
  log(
    `average: ${seriesLabel(opts)}${
      opts.method === "lawa" ? ` interval=${opts.interval}` : ""
    } over ${steps.length} checkpoints (steps ${steps[0]}..${
      steps[steps.length - 1]
    }) in ${cli.dir}`,
  );
  const tmp = `${cli.out.replace(/\/+$/, "")}.tmp-${Deno.pid}`;
  const started = performance.now();
  try {
    const result = await averageCheckpoints(found.checkpoints, opts, tmp, {
      onProgress: (done, total, info) => {
        if (done > 0) log(`  [${done}/${total}] ${info}`);
      },
    });
    const info: SeriesInfo = {
      format: "checkpoint-series/1",
      label: seriesLabel(opts),
      method: opts.method,
      params: {
        ...methodParams(opts),
        source: cli.dir,
        ...(found.series?.params.train ? { train: found.series.params.train } : {}),
      },
      model: found.series?.model ?? {},
      // Plain checkpoint folders do not say how many tokens a step saw: 0 stands for unknown.
      checkpoints: result.outputs.map((o) => ({ ...o, tokens: o.tokens ?? 0 })),
    };
    await writeSeriesInfo(tmp, info);
    await Deno.remove(cli.out).catch(() => {}); // an empty folder may stand in the way
    await Deno.rename(tmp, cli.out);
    const seconds = (performance.now() - started) / 1000;
    const first = result.outputs[0];
    const last = result.outputs[result.outputs.length - 1];
    log(
      `wrote ${result.outputs.length} averaged checkpoints to ${cli.out} (steps ${first.step}..${last.step}, ` +
        `first from [${first.sources.join(", ")}]); read ${
          (result.bytesRead / 1e9).toFixed(3)
        } GB in ${seconds.toFixed(2)} s`,
    );
    for (const s of result.skipped) {
      log(`  skipped window ending at step ${s.step}: missing step(s) ${s.missing.join(", ")}`);
    }
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

if (import.meta.main) {
  try {
    await runAverageCli(Deno.args, (line) => console.error(line));
  } catch (e) {
    console.error(`average: ${e instanceof Error ? e.message : String(e)}`);
    Deno.exit(1);
  }
}
