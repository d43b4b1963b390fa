// Compute savings (paper Fig. 13): how many training steps before the original's end each
// series first reaches the original's final perplexity × (1 + tolerance).
import { asNumber, SAVINGS, selectSql } from "../../steps/tables.ts";
import { scaleOfSeries } from "./charts.ts";
import {
  type Cell,
  type DataRow,
  type FigureDef,
  type SeriesMeta,
  str,
  uniqueSeries,
} from "./scope.ts";

const tolLabel = (tol: number) => `+${Number((tol * 100).toPrecision(3))}%`;

const savings: FigureDef = {
  id: "savings",
  title: "Compute savings: steps saved to reach the original's final perplexity",
  paper: "Fig. 13",
  description: "For each tolerance, how many steps before the original run's end each series " +
    "first reaches the original's final perplexity × (1 + tolerance); missing bar = never reached.",
  async build(scope) {
    if (!(await scope.hasTable(SAVINGS.name))) return { skip: "no savings table in the results" };
    const rows = await scope.query(
      selectSql(
        SAVINGS,
        [
          "series_id",
          "baseline_id",
          "tolerance",
          "target_ppl",
          "first_step",
          "baseline_step",
          "steps_saved",
          "tokens_saved",
        ],
        { instanceKeys: scope.keys, orderBy: ["tolerance", "series_id"] },
      ),
    );
    if (rows.length === 0) return { skip: "no savings rows for the inputs" };
    const series: SeriesMeta[] = [];
    const entries: { s: SeriesMeta; data: DataRow; cells: Cell[] }[] = [];
    for (const r of rows) {
      const s = await scope.seriesFor(str(r.instance_key), str(r.series_id));
      const b = await scope.seriesFor(str(r.instance_key), str(r.baseline_id));
      series.push(s);
      const tol = asNumber(r.tolerance) ?? 0;
      entries.push({
        s,
        data: {
          series: s.groupDisplay,
          tolerance: tolLabel(tol),
          tol,
          steps_saved: asNumber(r.steps_saved),
          tokens_saved: asNumber(r.tokens_saved),
        },
        cells: [
          s.display,
          b.display,
          tolLabel(tol),
          asNumber(r.target_ppl),
          asNumber(r.first_step) ?? "not reached",
          asNumber(r.baseline_step),
          asNumber(r.steps_saved),
          asNumber(r.tokens_saved),
        ],
      });
    }
    // Rows: by tolerance, then in legend order.
    entries.sort((a, b) =>
      (a.data.tol as number) - (b.data.tol as number) || a.s.order - b.s.order
    );
    const shown = uniqueSeries(series.map((s) => ({ series: s })));
    const scale = scaleOfSeries(shown);
    const tolerances = [...new Set(entries.map((e) => e.data.tol as number))].sort((a, b) => a - b);
    const data = entries.map((e) => e.data);
    return {
      rows: data,
      series: shown,
      instanceKeys: [...new Set(rows.map((r) => str(r.instance_key)))].sort(),
      spec: {
        title: this.title,
        data: { values: data.filter((d) => d.steps_saved !== null) },
        width: { step: 18 },
        height: 230,
        mark: { type: "bar" },
        encoding: {
          x: {
            field: "tolerance",
            type: "nominal",
            title: "tolerance over the original's final perplexity",
            sort: tolerances.map(tolLabel),
            axis: { labelAngle: 0 },
          },
          xOffset: { field: "series", type: "nominal", sort: scale.domain },
          y: { field: "steps_saved", type: "quantitative", title: "training steps saved" },
          color: {
            field: "series",
            type: "nominal",
            title: "series",
            scale: { domain: scale.domain, range: scale.colours },
          },
          tooltip: [{ field: "series" }, { field: "steps_saved" }, { field: "tokens_saved" }],
        },
      },
      table: {
        columns: [
          "series",
          "baseline",
          "tolerance",
          "target ppl",
          "first step",
          "baseline step",
          "steps saved",
          "tokens saved",
        ],
        rows: entries.map((e) => e.cells),
        decimals: [null, null, null, 3, null, null, null, null],
        // Wall-clock seconds saved are measured, so they differ run to run: they stay in
        // the savings table (DuckDB) and out of the report, whose bytes are reproducible.
        note: this.description + " Wall-clock seconds saved: column wall_saved_s of the " +
          "savings table (`deno task sql`).",
      },
    };
  },
};

export const SAVINGS_FIGURES: FigureDef[] = [savings];
