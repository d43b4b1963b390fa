// The `intervals` step: how sure is a gap? For every averaged series (LAWA, EMA, SWA)
// the evaluate steps scored, and every step where its own original run (same training
// params and seed) was scored too, the held-out loss gap series − original with a 95%
// paired-bootstrap interval over the evaluation windows (lm/eval/bootstrap.ts). Series
// that differ only in their seed are also pooled: seeds resampled, then windows.
// A second table gives the gap averaged over the evaluated steps from `mean_from` of the
// run on (one number per series, the scale study's and results.md's unit).
//
// Reads `series` and `eval_windows` of its input evaluate instances; writes
// `gap_intervals` and `gap_means` (steps/tables.ts).
import { z } from "zod";
import { defineStep, type InputRef, type InputValue } from "../pipeline/step.ts";
import { canonicalJson, sha256Hex } from "../pipeline/hash.ts";
import { type GapInterval, pairedBootstrap, type PairedWindows } from "../lm/eval/bootstrap.ts";
import { trainingIdentity } from "./savings.ts";
import {
  appendRows,
  asNumber,
  EVAL_WINDOWS,
  GAP_INTERVALS,
  GAP_MEANS,
  parseParams,
  selectSql,
  SERIES,
  tablesOf,
} from "./tables.ts";

const Params = z.object({
  /** Bootstrap resamples per interval. */
  resamples: z.number().int().positive().default(2000),
  /** Two-sided confidence level. */
  confidence: z.number().gt(0).lt(1).default(0.95),
  /** Seed of the resampling (fixed: a rerun gives the same interval). */
  bootstrap_seed: z.number().int().nonnegative().default(0),
  /** `gap_means` averages the evaluated steps from this fraction of the run on. */
  mean_from: z.number().min(0).max(1).default(0.1),
});
type IntervalParams = z.infer<typeof Params>;

/** A series as the `series` table describes it. */
export interface SeriesMeta {
  series_id: string;
  label: string;
  method: string;
  k: number | null;
  nu: number | null;
  lr: number | null;
  batch_tokens: number | null;
  seed: number | null;
  params: Record<string, unknown>;
}

/** Per-window losses of one series at one step, keyed `domain\twindow`. */
export type WindowLosses = Map<string, number>;

/** What a set of evaluate instances wrote: their series and, per series and step, window losses. */
export interface Evaluated {
  series: SeriesMeta[];
  losses: Map<string, Map<number, WindowLosses>>;
}

/** Reads the series and per-window losses of the given evaluate instances (by cache key). */
export async function readEvaluated(
  query: (sql: string) => Promise<Record<string, unknown>[]>,
  keys: string[],
): Promise<Evaluated> {
  const seriesRows = await query(
    selectSql(SERIES, [
      "series_id",
      "label",
      "method",
      "k",
      "nu",
      "lr",
      "batch_tokens",
      "seed",
      "params",
    ], {
      instanceKeys: keys,
      distinct: true,
      orderBy: ["series_id"],
    }),
  );
  const windowRows = await query(
    selectSql(EVAL_WINDOWS, ["series_id", "step", "domain", "window", "loss"], {
      instanceKeys: keys,
    }),
  );
  const losses = new Map<string, Map<number, WindowLosses>>();
  for (const r of windowRows) {
    const id = String(r.series_id);
    const bySeries = losses.get(id) ?? new Map<number, WindowLosses>();
    losses.set(id, bySeries);
    const step = Number(r.step);
    const byWindow = bySeries.get(step) ?? new Map<string, number>();
    bySeries.set(step, byWindow);
    byWindow.set(`${r.domain}\t${r.window}`, Number(r.loss));
  }
  const series: SeriesMeta[] = seriesRows.map((r) => ({
    series_id: String(r.series_id),
    label: String(r.label),
    method: String(r.method),
    k: asNumber(r.k),
    nu: asNumber(r.nu),
    lr: asNumber(r.lr),
    batch_tokens: asNumber(r.batch_tokens),
    seed: asNumber(r.seed),
    params: parseParams(r.params),
  }));
  return { series, losses };
}

/** What a series is apart from its seed: series of several seeds pool on this. */
export function poolIdentity(s: SeriesMeta): string {
  const { seed: _seed, backend_version: _v, ...rest } = s.params;
  return canonicalJson({ method: s.method, label: s.label, params: rest });
}

/** The training params recorded with a series (`params.train`), if any. */
function trainOf(s: SeriesMeta): Record<string, unknown> {
  const t = s.params.train;
  return t && typeof t === "object" ? t as Record<string, unknown> : {};
}

/**
 * Paired differences series − original over the windows both were scored on (keys in
 * sorted order, strata = domain index), or null if they share no window.
 */
export function pairWindows(series: WindowLosses, original: WindowLosses): PairedWindows | null {
  const keys = [...series.keys()].filter((k) => original.has(k)).sort();
  if (keys.length === 0) return null;
  const domains = [...new Set(keys.map((k) => k.split("\t")[0]))].sort();
  return {
    diffs: Float64Array.from(keys, (k) => series.get(k)! - original.get(k)!),
    strata: Int32Array.from(keys, (k) => domains.indexOf(k.split("\t")[0])),
  };
}

/** Mean of several paired sets over the same windows (a per-window mean over steps). */
export function meanOverSteps(sets: PairedWindows[]): PairedWindows {
  const n = sets[0].diffs.length;
  if (sets.some((s) => s.diffs.length !== n)) {
    throw new Error("intervals: the steps of a mean were scored on different windows");
  }
  const diffs = new Float64Array(n);
  for (const s of sets) for (let i = 0; i < n; i++) diffs[i] += s.diffs[i] / sets.length;
  return { diffs, strata: sets[0].strata };
}

/** One averaged series paired with its original: the paired windows at each shared step. */
interface Pairing {
  series: SeriesMeta;
  byStep: Map<number, PairedWindows>;
}

function describe(s: SeriesMeta, seriesId: string, seed: number | null) {
  const train = trainOf(s);
  return {
    series_id: seriesId,
    label: s.label,
    method: s.method,
    k: s.k,
    nu: s.nu,
    lr: s.lr,
    steps_total: asNumber(train.steps),
    preset: typeof train.preset === "string" ? train.preset : null,
    seed,
  };
}

function intervalColumns(i: GapInterval) {
  return {
    gap: i.gap,
    lower: i.lower,
    upper: i.upper,
    n_windows: i.nWindows,
    n_seeds: i.nSeeds,
  };
}

/** Rows of both tables for one set of pairings (one seed, or a pool of seeds). */
export function intervalRows(
  given: Pairing[],
  seriesId: string,
  params: IntervalParams,
) {
  // In seed order: the resampling draws seeds by position, so an order that followed the
  // cache keys would move an interval's last digits whenever the code changed.
  const pairings = [...given].sort((a, b) =>
    (a.series.seed ?? -1) - (b.series.seed ?? -1) ||
    (a.series.series_id < b.series.series_id ? -1 : a.series.series_id > b.series.series_id ? 1 : 0)
  );
  const first = pairings[0].series;
  const seed = pairings.length === 1 ? first.seed : null;
  const who = describe(first, seriesId, seed);
  const opts = {
    resamples: params.resamples,
    confidence: params.confidence,
    seed: params.bootstrap_seed,
  };
  const steps = [...pairings[0].byStep.keys()]
    .filter((step) => pairings.every((p) => p.byStep.has(step)))
    .sort((a, b) => a - b);
  const perStep = steps.map((step) => ({
    ...who,
    step,
    ...intervalColumns(pairedBootstrap(pairings.map((p) => p.byStep.get(step)!), opts)),
  }));
  const total = who.steps_total ?? (steps.length ? steps[steps.length - 1] : 0);
  const late = steps.filter((s) => s >= params.mean_from * total);
  const means = late.length === 0 ? [] : [{
    ...who,
    from_step: late[0],
    to_step: late[late.length - 1],
    n_steps: late.length,
    ...intervalColumns(
      pairedBootstrap(
        pairings.map((p) => meanOverSteps(late.map((s) => p.byStep.get(s)!))),
        opts,
      ),
    ),
  }];
  return { perStep, means };
}

export const intervalsStep = defineStep({
  name: "intervals",
  module: import.meta.url,
  params: Params,
  inputs: ["evals"],
  uses: { backend: false, seed: false },
  tables: tablesOf(GAP_INTERVALS, GAP_MEANS),
  async run(ctx, params, inputs: Record<string, InputValue>) {
    const evals: InputRef[] = Array.isArray(inputs.evals) ? inputs.evals : [inputs.evals];
    const keys = evals.map((e) => e.key);
    const { series, losses } = await readEvaluated(ctx.results.query.bind(ctx.results), keys);
    if (losses.size === 0) {
      throw new Error(
        `intervals: no eval_windows rows from ${evals.map((e) => e.node).join(", ")} ` +
          `(are they evaluate steps of this version?)`,
      );
    }

    // Pair each averaged series with the original of its own training run (and seed).
    const originals = new Map<string, SeriesMeta>();
    for (const s of series) {
      if (s.method === "original" && losses.has(s.series_id)) {
        originals.set(trainingIdentity(s), s);
      }
    }
    const pools = new Map<string, Pairing[]>();
    for (const s of series) {
      if (s.method === "original" || !losses.has(s.series_id)) continue;
      const original = originals.get(trainingIdentity(s));
      if (!original) {
        ctx.progress.log(
          `intervals: no original run evaluated for ${s.label} (${s.series_id}); skipped`,
        );
        continue;
      }
      const byStep = new Map<number, PairedWindows>();
      const mine = losses.get(s.series_id)!;
      const theirs = losses.get(original.series_id)!;
      for (const [step, windows] of mine) {
        const paired = theirs.has(step) ? pairWindows(windows, theirs.get(step)!) : null;
        if (paired) byStep.set(step, paired);
      }
      if (byStep.size === 0) {
        ctx.progress.log(
          `intervals: ${s.label} shares no evaluated step with its original; skipped`,
        );
        continue;
      }
      const pool = poolIdentity(s);
      pools.set(pool, [...(pools.get(pool) ?? []), { series: s, byStep }]);
    }

    let written = 0;
    for (const [pool, pairings] of pools) {
      for (const p of pairings) {
        const { perStep, means } = intervalRows([p], p.series.series_id, params);
        appendRows(ctx.results, GAP_INTERVALS, perStep);
        appendRows(ctx.results, GAP_MEANS, means);
        written += perStep.length;
      }
      if (pairings.length > 1) {
        const id = `pooled:${sha256Hex(pool).slice(0, 16)}`;
        const { perStep, means } = intervalRows(pairings, id, params);
        appendRows(ctx.results, GAP_INTERVALS, perStep);
        appendRows(ctx.results, GAP_MEANS, means);
      }
    }
    if (written === 0) {
      throw new Error(
        "intervals: no averaged series with an evaluated original at a shared step " +
          `among the inputs ${evals.map((e) => e.node).join(", ")}`,
      );
    }
  },
});
