// The `results` step: the paper's claims, each with what this run shows, the gap it rests
// on with a 95% paired-bootstrap interval, and a verdict (reproduced only when the
// interval excludes 0 on the claimed side), written as results.md (report/results_md.ts)
// and published next to the report (artifacts/figures/<pipeline>/results.md).
//
// Which series a claim compares is read from the data, not configured per claim: the
// originals of the highest and lowest learning rate of one model and run length are
// the "10×" and "tuned" runs, `headline` names the LAWA setting the claims quote, and
// claims whose series a pipeline did not evaluate are left out. Every comparison is
// paired: same seed, same windows, same steps, as in the intervals step.
import { z } from "zod";
import { defineStep, type InputRef, type InputValue } from "../pipeline/step.ts";
import { type GapInterval, pairedBootstrap, type PairedWindows } from "../lm/eval/bootstrap.ts";
import {
  type ClaimRow,
  renderResults,
  type ResultsDoc,
  type SeriesRow,
  signed,
} from "../report/results_md.ts";
import {
  meanOverSteps,
  pairWindows,
  poolIdentity,
  readEvaluated,
  type SeriesMeta,
} from "./intervals.ts";
import { asNumber, EVAL_LOSS, GAP_MEANS, selectSql } from "./tables.ts";

const Params = z.object({
  /** Pipeline name: results.md goes to artifacts/figures/<pipeline>/ beside the report. */
  pipeline: z.string().regex(/^[A-Za-z0-9._-]+$/, "letters, digits, '.', '_' or '-'"),
  /** The LAWA setting the claims quote (k, and ν in training steps). */
  headline: z.object({ k: z.number().int().positive(), nu: z.number().int().positive() })
    .default({ k: 5, nu: 5 }),
  /** Claims average the evaluated steps from this fraction of the run on. */
  mean_from: z.number().min(0).max(1).default(0.1),
  /** "Early" point of the shrinking-gain claim, as a fraction of the run. */
  early_at: z.number().gt(0).lt(1).default(0.25),
  /** Test the claims on the runs of one model preset and run length only (a grid's cell). */
  claims_for: z.object({ preset: z.string().optional(), steps: z.number().int().optional() })
    .default({}),
  resamples: z.number().int().positive().default(2000),
  bootstrap_seed: z.number().int().nonnegative().default(0),
});
type ResultsParams = z.infer<typeof Params>;

/** step -> window key -> loss, for one series. */
type Curves = Map<number, Map<string, number>>;

/** One configuration's series over seeds: seed -> series. */
interface Pool {
  meta: SeriesMeta;
  bySeed: Map<number, SeriesMeta>;
}

function trainOf(s: SeriesMeta): Record<string, unknown> {
  const t = s.params.train;
  return t && typeof t === "object" ? t as Record<string, unknown> : {};
}

/** Identity of the training run apart from LR and seed (the LR pair must share it). */
function runShape(s: SeriesMeta): string {
  const { lr: _lr, min_lr: _min, ...rest } = trainOf(s);
  return JSON.stringify(Object.entries(rest).sort(([a], [b]) => a.localeCompare(b)));
}

/** Steps evaluated for every series of every pool in every seed both pools have. */
function sharedSeeds(a: Pool, b: Pool): number[] {
  return [...a.bySeed.keys()].filter((s) => b.bySeed.has(s)).sort((x, y) => x - y);
}

export class ClaimData {
  constructor(
    readonly curves: Map<string, Curves>,
    readonly opts: Pick<ResultsParams, "resamples" | "bootstrap_seed">,
  ) {}

  steps(id: string): number[] {
    return [...(this.curves.get(id)?.keys() ?? [])].sort((a, b) => a - b);
  }

  /** Per seed, the per-window difference a − b averaged over `steps`. */
  diffs(a: Pool, b: Pool, steps: number[]): PairedWindows[] {
    return sharedSeeds(a, b).map((seed) => {
      const ca = this.curves.get(a.bySeed.get(seed)!.series_id)!;
      const cb = this.curves.get(b.bySeed.get(seed)!.series_id)!;
      return meanOverSteps(steps.map((s) => {
        const p = pairWindows(ca.get(s)!, cb.get(s)!);
        if (!p) throw new Error(`results: no shared windows at step ${s}`);
        return p;
      }));
    });
  }

  /** Steps all series of both pools were evaluated at, in every shared seed. */
  commonSteps(pools: Pool[], from = 0): number[] {
    const seeds = pools.slice(1).reduce(
      (acc, p) => acc.filter((s) => p.bySeed.has(s)),
      [...pools[0].bySeed.keys()],
    );
    let steps: number[] | null = null;
    for (const p of pools) {
      for (const seed of seeds) {
        const mine = new Set(this.steps(p.bySeed.get(seed)!.series_id));
        steps = steps === null ? [...mine] : steps.filter((s) => mine.has(s));
      }
    }
    return (steps ?? []).filter((s) => s >= from).sort((a, b) => a - b);
  }

  interval(sets: PairedWindows[]): GapInterval {
    return pairedBootstrap(sets, {
      resamples: this.opts.resamples,
      seed: this.opts.bootstrap_seed,
    });
  }

  /** (a − b) − (c − d) per window, over `steps`. */
  differenceOfGaps(a: Pool, b: Pool, c: Pool, d: Pool, steps: number[]): PairedWindows[] {
    const ab = this.diffs(a, b, steps);
    const cd = this.diffs(c, d, steps);
    return ab.map((x, i) => ({
      diffs: x.diffs.map((v, j) => v - cd[i].diffs[j]),
      strata: x.strata,
    }));
  }
}

/** The claims a set of pools lets us test, in the paper's order. */
export function buildClaims(data: ClaimData, pools: Pool[], params: ResultsParams): ClaimRow[] {
  const originals = pools.filter((p) => p.meta.method === "original");
  if (originals.length === 0) return [];
  // The 10x run: the highest LR; the tuned run: the lowest LR of the same shape.
  const high = originals.reduce((a, b) => ((b.meta.lr ?? 0) > (a.meta.lr ?? 0) ? b : a));
  const tuned = originals
    .filter((p) =>
      runShape(p.meta) === runShape(high.meta) && (p.meta.lr ?? 0) < (high.meta.lr ?? 0)
    )
    .sort((a, b) => (a.meta.lr ?? 0) - (b.meta.lr ?? 0))[0];
  const sameRun = (p: Pool, o: Pool) =>
    p.meta.lr === o.meta.lr && runShape(p.meta) === runShape(o.meta);
  const lawa = (o: Pool, k: number, nu: number) =>
    pools.find((p) =>
      p.meta.method === "lawa" && p.meta.k === k && p.meta.nu === nu && sameRun(p, o)
    );
  const total = asNumber(trainOf(high.meta).steps) ?? 0;
  const from = params.mean_from * total;
  const { k, nu } = params.headline;
  const claims: ClaimRow[] = [];
  const verdict = (ok: boolean) => ok ? "reproduced" as const : "not reproduced" as const;
  const lawaHigh = lawa(high, k, nu);
  const name = `LAWA k=${k} ν=${nu}`;

  if (lawaHigh) {
    const steps = data.commonSteps([lawaHigh, high], from);
    if (steps.length) {
      const i = data.interval(data.diffs(lawaHigh, high, steps));
      let below = 0;
      let sure = 0;
      for (const s of steps) {
        const one = data.interval(data.diffs(lawaHigh, high, [s]));
        if (one.gap < 0) below++;
        if (one.upper < 0) sure++;
      }
      claims.push({
        claim: "At 10× LR, LAWA lowers held-out loss from early in training on (Fig. 2a)",
        shows: `${name} vs the ${high.meta.lr} run, steps ${steps[0]}–${steps.at(-1)}: ` +
          `below it at ${below} of ${steps.length} evaluated steps, ` +
          `interval below 0 at ${sure}`,
        interval: i,
        needs: "upper < 0",
        verdict: verdict(i.upper < 0),
      });
      // Claim 5: the gain shrinks toward the end (gap at the end less negative than early).
      const early = steps.reduce((a, b) =>
        Math.abs(b - params.early_at * total) < Math.abs(a - params.early_at * total) ? b : a
      );
      const end = steps.at(-1)!;
      if (end > early) {
        const atEarly = data.diffs(lawaHigh, high, [early]);
        const atEnd = data.diffs(lawaHigh, high, [end]);
        const shrink = data.interval(atEnd.map((x, si) => ({
          diffs: x.diffs.map((v, j) => v - atEarly[si].diffs[j]),
          strata: x.strata,
        })));
        const e = data.interval(atEarly);
        const n = data.interval(atEnd);
        claims.push({
          claim: "Gains shrink toward the end, as the LR decays (claim 5)",
          shows: `${name} at 10× LR: gap ${signed(e.gap)} at step ${early}, ${signed(n.gap)} at ` +
            `step ${end}; the row's gap is (end − early)`,
          interval: shrink,
          needs: "early gap < 0 and lower > 0",
          verdict: verdict(e.upper < 0 && shrink.lower > 0),
        });
      }
    }
  }

  const lawaTuned = tuned ? lawa(tuned, k, nu) : undefined;
  if (lawaHigh && tuned && lawaTuned) {
    const steps = data.commonSteps([lawaHigh, high, lawaTuned, tuned], from);
    if (steps.length) {
      const i = data.interval(data.differenceOfGaps(lawaHigh, high, lawaTuned, tuned, steps));
      const gTuned = data.interval(data.diffs(lawaTuned, tuned, steps));
      const gHigh = data.interval(data.diffs(lawaHigh, high, steps));
      claims.push({
        claim: "LAWA's gain is larger at 10× LR than at the tuned LR (Fig. 2a)",
        shows:
          `${name}: gap ${signed(gHigh.gap)} at LR ${high.meta.lr}, ${signed(gTuned.gap)} at ` +
          `LR ${tuned.meta.lr}; the row's gap is their difference`,
        interval: i,
        needs: "upper < 0",
        verdict: verdict(i.upper < 0),
      });
    }
  }
  if (tuned) {
    const steps = data.commonSteps([high, tuned]);
    if (steps.length) {
      const last = steps.at(-1)!;
      const i = data.interval(data.diffs(high, tuned, [last]));
      claims.push({
        claim: "The 10× LR run alone generalizes worse than the tuned-LR run (Fig. 2b)",
        shows: `original at LR ${high.meta.lr} minus original at LR ${tuned.meta.lr}, ` +
          `final step ${last}`,
        interval: i,
        needs: "lower > 0",
        verdict: verdict(i.lower > 0),
      });
    }
  }
  // Small k hurts (Fig. 9): k=2 against the headline k at the headline ν.
  const smallK = lawa(high, 2, nu);
  if (lawaHigh && smallK && k !== 2) {
    const steps = data.commonSteps([smallK, lawaHigh], from);
    if (steps.length) {
      const i = data.interval(data.diffs(smallK, lawaHigh, steps));
      claims.push({
        claim: "Small k hurts: k=2 is worse than k=5 (Fig. 9)",
        shows: `LAWA k=2 minus ${name} at 10× LR, steps ${steps[0]}–${steps.at(-1)}`,
        interval: i,
        needs: "lower > 0",
        verdict: verdict(i.lower > 0),
      });
    }
  }
  // LAWA beats EMA (Fig. 1), when the in-training EMA of the 10x run was evaluated.
  const ema = pools.find((p) => p.meta.method === "ema" && sameRun(p, high));
  if (lawaHigh && ema) {
    const steps = data.commonSteps([lawaHigh, ema], from);
    if (steps.length) {
      const i = data.interval(data.diffs(lawaHigh, ema, steps));
      claims.push({
        claim: "LAWA beats EMA (0.9, every step) (Fig. 1, claim 3)",
        shows: `${name} minus ${ema.meta.label} at 10× LR, steps ${steps[0]}–${steps.at(-1)}`,
        interval: i,
        needs: "upper < 0",
        verdict: verdict(i.upper < 0),
      });
    }
  }
  return claims;
}

async function gitCommit(): Promise<string> {
  try {
    const out = await new Deno.Command("git", { args: ["rev-parse", "HEAD"], stderr: "null" })
      .output();
    const text = new TextDecoder().decode(out.stdout).trim();
    return out.success && /^[0-9a-f]{40}$/.test(text) ? text : "unknown";
  } catch {
    return "unknown";
  }
}

export const resultsStep = defineStep({
  name: "results",
  module: import.meta.url,
  params: Params,
  // `report` only orders publishing: results.md lands in the report's folder after it.
  inputs: ["evals", "report?"],
  uses: { backend: false, seed: false },
  publish: async (entryDir, params, artifactsDir, run) => {
    const dest = `${artifactsDir}/figures/${run?.pipeline ?? params.pipeline}`;
    await Deno.mkdir(dest, { recursive: true });
    await Deno.copyFile(`${entryDir}/results.md`, `${dest}/results.md`);
    return `${dest}/results.md`;
  },
  async run(ctx, params, inputs: Record<string, InputValue>) {
    const evals: InputRef[] = Array.isArray(inputs.evals) ? inputs.evals : [inputs.evals];
    const keys = evals.map((e) => e.key);
    const query = ctx.results.query.bind(ctx.results);
    const evaluated = await readEvaluated(query, keys);
    const curves: Map<string, Curves> = evaluated.losses;
    const series: SeriesMeta[] = evaluated.series
      .filter((s) => curves.has(s.series_id));
    if (series.length === 0) {
      throw new Error(
        `results: no evaluated series with per-window losses among ${
          evals.map((e) => e.node).join(", ")
        }`,
      );
    }
    const pools = new Map<string, Pool>();
    for (const s of series) {
      const id = poolIdentity(s);
      const pool = pools.get(id) ?? { meta: s, bySeed: new Map<number, SeriesMeta>() };
      pools.set(id, pool);
      pool.bySeed.set(s.seed ?? 0, s);
    }
    const data = new ClaimData(curves, params);
    const inCell = (p: Pool) => {
      const t = trainOf(p.meta);
      return (params.claims_for.preset === undefined || t.preset === params.claims_for.preset) &&
        (params.claims_for.steps === undefined || t.steps === params.claims_for.steps);
    };
    const claims = buildClaims(data, [...pools.values()].filter(inCell), params);

    // Every averaged series, from the intervals step's means (pooled rows when several seeds).
    const meanRows = await query(
      selectSql(GAP_MEANS, [
        "label",
        "lr",
        "preset",
        "steps_total",
        "seed",
        "n_seeds",
        "from_step",
        "to_step",
        "gap",
        "lower",
        "upper",
      ], { instanceKeys: keys, orderBy: ["preset", "steps_total", "lr", "method", "k", "nu"] }),
    );
    const pooled = new Set(
      meanRows.filter((r) => r.seed === null).map((r) =>
        `${r.label}|${r.lr}|${r.preset}|${r.steps_total}`
      ),
    );
    const seriesTable: SeriesRow[] = meanRows
      .filter((r) =>
        r.seed === null || !pooled.has(`${r.label}|${r.lr}|${r.preset}|${r.steps_total}`)
      )
      .map((r) => ({
        label: String(r.label),
        lr: asNumber(r.lr),
        preset: r.preset === null ? null : String(r.preset),
        stepsTotal: asNumber(r.steps_total),
        seeds: r.seed === null ? `${r.n_seeds} pooled` : String(r.seed),
        span: `${r.from_step}–${r.to_step}`,
        interval: { gap: Number(r.gap), lower: Number(r.lower), upper: Number(r.upper) },
      }));

    const tokenRows = await query(
      `SELECT min(n_tokens) AS lo, max(n_tokens) AS hi FROM (${
        selectSql(EVAL_LOSS, ["n_tokens"], { instanceKeys: keys, equals: { domain: "all" } })
      })`,
    );
    const allOriginals = [...pools.values()].filter((p) => p.meta.method === "original");
    const originals = allOriginals.filter(inCell);
    const t = trainOf(originals[0]?.meta ?? series[0]);
    const shapes = new Set(
      allOriginals.map((p) => `${trainOf(p.meta).preset}|${trainOf(p.meta).steps}`),
    );
    const lrs = [...new Set(originals.map((p) => p.meta.lr))].sort((a, b) => (b ?? 0) - (a ?? 0));
    const seeds = [...new Set(series.map((s) => s.seed).filter((s) => s !== null))] as number[];
    const doc: ResultsDoc = {
      pipeline: params.pipeline,
      config: `configs/${params.pipeline}.yaml`,
      seeds: seeds.sort((a, b) => a - b),
      commit: await gitCommit(),
      setup: `${shapes.size > 1 ? "Claims on one cell of the grid: " : "Setup: "}model ${
        t.preset ?? "?"
      }, ${t.steps ?? "?"} steps of ${t.batch_tokens ?? "?"} tokens, peak LR ${
        lrs.join(" and ")
      }; ${
        Number(tokenRows[0]?.lo ?? 0).toLocaleString("en-US")
      } held-out tokens per evaluated checkpoint (summed over domains); claims quote LAWA k=${params.headline.k} ν=${params.headline.nu} steps and average the evaluated steps from ${
        Math.round(params.mean_from * 100)
      }% of the run on.${
        shapes.size > 1 ? " The second table covers every cell of the grid." : ""
      }`,
      claims,
      series: seriesTable,
    };
    await Deno.writeTextFile(`${ctx.outDir}/results.md`, renderResults(doc));
    for (const c of claims) {
      ctx.progress.log(`${c.verdict}: ${c.claim}`);
    }
  },
});
