// The LAWA ablation (paper Fig. 9): loss vs step of the LAWA series of one training run,
// one line per k (or ν), one panel per ν (or k), the original black and dashed in every
// panel; and, when the intervals step ran, a row of gap-to-the-original curves with
// their 95% paired-bootstrap bands.
import { AXIS, lineChart, type SeriesScale, seriesScale } from "./charts.ts";
import { gapRowOf } from "./intervals.ts";
import { bandOf, loadLoss, lossRows } from "./loss.ts";
import {
  type DataRow,
  describeTrain,
  type FigureDef,
  formatBatch,
  formatLr,
  isSkipped,
  seedNote,
  type SeriesMeta,
  trainingRun,
  trainParamsThatDiffer,
  uniqueKeys,
  uniqueSeries,
} from "./scope.ts";

type Axis = "k" | "nu";
const NAME: Record<Axis, string> = { k: "k", nu: "ν" };
const TITLE: Record<Axis, string> = { k: "k (checkpoints averaged)", nu: "ν (training steps)" };
const label = (f: Axis, v: number) => `${NAME[f]}=${v}`;

/** Fig. 9: LAWA loss vs step, one line per `colour` value, one panel per `panel` value. */
function ablation(id: string, colour: Axis, panel: Axis, paper: string): FigureDef {
  return {
    id,
    title: `LAWA: loss vs step by ${NAME[colour]} at fixed ${NAME[panel]}`,
    paper,
    description: `Validation loss of LAWA series; colour = ${TITLE[colour]}, one panel per ` +
      `${NAME[panel]} (ν in training steps); the original run is the black dashed line in ` +
      `every panel. Shows the training run (lr, batch) with the most LAWA settings.`,
    async build(scope, requested) {
      const points = await loadLoss(scope, "all");
      if (isSkipped(points)) return points;
      const allLawa = points.filter((p) =>
        p.series.method === "lawa" && p.series.k !== null && p.series.nu !== null
      );
      if (allLawa.length === 0) return { skip: "no LAWA series (method 'lawa' with k and ν)" };
      // The ablation is over one training run (seeds aside): the one with the most (k, ν)
      // settings, named by its lr, batch and whatever else tells the runs apart.
      const runOf = trainingRun;
      const differ = trainParamsThatDiffer(uniqueSeries(allLawa));
      const runName = new Map(allLawa.map((p) => [
        runOf(p.series),
        [formatLr(p.series.lr), formatBatch(p.series.batch_tokens), describeTrain(p.series, differ)]
          .filter((x) => x).join(" · "),
      ]));
      const settings = new Map<string, Set<string>>();
      for (const p of allLawa) {
        const run = runOf(p.series);
        settings.set(run, (settings.get(run) ?? new Set()).add(`${p.series.k}/${p.series.nu}`));
      }
      const runs = [...settings.entries()].sort((a, b) => b[1].size - a[1].size);
      const chosen = runs[0][0];
      const lawa = allLawa.filter((p) => runOf(p.series) === chosen);
      const colourValues = [...new Set(lawa.map((p) => p.series[colour] as number))]
        .sort((a, b) => a - b);
      if (colourValues.length < 2 && !requested) {
        return {
          skip: `only one ${NAME[colour]} value (${colourValues[0]}) among the LAWA series`,
        };
      }
      const panels = [...new Set(lawa.map((p) => p.series[panel] as number))].sort((a, b) => a - b);
      const originals = points.filter((p) =>
        p.series.method === "original" && runOf(p.series) === chosen
      );
      const rows: DataRow[] = lossRows(lawa, (p) => ({
        series: label(colour, p.series[colour] as number),
        panel: label(panel, p.series[panel] as number),
      }));
      // The original run is the reference in every panel.
      for (const v of panels) {
        rows.push(...lossRows(originals, () => ({ series: "original", panel: label(panel, v) })));
      }
      const scale: SeriesScale = seriesScale(
        "series",
        TITLE[colour],
        [...colourValues.map((v) => label(colour, v)), ...(originals.length ? ["original"] : [])],
        (n) => n === "original",
      );
      const facet = {
        field: "panel",
        title: `fixed ${TITLE[panel]}`,
        columns: 4,
        sort: panels.map((v) => label(panel, v)), // numeric order: ν=2, 4, 10, 20
      };
      const groups = new Map<string, SeriesMeta[]>();
      for (const s of new Set(lawa.map((p) => p.series))) {
        groups.set(s.group, [...(groups.get(s.group) ?? []), s]);
      }
      const gapRow = await gapRowOf(
        scope,
        [...groups.values()].map((members) => ({
          members,
          fields: {
            series: label(colour, members[0][colour] as number),
            panel: label(panel, members[0][panel] as number),
          },
        })),
        { x: "step", series: scale, facet },
      );
      const used = [...lawa, ...originals];
      const series = uniqueSeries(used);
      const notes = [
        runs.length > 1
          ? `LAWA series of other runs left out: ${
            runs.slice(1).map((r) => runName.get(r[0])).join("; ")
          }.`
          : "",
        seedNote(series) ?? "",
        gapRow?.note ?? "",
      ].filter((n) => n);
      return {
        rows,
        series,
        instanceKeys: [...new Set([...uniqueKeys(used), ...(gapRow?.keys ?? [])])].sort(),
        note: notes.join(" ") || undefined,
        spec: lineChart(
          `${this.title} (${runName.get(chosen)})`,
          rows,
          {
            x: { field: "step", title: AXIS.step },
            y: { field: "loss", title: AXIS.valLoss },
            series: scale,
            band: bandOf(rows),
            facet,
          },
          gapRow ? [gapRow.spec] : [],
          true,
        ),
      };
    },
  };
}

export const ABLATION_FIGURES: FigureDef[] = [
  ablation("ablation-k", "k", "nu", "Fig. 9a"),
  ablation("ablation-nu", "nu", "k", "Fig. 9b"),
];
