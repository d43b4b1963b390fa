// The `savings` step: compute savings (the paper's Fig. 13) from what evaluate steps
// wrote. For every evaluated series it finds the original run of the same training (the
// baseline) and, for each tolerance, how many steps, tokens and seconds of training that
// series saves in reaching the original's final perplexity × (1 + tolerance).
// See lm/eval/savings.ts for the definitions.
import { z } from "zod";
import { defineStep, type InputRef, type InputValue } from "../pipeline/step.ts";
import { canonicalJson } from "../pipeline/hash.ts";
import {
  computeSavings,
  type CurvePoint,
  proportionalWallClock,
  type WallClock,
  wallClockFromLog,
} from "../lm/eval/savings.ts";
import {
  appendRows,
  asNumber,
  EVAL_LOSS,
  parseParams,
  SAVINGS,
  selectSql,
  SERIES,
  tablesOf,
  TRAIN_LOG,
  TRAIN_RUNS,
} from "./tables.ts";

const Params = z.object({
  /** Allowed perplexity increase over the original's final value (0.01 = +1%). */
  tolerances: z.array(z.number().min(0)).min(1).default([0, 0.01, 0.02]),
  /** Held-out domain whose perplexity counts ('all' = token-weighted over domains). */
  domain: z.string().default("all"),
});

interface SeriesMeta {
  series_id: string;
  method: string;
  lr: number | null;
  batch_tokens: number | null;
  params: Record<string, unknown>;
}

/** Which training run a series comes from: its training params and seed, else lr + batch size. */
export function trainingIdentity(s: SeriesMeta): string {
  const train = s.params.train;
  if (train && typeof train === "object") {
    return "train:" + canonicalJson({ train, seed: s.params.seed ?? null });
  }
  return `lr:${s.lr}|batch_tokens:${s.batch_tokens}`;
}

async function tableExists(
  query: (sql: string, params?: unknown[]) => Promise<Record<string, unknown>[]>,
  table: string,
): Promise<boolean> {
  const rows = await query(
    "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = ?",
    [table],
  );
  return Number(rows[0]?.n ?? 0) > 0;
}

export const savingsStep = defineStep({
  name: "savings",
  module: import.meta.url,
  params: Params,
  inputs: ["evals"],
  tables: tablesOf(SAVINGS),
  async run(ctx, params, inputs: Record<string, InputValue>) {
    const evals: InputRef[] = Array.isArray(inputs.evals) ? inputs.evals : [inputs.evals];
    if (evals.length === 0) {
      throw new Error("savings: input 'evals' is empty; expected evaluate instances");
    }
    const keys = evals.map((e) => e.key);
    const query = ctx.results.query.bind(ctx.results);

    const seriesRows = await query(
      selectSql(SERIES, ["series_id", "method", "lr", "batch_tokens", "params"], {
        instanceKeys: keys,
        distinct: true,
        orderBy: ["series_id"],
      }),
    );
    const lossRows = await query(
      selectSql(EVAL_LOSS, ["series_id", "step", "tokens", "ppl"], {
        instanceKeys: keys,
        equals: { domain: params.domain },
        orderBy: ["series_id", "step"],
      }),
    );
    if (lossRows.length === 0) {
      throw new Error(
        `savings: no eval_loss rows for domain '${params.domain}' from evaluate instances ${
          keys.join(", ")
        }`,
      );
    }
    const curves = new Map<string, CurvePoint[]>();
    for (const r of lossRows) {
      const id = String(r.series_id);
      const list = curves.get(id) ?? [];
      list.push({ step: Number(r.step), tokens: Number(r.tokens), ppl: Number(r.ppl) });
      curves.set(id, list);
    }
    const series: SeriesMeta[] = seriesRows.map((r) => ({
      series_id: String(r.series_id),
      method: String(r.method),
      lr: asNumber(r.lr),
      batch_tokens: asNumber(r.batch_tokens),
      params: parseParams(r.params),
    }));

    // Group series by training run; the 'original' series of each group is its baseline.
    const groups = new Map<string, SeriesMeta[]>();
    for (const s of series) {
      const id = trainingIdentity(s);
      groups.set(id, [...(groups.get(id) ?? []), s]);
    }
    const haveTrainLog = await tableExists(query, TRAIN_LOG.name);
    const haveTrainRuns = await tableExists(query, TRAIN_RUNS.name);

    let written = 0;
    for (const members of groups.values()) {
      const baseline = members.find((s) => s.method === "original" && curves.has(s.series_id));
      if (!baseline) {
        ctx.progress.log(
          `savings: no original series for ${members.map((m) => m.series_id).join(", ")}; skipped`,
        );
        continue;
      }
      const baseCurve = curves.get(baseline.series_id)!;
      // The training clock: the baseline's series id is "<train instance key>/<subfolder>".
      const trainKey = baseline.series_id.split("/")[0];
      let wall: WallClock | null = null;
      if (haveTrainLog) {
        const log = await query(
          selectSql(TRAIN_LOG, ["step", "elapsed_s"], { instanceKeys: [trainKey] }),
        );
        wall = wallClockFromLog(
          log.filter((r) => r.elapsed_s !== null)
            .map((r) => ({ step: Number(r.step), elapsed_s: Number(r.elapsed_s) })),
        );
      }
      if (!wall && haveTrainRuns) {
        const runs = (await query(
          selectSql(TRAIN_RUNS, ["steps_done", "wall_s"], { instanceKeys: [trainKey] }),
        )).filter((r) => r.wall_s !== null);
        if (runs.length > 0) {
          wall = proportionalWallClock(Number(runs[0].wall_s), Number(runs[0].steps_done));
        }
      }
      const rows = computeSavings(
        { id: baseline.series_id, curve: baseCurve },
        members.filter((m) => curves.has(m.series_id)).map((m) => ({
          id: m.series_id,
          curve: curves.get(m.series_id)!,
        })),
        params.tolerances,
        wall,
      );
      appendRows(ctx.results, SAVINGS, rows);
      written += rows.length;
    }
    ctx.progress.log(`savings: ${written} rows over ${groups.size} training run(s)`);
  },
});
