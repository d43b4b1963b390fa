// The `lmc` step: linear mode connectivity (the paper's Fig. 15). For pairs of
// checkpoints (a, b) of one series, the held-out loss of α·θ_a + (1−α)·θ_b for each α,
// per domain and 'all'. A barrier (loss above both ends in between) means the two
// checkpoints are not linearly mode connected. The blend is computed in memory from the
// float32 arrays of the two checkpoint files, one α at a time.
import { z } from "zod";
import { defineStep, type InputRef, type InputValue } from "../pipeline/step.ts";
import { type CheckpointEntry, listSeries } from "../lm/checkpoints/series.ts";
import { type BackendName, setBackend } from "../lm/backend/backend.ts";
import {
  configFromSeries,
  disposeWeights,
  evaluateWindows,
  loadHeldOut,
  poolResults,
} from "../lm/eval/loss.ts";
import { readSafetensorsF32 } from "../lm/checkpoints/safetensors.ts";
import { weightsFromArrays } from "../lm/model/gpt.ts";
import { appendRows, LMC, type RowOf, tablesOf } from "./tables.ts";

/** Fractions of the run for the "early-late" preset: (very early, early), (early, mid), (mid, end). */
export const EARLY_LATE_FRACTIONS: [number, number][] = [[0.015, 0.15], [0.15, 0.5], [0.5, 1]];

const Params = z.object({
  /** Subfolder of the series to use (default: the 'original' series, else the only one). */
  series: z.string().optional(),
  /** Checkpoint step pairs, or "early-late" (see EARLY_LATE_FRACTIONS). */
  pairs: z.union([
    z.array(z.tuple([z.number().int(), z.number().int()])).min(1),
    z.literal("early-late"),
  ])
    .default("early-late"),
  alphas: z.array(z.number()).min(1).default([0, 0.2, 0.4, 0.6, 0.8, 1]),
  seq_len: z.number().int().positive().optional(),
  max_windows: z.number().int().positive().default(32),
  batch_size: z.number().int().positive().default(8),
  domains: z.array(z.string()).optional(),
});

function single(v: InputValue | undefined, name: string): InputRef {
  if (!v) throw new Error(`lmc: missing input '${name}'`);
  if (Array.isArray(v)) {
    if (v.length !== 1) {
      throw new Error(`lmc: input '${name}' must be one instance, got ${v.length}`);
    }
    return v[0];
  }
  return v;
}

/** Checkpoint pairs of the "early-late" preset: nearest checkpoints to fractions of the last step. */
export function earlyLatePairs(steps: number[]): [number, number][] {
  const sorted = [...steps].sort((a, b) => a - b);
  const last = sorted[sorted.length - 1];
  const nearest = (f: number) =>
    sorted.reduce(
      (best, s) => Math.abs(s - f * last) < Math.abs(best - f * last) ? s : best,
      sorted[0],
    );
  const pairs: [number, number][] = [];
  for (const [fa, fb] of EARLY_LATE_FRACTIONS) {
    const a = nearest(fa);
    const b = nearest(fb);
    if (a !== b && !pairs.some(([x, y]) => x === a && y === b)) pairs.push([a, b]);
  }
  return pairs;
}

/** θ = α·a + (1−α)·b for every tensor (same names and shapes). */
export function interpolateArrays(
  a: Record<string, { shape: number[]; data: Float32Array }>,
  b: Record<string, { shape: number[]; data: Float32Array }>,
  alpha: number,
): Record<string, { shape: number[]; data: Float32Array }> {
  const out: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [name, ta] of Object.entries(a)) {
    const tb = b[name];
    if (!tb || tb.data.length !== ta.data.length) {
      throw new Error(`lmc: tensor ${name} differs in shape between the two checkpoints`);
    }
    const data = new Float32Array(ta.data.length);
    for (let i = 0; i < data.length; i++) data[i] = alpha * ta.data[i] + (1 - alpha) * tb.data[i];
    out[name] = { shape: ta.shape, data };
  }
  return out;
}

export const lmcStep = defineStep({
  name: "lmc",
  module: import.meta.url,
  params: Params,
  inputs: ["series", "tokens"],
  tables: tablesOf(LMC),
  async run(ctx, params, inputs) {
    const seriesRef = single(inputs.series, "series");
    const tokensRef = single(inputs.tokens, "tokens");
    await setBackend(ctx.backend as BackendName); // checked there, with a clear error

    const found = await listSeries(seriesRef.dir);
    const rel = (d: string) => d === seriesRef.dir ? "." : d.slice(seriesRef.dir.length + 1);
    const chosen = params.series !== undefined
      ? found.find((s) => rel(s.dir) === params.series)
      : found.find((s) => s.info.method === "original") ??
        (found.length === 1 ? found[0] : undefined);
    if (!chosen) {
      throw new Error(
        `lmc: cannot pick a series in the output of ${seriesRef.node} (found: ${
          found.map((s) => rel(s.dir)).join(", ") || "none"
        }); set params.series`,
      );
    }
    const cfg = configFromSeries(chosen.info, `${seriesRef.node}/${rel(chosen.dir)}`);
    const byStep = new Map<number, CheckpointEntry>(
      chosen.info.checkpoints.map((c) => [c.step, c]),
    );
    const pairs = params.pairs === "early-late" ? earlyLatePairs([...byStep.keys()]) : params.pairs;
    for (const [a, b] of pairs) {
      for (const s of [a, b]) {
        if (!byStep.has(s)) {
          throw new Error(
            `lmc: series ${rel(chosen.dir)} has no checkpoint at step ${s} (steps: ${
              [...byStep.keys()].join(", ")
            })`,
          );
        }
      }
    }
    const heldOut = await loadHeldOut(
      tokensRef.dir,
      params.seq_len ?? cfg.block_size,
      params.max_windows,
      params.domains,
    );

    ctx.progress.start("lmc", pairs.length * params.alphas.length, "model");
    let done = 0;
    for (const [a, b] of pairs) {
      const ta = (await readSafetensorsF32(`${chosen.dir}/${byStep.get(a)!.file}`)).tensors;
      const tb = (await readSafetensorsF32(`${chosen.dir}/${byStep.get(b)!.file}`)).tensors;
      for (const alpha of params.alphas) {
        if (ctx.signal.aborted) throw new Error("lmc: cancelled");
        const w = weightsFromArrays(cfg, interpolateArrays(ta, tb, alpha));
        try {
          const parts: { domain: string; sumLoss: number; nTokens: number }[] = [];
          for (const { domain, windows } of heldOut) {
            const r = await evaluateWindows(cfg, w, windows, {
              batchSize: params.batch_size,
              signal: ctx.signal,
            });
            parts.push({ domain, ...r });
          }
          const rows: RowOf<typeof LMC>[] = [...parts, { domain: "all", ...poolResults(parts) }]
            .map((p) => ({
              pair: `${a}-${b}`,
              step_a: a,
              step_b: b,
              alpha,
              domain: p.domain,
              loss: p.sumLoss / p.nTokens,
            }));
          appendRows(ctx.results, LMC, rows);
          done++;
          ctx.progress.update(
            done,
            `${a}-${b} α=${alpha} loss ${Number(rows[rows.length - 1].loss).toFixed(4)}`,
          );
        } finally {
          disposeWeights(w);
        }
      }
    }
  },
});
