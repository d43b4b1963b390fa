// The `average` step: a checkpoint series in, a derived series out (LAWA, EMA or SWA).
//
// Units: `nu`, `interval` and `start` are training steps, as in the paper and in
// `deno task average`; `nu` and `interval` must be multiples of the input's checkpoint
// spacing (its `save_every`), so `nu: 10` at `save_every: 5` averages every 2nd
// checkpoint. `alpha` follows Algorithm 2 of the paper: the weight of the newest
// checkpoint (EMA decay 0.9 is alpha 0.1).
import { z } from "zod";
import { defineStep, type InputRef } from "../pipeline/step.ts";
import { averageCheckpoints } from "../lm/averaging/averaging.ts";
import { methodParams, seriesLabel, typicalSpacing } from "../lm/averaging/plan.ts";
import { listSeries, type SeriesInfo, writeSeriesInfo } from "../lm/checkpoints/series.ts";

export const AverageParams = z.object({
  method: z.enum(["lawa", "ema", "swa"]),
  /** LAWA: checkpoints per window. */
  k: z.number().int().positive().default(5),
  /** LAWA: distance ν between window members, in training steps (default: the checkpoint spacing). */
  nu: z.number().int().positive().optional(),
  /** LAWA: a window ends every `interval` training steps (default: the checkpoint spacing). */
  interval: z.number().int().positive().optional(),
  /** EMA: weight of the newest checkpoint (Algorithm 2's alpha; decay = 1 - alpha). */
  alpha: z.number().gt(0).lte(1).default(0.1),
  /** EMA/SWA: update at every step_size-th checkpoint (Algorithm 2). */
  step_size: z.number().int().positive().default(1),
  /** EMA/SWA: update only after the init_point-th checkpoint (Algorithm 2). */
  init_point: z.number().int().nonnegative().default(0),
  /** First training step used (LAWA window ends, EMA/SWA members); SWA "late" = 75% of the run. */
  start: z.number().int().nonnegative().default(0),
  /** Output dtype of float tensors. */
  dtype: z.enum(["source", "float32"]).default("source"),
  /** Accumulator precision. */
  accumulate: z.enum(["float64", "float32"]).default("float64"),
});
export type AverageParams = z.infer<typeof AverageParams>;

/** The series to average in an input folder: the "original" one, or the only one. */
async function pickSeries(ref: InputRef): Promise<{ dir: string; info: SeriesInfo }> {
  const all = await listSeries(ref.dir);
  if (all.length === 1) return all[0];
  const original = all.filter((s) => s.info.method === "original");
  if (original.length === 1) return original[0];
  throw new Error(
    `average: input "${ref.node}" holds ${all.length} series (${
      all.map((s) => s.info.method).join(", ") || "none"
    }), expected one or one with method "original"`,
  );
}

export const averageStep = defineStep({
  name: "average",
  module: import.meta.url,
  params: AverageParams,
  inputs: ["series"],
  async run(ctx, params, inputs) {
    const ref = inputs.series;
    if (!ref || Array.isArray(ref)) {
      throw new Error(`average: input "series" must be one checkpoint series, not a list`);
    }
    const source = await pickSeries(ref);
    const checkpoints = source.info.checkpoints.map((c) => ({
      step: c.step,
      tokens: c.tokens,
      path: `${source.dir}/${c.file}`,
    }));
    const spacing = typicalSpacing(checkpoints.map((c) => c.step));
    const opts = {
      method: params.method,
      k: params.k,
      nu: params.nu ?? spacing,
      interval: params.interval ?? spacing,
      start: params.start,
      alpha: params.alpha,
      stepSize: params.step_size,
      initPoint: params.init_point,
      dtype: params.dtype,
      accumulate: params.accumulate,
    };
    const label = seriesLabel(opts);
    const started = performance.now();
    const result = await averageCheckpoints(checkpoints, opts, ctx.outDir, {
      signal: ctx.signal,
      durable: false, // the cache fsyncs every output when it commits this step

      onProgress: (done, total, info) => {
        if (done === 0) ctx.progress.start(label, total, "ckpt");
        else ctx.progress.update(done, info);
      },
    });
    await writeSeriesInfo(ctx.outDir, {
      format: "checkpoint-series/1",
      label,
      method: params.method,
      params: {
        ...methodParams(opts), // nu and interval in training steps
        checkpoint_spacing: spacing,
        source_series: source.info.label,
        // Which training run the series comes from (savings and figures match on these).
        ...Object.fromEntries(
          ["train", "seed", "backend", "backend_version"]
            .filter((k) => source.info.params[k] !== undefined)
            .map((k) => [k, source.info.params[k]]),
        ),
      },
      model: source.info.model,
      checkpoints: result.outputs.map((o) => ({ ...o, tokens: o.tokens ?? 0 })),
    });
    const seconds = (performance.now() - started) / 1000;
    ctx.progress.log(
      `${label}: ${result.outputs.length} checkpoints from ${checkpoints.length} (spacing ${spacing} steps), ` +
        `${result.checkpointReads} checkpoint reads in ${seconds.toFixed(1)} s` +
        (result.skipped.length
          ? `; skipped windows at steps ${result.skipped.map((s) => s.step).join(", ")}`
          : ""),
    );
  },
});
