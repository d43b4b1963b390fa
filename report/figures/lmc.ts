// How far apart checkpoints are: linear mode connectivity (paper Fig. 15, loss along the
// line between two checkpoints) and prediction diversity between consecutive checkpoints.
import { asNumber, DIVERSITY, LMC, selectSql } from "../../steps/tables.ts";
import { AXIS, lineChart, scaleOfSeries, seriesScale } from "./charts.ts";
import {
  bySeedGroup,
  type DataRow,
  type FigureDef,
  seedNote,
  type SeriesMeta,
  str,
  uniqueSeries,
} from "./scope.ts";

const lmc: FigureDef = {
  id: "lmc",
  title: "Linear mode connectivity: loss along the line between two checkpoints",
  paper: "Fig. 15",
  description: "Loss of α·θ_a + (1-α)·θ_b for each checkpoint pair; a flat or convex curve " +
    "without a bump means the two checkpoints are linearly mode connected.",
  async build(scope) {
    if (!(await scope.hasTable(LMC.name))) return { skip: "no lmc table in the results" };
    const rows = await scope.query(
      selectSql(LMC, ["pair", "step_a", "step_b", "alpha", "domain", "loss"], {
        instanceKeys: scope.keys,
        orderBy: ["pair", "domain", "alpha"],
      }),
    );
    if (rows.length === 0) return { skip: "no lmc rows for the inputs" };
    const data: DataRow[] = rows.map((r) => ({
      series: `${str(r.pair)} (step ${asNumber(r.step_a)} ↔ ${asNumber(r.step_b)})`,
      alpha: asNumber(r.alpha),
      domain: str(r.domain),
      loss: asNumber(r.loss),
    }));
    const domains = [...new Set(data.map((d) => String(d.domain)))].sort((a, b) =>
      a === "all" ? -1 : b === "all" ? 1 : a.localeCompare(b)
    );
    const pairs = [...new Set(data.map((d) => d.series as string))];
    return {
      rows: data,
      series: [],
      instanceKeys: [...new Set(rows.map((r) => str(r.instance_key)))].sort(),
      spec: lineChart(this.title, data, {
        x: { field: "alpha", title: "α (weight of checkpoint a)" },
        y: { field: "loss", title: AXIS.valLoss },
        series: seriesScale("series", "checkpoint pair", pairs, () => false),
        points: true,
        ...(domains.length > 1
          ? { facet: { field: "domain", title: "held-out domain", columns: 3, sort: domains } }
          : {}),
      }),
    };
  },
};

const diversity: FigureDef = {
  id: "diversity",
  title: "Prediction diversity between checkpoints",
  paper: "Sec. 5 (diversity of averaged checkpoints)",
  description: "Fraction of held-out tokens where the argmax predictions of the checkpoints at " +
    "step a and step b differ, plotted at step b.",
  async build(scope) {
    if (!(await scope.hasTable(DIVERSITY.name))) {
      return { skip: "no diversity table in the results" };
    }
    const rows = await scope.query(
      selectSql(DIVERSITY, ["series_id", "step_a", "step_b", "diversity"], {
        instanceKeys: scope.keys,
        orderBy: ["series_id", "step_b", "step_a"],
      }),
    );
    if (rows.length === 0) return { skip: "no diversity rows for the inputs" };
    const points: { series: SeriesMeta; step: number; value: number | null }[] = [];
    for (const r of rows) {
      points.push({
        series: await scope.seriesFor(str(r.instance_key), str(r.series_id)),
        step: asNumber(r.step_b) ?? 0,
        value: asNumber(r.diversity),
      });
    }
    const shown = uniqueSeries(points);
    const data: DataRow[] = bySeedGroup(points, (p) => String(p.step), (p) => p.value).map((
      { first, stats },
    ) => ({
      series: first.series.groupDisplay,
      step: first.step,
      diversity: stats.mean,
      lo: stats.n > 1 ? stats.min : null,
      hi: stats.n > 1 ? stats.max : null,
      n_seeds: stats.n,
    }));
    const banded = data.some((d) => (d.n_seeds as number) > 1);
    return {
      rows: data,
      series: shown,
      instanceKeys: [...new Set(rows.map((r) => str(r.instance_key)))].sort(),
      note: seedNote(shown),
      spec: lineChart(this.title, data, {
        x: { field: "step", title: "training step of the later checkpoint (b)" },
        y: { field: "diversity", title: "diversity (fraction of tokens predicted differently)" },
        series: scaleOfSeries(shown),
        band: banded ? { lower: "lo", upper: "hi" } : undefined,
        points: true,
      }),
    };
  },
};

export const LMC_FIGURES: FigureDef[] = [lmc, diversity];
