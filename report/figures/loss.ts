// Loss curves: validation loss vs step (all series), per held-out domain, the learning-
// rate and batch-size sweeps, and the training loss with its learning rate. Series run
// with several seeds are drawn as their mean over seeds with a min–max band.
import type { TopLevelSpec } from "vega-lite";
import { asNumber, EVAL_LOSS, selectSql, TRAIN_LOG, TRAIN_RUNS } from "../../steps/tables.ts";
import { AXIS, lineChart, scaleOfSeries, type SeriesScale, seriesScale } from "./charts.ts";
import { gapRowOf } from "./intervals.ts";
import {
  bySeedGroup,
  type DataRow,
  describeTrain,
  type FigureDef,
  type FigureScope,
  formatBatch,
  formatLr,
  isSkipped,
  seedNote,
  type SeriesMeta,
  type Skipped,
  str,
  trainParamsThatDiffer,
  uniqueKeys,
  uniqueSeries,
} from "./scope.ts";

export interface LossPoint {
  series: SeriesMeta;
  step: number;
  tokens: number | null;
  domain: string;
  loss: number | null;
  instance_key: string;
}

/** `eval_loss` rows of the inputs: domain 'all' only, every other domain, or all rows. */
export async function loadLoss(
  scope: FigureScope,
  domains: "all" | "per-domain" | "every",
): Promise<LossPoint[] | Skipped> {
  if (!(await scope.hasTable(EVAL_LOSS.name))) {
    return { skip: `no ${EVAL_LOSS.name} table in the results` };
  }
  const rows = await scope.query(
    selectSql(EVAL_LOSS, ["series_id", "step", "tokens", "domain", "loss"], {
      instanceKeys: scope.keys,
      ...(domains === "all" ? { equals: { domain: "all" } } : {}),
      ...(domains === "per-domain" ? { notEquals: { domain: "all" } } : {}),
      orderBy: ["instance_key", "series_id", "domain", "step"],
    }),
  );
  const points: LossPoint[] = [];
  for (const r of rows) {
    points.push({
      series: await scope.seriesFor(str(r.instance_key), str(r.series_id)),
      step: asNumber(r.step) ?? 0,
      tokens: asNumber(r.tokens),
      domain: str(r.domain),
      loss: asNumber(r.loss),
      instance_key: str(r.instance_key),
    });
  }
  return points;
}

/** First step of the second half of training (by the largest step present). */
export function lateStart(points: { step: number }[]): number {
  return Math.max(0, ...points.map((p) => p.step)) / 2;
}

/**
 * Chart rows: one per (seed group, step, domain) with the mean loss over seeds and,
 * when the group has several seeds, `loss_lo`/`loss_hi` (min and max over seeds).
 * `extra` adds fields from the group's first point (e.g. panel and colour labels).
 */
export function lossRows(
  points: LossPoint[],
  extra: (p: LossPoint) => DataRow = () => ({}),
): DataRow[] {
  const late = lateStart(points);
  return bySeedGroup(
    points,
    (p) => `${p.step}|${p.domain}|${JSON.stringify(extra(p))}`,
    (p) => p.loss,
  )
    .map(({ first: p, stats }) => {
      const s = p.series;
      return {
        series: s.groupDisplay,
        method: s.method,
        k: s.k,
        nu: s.nu,
        lr: formatLr(s.lr),
        batch: formatBatch(s.batch_tokens),
        step: p.step,
        tokens: p.tokens,
        domain: p.domain,
        loss: stats.mean,
        loss_lo: stats.n > 1 ? stats.min : null,
        loss_hi: stats.n > 1 ? stats.max : null,
        n_seeds: stats.n,
        late: p.step >= late,
        ...extra(p),
      };
    });
}

/** The seed band, when some group has several seeds. */
export function bandOf(rows: DataRow[]) {
  return rows.some((r) => (r.n_seeds as number) > 1)
    ? { lower: "loss_lo", upper: "loss_hi" }
    : undefined;
}

const lossVsStep: FigureDef = {
  id: "loss-vs-step",
  title: "Validation loss vs step",
  paper: "Fig. 1",
  description: "Held-out loss (all domains, token-weighted) of every evaluated series; " +
    "the original run is black and dashed.",
  async build(scope) {
    const points = await loadLoss(scope, "all");
    if (isSkipped(points)) return points;
    if (points.length === 0) return { skip: "no eval_loss rows with domain 'all' for the inputs" };
    const series = uniqueSeries(points);
    const rows = lossRows(points);
    return {
      rows,
      series,
      instanceKeys: uniqueKeys(points),
      note: seedNote(series),
      spec: lineChart(
        this.title,
        rows,
        {
          x: { field: "step", title: AXIS.step },
          y: { field: "loss", title: AXIS.valLoss },
          series: scaleOfSeries(series),
          band: bandOf(rows),
        },
        [],
        true,
      ),
    };
  },
};

const perDomain: FigureDef = {
  id: "per-domain",
  title: "Validation loss per held-out domain",
  paper: "Fig. 7 (Pythia held-out domains)",
  description: "Loss vs step on each held-out domain separately; one panel per domain, " +
    "one y-scale for all panels.",
  async build(scope) {
    const points = await loadLoss(scope, "per-domain");
    if (isSkipped(points)) return points;
    if (points.length === 0) return { skip: "no per-domain eval_loss rows (only 'all')" };
    const series = uniqueSeries(points);
    const rows = lossRows(points);
    const domains = [...new Set(points.map((p) => p.domain))].sort();
    return {
      rows,
      series,
      instanceKeys: uniqueKeys(points),
      note: seedNote(series),
      spec: lineChart(this.title, rows, {
        x: { field: "step", title: AXIS.step },
        y: { field: "loss", title: AXIS.valLoss },
        series: scaleOfSeries(series),
        band: bandOf(rows),
        facet: { field: "domain", title: "held-out domain", columns: 3, sort: domains },
      }),
    };
  },
};

/** A loss-vs-x chart of original and LAWA series, colour = a swept training param. */
function sweep(
  id: string,
  paper: string,
  field: "lr" | "batch_tokens",
  x: "step" | "tokens",
): FigureDef {
  const what = field === "lr" ? "learning rate" : "batch size";
  const fmt = (v: number | null) => field === "lr" ? formatLr(v) : formatBatch(v);
  return {
    id,
    title: `Validation loss by ${what}, with and without LAWA`,
    paper,
    description: `Validation loss vs ${x === "step" ? "step" : "tokens seen"} at each ${what}: ` +
      `originals black and dashed, LAWA in colour; the other training param is held fixed ` +
      `and one LAWA setting (the one run at the most ${
        field === "lr" ? "learning rates" : "batch sizes"
      }) is shown.`,
    async build(scope, requested) {
      const points = await loadLoss(scope, "all");
      if (isSkipped(points)) return points;
      const candidates = points.filter((p) =>
        p.series.method === "original" || p.series.method === "lawa"
      );
      if (candidates.length === 0) return { skip: "no original or LAWA series" };
      // Hold the other training param fixed at the value with the most swept values...
      const other = field === "lr" ? "batch_tokens" : "lr";
      const sweptBy = new Map<number | null, Set<number | null>>();
      for (const p of candidates) {
        const v = p.series[other];
        sweptBy.set(v, (sweptBy.get(v) ?? new Set()).add(p.series[field]));
      }
      const fixed = [...sweptBy.entries()].sort((a, b) => b[1].size - a[1].size)[0][0];
      const atFixed = candidates.filter((p) => p.series[other] === fixed);
      // ...and show one LAWA setting: the (k, ν) present at the most swept values.
      const setting = (s: SeriesMeta) => `k=${s.k} ν=${s.nu}`;
      const lawaAt = new Map<string, Set<number | null>>();
      for (const p of atFixed.filter((p) => p.series.method === "lawa")) {
        const kn = setting(p.series);
        lawaAt.set(kn, (lawaAt.get(kn) ?? new Set()).add(p.series[field]));
      }
      const lawaSetting = [...lawaAt.entries()].sort((a, b) => b[1].size - a[1].size)[0]?.[0];
      const used = atFixed.filter((p) =>
        p.series.method === "original" || setting(p.series) === lawaSetting
      );
      const left = [
        sweptBy.size > 1
          ? `series at other ${other === "lr" ? "learning rates" : "batch sizes"}`
          : "",
        lawaAt.size > 1
          ? `other LAWA settings (${
            [...lawaAt.keys()].filter((k) => k !== lawaSetting).join(", ")
          })`
          : "",
      ].filter((s) => s);
      const values = [...new Set(used.map((p) => p.series[field] ?? 0))].sort((a, b) => a - b);
      if (values.length < 2 && !requested) {
        return { skip: `only one ${what} (${values[0]}) among the series` };
      }
      const kind = (s: SeriesMeta) => s.method === "lawa" ? `LAWA ${lawaSetting}` : "original";
      // Training runs that differ in more than the swept param (e.g. length or preset in
      // a scale study) are told apart in the name.
      const differ = trainParamsThatDiffer(uniqueSeries(used), [field, other]);
      const nameOf = (s: SeriesMeta) =>
        [fmt(s[field]), describeTrain(s, differ), kind(s)].filter((x) => x).join(" · ");
      const rows = lossRows(used, (p) => ({ series: nameOf(p.series) }));
      const names = [
        ...new Set(
          [...uniqueSeries(used)].sort((a, b) =>
            (a[field] ?? 0) - (b[field] ?? 0) ||
            describeTrain(a, differ).localeCompare(describeTrain(b, differ)) ||
            Number(b.method === "original") - Number(a.method === "original")
          ).map(nameOf),
        ),
      ];
      const scale: SeriesScale = seriesScale(
        "series",
        `${what} · series`,
        names,
        (n) => n.endsWith(" · original"),
      );
      const series = uniqueSeries(used);
      // With the intervals step's results: each LAWA series' gap to its own original.
      const lawaGroups = new Map<string, SeriesMeta[]>();
      for (const s of series.filter((s) => s.method === "lawa")) {
        lawaGroups.set(s.group, [...(lawaGroups.get(s.group) ?? []), s]);
      }
      const gapRow = await gapRowOf(
        scope,
        [...lawaGroups.values()].map((members) => ({
          members,
          fields: { series: nameOf(members[0]) },
        })),
        { x, series: scale },
      );
      const notes = [
        left.length ? `Left out: ${left.join("; ")}.` : "",
        seedNote(series) ?? "",
        gapRow?.note ?? "",
      ];
      const fixedLabel = other === "lr" ? formatLr(fixed) : formatBatch(fixed);
      return {
        rows,
        series,
        instanceKeys: [...new Set([...uniqueKeys(used), ...(gapRow?.keys ?? [])])].sort(),
        note: notes.filter((n) => n).join(" ") || undefined,
        spec: lineChart(
          `${this.title} (${fixedLabel}${lawaSetting ? `, LAWA ${lawaSetting}` : ""})`,
          rows,
          {
            x: { field: x, title: x === "step" ? AXIS.step : AXIS.tokens },
            y: { field: "loss", title: AXIS.valLoss },
            series: scale,
            band: bandOf(rows),
          },
          gapRow ? [gapRow.spec] : [],
          true,
        ),
      };
    },
  };
}

/** Labels for train instances from `train_runs` (preset, lr, batch, status) or the inputs. */
async function trainRuns(
  scope: FigureScope,
  keys: string[],
): Promise<Map<string, { label: string; seed: number | null }>> {
  const runs = new Map<string, { label: string; seed: number | null }>();
  if (await scope.hasTable(TRAIN_RUNS.name)) {
    const rows = await scope.query(
      selectSql(TRAIN_RUNS, ["status", "preset", "lr", "batch_tokens", "seed"], {
        instanceKeys: keys,
      }),
    );
    for (const r of rows) {
      const parts = [
        str(r.preset),
        formatLr(asNumber(r.lr)),
        formatBatch(asNumber(r.batch_tokens)),
      ];
      if (str(r.status) && str(r.status) !== "completed") parts.push(str(r.status));
      runs.set(str(r.instance_key), {
        label: parts.filter((p) => p).join(" · "),
        seed: asNumber(r.seed),
      });
    }
  }
  for (const k of keys) {
    if (runs.has(k)) continue;
    const input = scope.inputs.find((i) => i.key === k);
    const p = input?.params ?? {};
    const label = input
      ? [
        input.node,
        asNumber(p.lr) !== null ? formatLr(asNumber(p.lr)) : "",
        asNumber(p.batch_tokens) !== null ? formatBatch(asNumber(p.batch_tokens)) : "",
      ].filter((s) => s).join(" · ")
      : `train ${k.slice(0, 8)}`;
    runs.set(k, { label, seed: null });
  }
  // Same label and same seed: different runs, told apart by their key prefix.
  const seen = new Map<string, number>();
  for (const r of runs.values()) {
    seen.set(`${r.label}|${r.seed}`, (seen.get(`${r.label}|${r.seed}`) ?? 0) + 1);
  }
  for (const [k, r] of runs) {
    if ((seen.get(`${r.label}|${r.seed}`) ?? 0) > 1) {
      runs.set(k, { ...r, label: `${r.label} [${k.slice(0, 8)}]` });
    }
  }
  return runs;
}

const trainLoss: FigureDef = {
  id: "train-loss",
  title: "Training loss and learning rate",
  paper: "Fig. 2 (training curves), Fig. 12 (SWA LR)",
  description: "Per-step training loss of each training run (top) and its learning rate " +
    "(bottom); runs that differ only by seed are drawn as their mean with a min–max band.",
  async build(scope) {
    if (!(await scope.hasTable(TRAIN_LOG.name))) {
      return { skip: "no train_log table in the results" };
    }
    const trainKeys = await scope.trainKeys();
    const rows = await scope.query(
      selectSql(TRAIN_LOG, ["step", "tokens", "train_loss", "lr"], {
        instanceKeys: trainKeys,
        orderBy: ["instance_key", "step"],
      }),
    );
    if (rows.length === 0) return { skip: "no train_log rows for the training runs of the inputs" };
    const keys = [...new Set(rows.map((r) => str(r.instance_key)))].sort();
    const runs = await trainRuns(scope, keys);
    const seedsOf = new Map<string, Set<number | null>>();
    for (const k of keys) {
      const { label, seed } = runs.get(k)!;
      seedsOf.set(label, (seedsOf.get(label) ?? new Set()).add(seed));
    }
    // Runs with one label (they differ only by seed) are one group.
    const cells = new Map<
      string,
      { run: string; step: number; losses: number[]; lr: number | null; keys: string[] }
    >();
    for (const r of rows) {
      const run = runs.get(str(r.instance_key))!.label;
      const step = asNumber(r.step) ?? 0;
      const id = `${run}\u0000${step}`;
      const cell = cells.get(id) ?? { run, step, losses: [], lr: asNumber(r.lr), keys: [] };
      cell.keys.push(str(r.instance_key));
      const loss = asNumber(r.train_loss);
      if (loss !== null) cell.losses.push(loss);
      cells.set(id, cell);
    }
    const data: DataRow[] = [...cells.values()].map((c) => {
      const n = c.losses.length;
      const mean = n ? c.losses.reduce((a, b) => a + b, 0) / n : null;
      return {
        series: c.run,
        step: c.step,
        train_loss: mean,
        loss_lo: n > 1 ? Math.min(...c.losses) : null,
        loss_hi: n > 1 ? Math.max(...c.losses) : null,
        n_seeds: n,
        lr: c.lr,
        instance_keys: c.keys.join(" "),
      };
    });
    const labels = [...new Set(keys.map((k) => runs.get(k)!.label))];
    const scale = seriesScale("series", "training run", labels, () => false);
    const most = Math.max(...[...seedsOf.values()].map((s) => s.size));
    const spec: TopLevelSpec = lineChart(this.title, data, {
      x: { field: "step", title: AXIS.step },
      y: { field: "train_loss", title: AXIS.trainLoss },
      series: scale,
      band: most > 1 ? { lower: "loss_lo", upper: "loss_hi" } : undefined,
    }, [{
      height: 110,
      width: 460,
      transform: [{ filter: "isValid(datum.lr)" }],
      mark: { type: "line", strokeWidth: 1.2 },
      encoding: {
        x: { field: "step", type: "quantitative", title: AXIS.step },
        y: { field: "lr", type: "quantitative", title: AXIS.lr },
        color: {
          field: "series",
          type: "nominal",
          title: "training run",
          scale: { domain: labels, range: scale.colours },
        },
        strokeDash: {
          field: "series",
          type: "nominal",
          title: "training run",
          scale: { domain: labels, range: scale.dashes },
        },
      },
    }]);
    return {
      rows: data,
      series: [],
      instanceKeys: keys,
      note: most > 1
        ? `Runs with several seeds (up to ${most}) are drawn as their mean; the band spans min–max over seeds.`
        : undefined,
      spec,
    };
  },
};

export const LOSS_FIGURES: FigureDef[] = [
  lossVsStep,
  perDomain,
  sweep("lr-sweep", "Fig. 2", "lr", "step"),
  sweep("batch-sweep", "Fig. 10", "batch_tokens", "tokens"),
  trainLoss,
];
