// Figures that are mostly tables: the final validation loss of every series (with the gap
// to its original and, when the intervals step ran, that gap's 95% interval), the
// largest loss spike per series, and the zero-shot metrics at the last checkpoint.
// Several seeds of one series become one row: mean ± sd over seeds.
import type { TopLevelSpec } from "vega-lite";
import { asNumber, selectSql, SPIKES, ZEROSHOT } from "../../steps/tables.ts";
import { ORIGINAL_COLOUR, PALETTE } from "./charts.ts";
import { formatGap, gapCurve, gapsOfGroup, loadGaps } from "./intervals.ts";
import { loadLoss } from "./loss.ts";
import {
  type Cell,
  type DataRow,
  type FigureDef,
  isSkipped,
  seedStats,
  type SeriesMeta,
  str,
  trainingRun,
  uniqueKeys,
  uniqueSeries,
} from "./scope.ts";

const METHODS = ["original", "ema", "swa", "lawa"];
const METHOD_COLOURS = [ORIGINAL_COLOUR, PALETTE[1], PALETTE[2], PALETTE[0]];

/** Colour by method, for the methods present: the original black, the others apart. */
function methodScale(rows: DataRow[]): { domain: string[]; range: string[] } {
  const present = new Set(rows.map((r) => String(r.method)));
  const known = METHODS.filter((m) => present.has(m));
  const other = [...present].filter((m) => !METHODS.includes(m)).sort();
  return {
    domain: [...known, ...other],
    range: [
      ...known.map((m) => METHOD_COLOURS[METHODS.indexOf(m)]),
      ...other.map((_, i) => PALETTE[4 + i % (PALETTE.length - 4)]),
    ],
  };
}

/** "3.1234" for one seed, "3.1234 ± 0.0021" (sd) for several. */
function meanCell(values: number[], decimals: number): Cell {
  if (values.length === 0) return null;
  const s = seedStats(values);
  if (s.n === 1) return Number(s.mean.toFixed(decimals));
  return `${s.mean.toFixed(decimals)} ± ${s.sd.toFixed(decimals)}`;
}

/** Members of each seed group, groups in legend order. */
function groupsOf(series: SeriesMeta[]): SeriesMeta[][] {
  const groups = new Map<string, SeriesMeta[]>();
  for (const s of [...series].sort((a, b) => a.order - b.order)) {
    groups.set(s.group, [...(groups.get(s.group) ?? []), s]);
  }
  return [...groups.values()];
}

/** Final checkpoint of each series: loss per domain, and the gap to the matching original. */
const finalTable: FigureDef = {
  id: "final-table",
  title: "Final validation loss per series and domain",
  paper: "Fig. 1 (end points), Table 1 (held-out domains)",
  description: "Loss (nats/token) at each series' last evaluated step; Δ is the difference to " +
    "the original of the same training run and seed (negative = better). Rows: " +
    "by training run, the original first, then by final loss.",
  async build(scope) {
    const points = await loadLoss(scope, "every");
    if (isSkipped(points)) return points;
    if (points.length === 0) return { skip: "no eval_loss rows for the inputs" };
    const lastStep = new Map<string, number>();
    for (const p of points) {
      lastStep.set(p.series.ref, Math.max(lastStep.get(p.series.ref) ?? -Infinity, p.step));
    }
    const final = points.filter((p) => p.step === lastStep.get(p.series.ref));
    const series = uniqueSeries(final);
    const domains = [...new Set(final.map((p) => p.domain))].sort((a, b) =>
      a === "all" ? -1 : b === "all" ? 1 : a.localeCompare(b)
    );
    const lossOf = (s: SeriesMeta, d: string) =>
      final.find((p) => p.series.ref === s.ref && p.domain === d)?.loss ?? null;
    const headline = (s: SeriesMeta) => lossOf(s, "all") ?? lossOf(s, domains[0]);
    const groups = groupsOf(series);
    const sameRun = (a: SeriesMeta, b: SeriesMeta) => trainingRun(a) === trainingRun(b);
    const originalOf = (s: SeriesMeta) =>
      series.find((o) => o.method === "original" && sameRun(o, s) && o.seed === s.seed) ??
        series.find((o) => o.method === "original" && sameRun(o, s));
    const gaps = await loadGaps(scope);
    const values = (members: SeriesMeta[], f: (s: SeriesMeta) => number | null) =>
      members.map(f).filter((v): v is number => v !== null);
    const mean = (v: number[]) => v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;

    const entries = groups.map((members) => {
      const head = members[0];
      // Δ per seed against the original of the same seed, then averaged (an original's
      // own Δ is 0 by definition, not a spread over seeds).
      const deltas = head.method === "original" ? [0] : values(members, (s) => {
        const o = originalOf(s);
        const a = headline(s);
        const b = o ? headline(o) : null;
        return a !== null && b !== null ? a - b : null;
      });
      const gap = gapCurve(gapsOfGroup(gaps, members)).at(-1);
      return {
        head,
        members,
        loss: mean(values(members, headline)),
        deltas,
        gap: head.method === "original" ? undefined : gap,
        run: trainingRun(head),
      };
    });
    const runOrder = [...new Set(entries.map((e) => e.run))];
    entries.sort((a, b) =>
      runOrder.indexOf(a.run) - runOrder.indexOf(b.run) ||
      Number(b.head.method === "original") - Number(a.head.method === "original") ||
      (a.loss ?? Infinity) - (b.loss ?? Infinity)
    );
    const withGaps = entries.some((e) => e.gap);
    const seeds = Math.max(...entries.map((e) => e.members.length));
    const rows: DataRow[] = [];
    const tableRows: Cell[][] = [];
    for (const e of entries) {
      const all = values(e.members, headline);
      rows.push({
        series: e.head.groupDisplay,
        method: e.head.method,
        step: lastStep.get(e.head.ref) ?? null,
        loss: mean(all),
        loss_lo: all.length > 1 ? Math.min(...all) : null,
        loss_hi: all.length > 1 ? Math.max(...all) : null,
        delta: mean(e.deltas),
        n_seeds: e.members.length,
      });
      tableRows.push([
        e.head.groupDisplay,
        e.head.method,
        lastStep.get(e.head.ref) ?? null,
        ...(seeds > 1 ? [e.members.length] : []),
        ...domains.map((d) => meanCell(values(e.members, (s) => lossOf(s, d)), 4)),
        meanCell(e.deltas, 4),
        ...(withGaps ? [e.gap ? formatGap(e.gap) : null] : []),
      ]);
    }
    const shown = rows.filter((r) => r.loss !== null);
    if (shown.length === 0) return { skip: "every series' final loss is missing (diverged?)" };
    const spec: TopLevelSpec = {
      title: "Final validation loss (all domains)",
      data: { values: shown },
      width: 420,
      height: { step: 22 },
      encoding: {
        y: {
          field: "series",
          type: "nominal",
          sort: shown.map((r) => String(r.series)),
          title: null,
        },
        x: {
          field: "loss",
          type: "quantitative",
          scale: { zero: false },
          title: "final validation loss (nats/token)",
        },
      },
      layer: [
        {
          mark: { type: "rule", color: "#bbb" },
          transform: [{ filter: "isValid(datum.loss_lo)" }],
          encoding: { x: { field: "loss_lo", type: "quantitative" }, x2: { field: "loss_hi" } },
        },
        {
          mark: { type: "point", filled: true, size: 70 },
          encoding: {
            color: {
              field: "method",
              type: "nominal",
              title: "method",
              scale: methodScale(shown),
            },
          },
        },
        {
          mark: { type: "text", align: "left", dx: 7, fontSize: 10 },
          encoding: { text: { field: "loss", type: "quantitative", format: ".4f" } },
        },
      ],
    };
    const columns = [
      "series",
      "method",
      "step",
      ...(seeds > 1 ? ["seeds"] : []),
      ...domains.map((d) => `loss ${d}`),
      "Δ vs original",
      ...(withGaps ? ["gap [95% CI]"] : []),
    ];
    return {
      rows,
      series,
      instanceKeys: uniqueKeys(final),
      note: seeds > 1
        ? "Series with several seeds: mean ± sd over seeds (the bar spans min–max)."
        : undefined,
      spec,
      table: {
        columns,
        rows: tableRows,
        decimals: columns.map((c) => c.startsWith("loss") || c.startsWith("Δ") ? 4 : null),
        note: this.description +
          (withGaps
            ? " gap: the intervals step's paired-bootstrap gap at the last step, with its 95% interval."
            : ""),
      },
    };
  },
};

const spikes: FigureDef = {
  id: "spikes",
  title: "Largest loss spike per series",
  paper: "Sec. 5 (LAWA smooths loss spikes)",
  description: "The largest rise of validation loss from one checkpoint to the next, per " +
    "series; each bar is labelled with the step it happened at.",
  async build(scope) {
    if (!(await scope.hasTable(SPIKES.name))) return { skip: "no spikes table in the results" };
    const rows = await scope.query(
      selectSql(SPIKES, ["series_id", "step", "rise"], {
        instanceKeys: scope.keys,
        orderBy: ["series_id"],
      }),
    );
    if (rows.length === 0) return { skip: "no spikes rows for the inputs" };
    const data: DataRow[] = [];
    const series: SeriesMeta[] = [];
    for (const r of rows) {
      const s = await scope.seriesFor(str(r.instance_key), str(r.series_id));
      series.push(s);
      const step = asNumber(r.step);
      data.push({
        series: s.display,
        method: s.method,
        step,
        rise: asNumber(r.rise),
        at: step === null ? "" : `step ${step}`,
        order: s.order,
      });
    }
    data.sort((a, b) => (a.order as number) - (b.order as number));
    const shown = uniqueSeries(series.map((s) => ({ series: s })));
    return {
      rows: data,
      series: shown,
      instanceKeys: [...new Set(rows.map((r) => str(r.instance_key)))].sort(),
      spec: {
        title: this.title,
        data: { values: data },
        width: 420,
        height: { step: 22 },
        encoding: {
          y: {
            field: "series",
            type: "nominal",
            sort: data.map((d) => String(d.series)),
            title: null,
          },
          x: {
            field: "rise",
            type: "quantitative",
            title: "largest loss rise between checkpoints (nats/token)",
            // Room right of the longest bar for its "step N" label.
            scale: { domainMax: 1.3 * Math.max(0, ...data.map((d) => (d.rise as number) ?? 0)) },
          },
        },
        layer: [
          {
            mark: "bar",
            encoding: {
              color: {
                field: "method",
                type: "nominal",
                title: "method",
                scale: methodScale(data),
              },
            },
          },
          {
            mark: { type: "text", align: "left", dx: 4, fontSize: 10 },
            encoding: { text: { field: "at", type: "nominal" } },
          },
        ],
      },
      table: {
        columns: ["series", "method", "at step", "loss rise"],
        rows: data.map((d) => [d.series, d.method, d.step, d.rise]),
        decimals: [null, null, null, 4],
        note: this.description,
      },
    };
  },
};

const zeroshot: FigureDef = {
  id: "zeroshot",
  title: "Zero-shot evaluation at the last checkpoint",
  paper: "Table 1",
  description: "Each task's metric at each series' last evaluated step.",
  async build(scope) {
    if (!(await scope.hasTable(ZEROSHOT.name))) return { skip: "no zeroshot table in the results" };
    const all = await scope.query(
      selectSql(ZEROSHOT, ["series_id", "step", "task", "metric", "value", "n"], {
        instanceKeys: scope.keys,
        orderBy: ["task", "metric", "series_id"],
      }),
    );
    const last = new Map<string, number>();
    for (const r of all) {
      const id = `${str(r.instance_key)}|${str(r.series_id)}`;
      last.set(id, Math.max(last.get(id) ?? -Infinity, asNumber(r.step) ?? 0));
    }
    const rows = all.filter((r) =>
      asNumber(r.step) === last.get(`${str(r.instance_key)}|${str(r.series_id)}`)
    );
    if (rows.length === 0) return { skip: "no zeroshot rows for the inputs" };
    const series: SeriesMeta[] = [];
    const data: DataRow[] = [];
    for (const r of rows) {
      const s = await scope.seriesFor(str(r.instance_key), str(r.series_id));
      series.push(s);
      data.push({
        series: s.display,
        series_ref: s.ref,
        method: s.method,
        step: asNumber(r.step),
        measure: `${str(r.task)} · ${str(r.metric)}`,
        value: asNumber(r.value),
        n: asNumber(r.n),
      });
    }
    const shown = uniqueSeries(series.map((s) => ({ series: s })));
    const measures = [...new Set(data.map((d) => d.measure as string))];
    const names = [...new Set(shown.map((s) => s.display))];
    const tableRows: Cell[][] = shown.map((s) => {
      const mine = data.filter((d) => d.series_ref === s.ref);
      return [
        s.display,
        mine[0]?.step ?? null,
        ...measures.map((m) => (mine.find((d) => d.measure === m)?.value as number) ?? null),
      ];
    });
    return {
      rows: data,
      series: shown,
      instanceKeys: [...new Set(rows.map((r) => str(r.instance_key)))].sort(),
      spec: {
        title: this.title,
        data: { values: data },
        facet: { field: "measure", type: "nominal", title: "task · metric", sort: measures },
        columns: 3,
        resolve: { scale: { x: "independent" } },
        spec: {
          width: 200,
          height: { step: 16 },
          mark: "bar",
          encoding: {
            y: { field: "series", type: "nominal", sort: names, title: null },
            x: { field: "value", type: "quantitative", title: "metric value" },
            color: { field: "method", type: "nominal", title: "method", scale: methodScale(data) },
          },
        },
      },
      table: {
        columns: ["series", "step", ...measures],
        rows: tableRows,
        decimals: [null, null, ...measures.map(() => 3)],
        note: `${this.description} n (examples) per task: ` +
          measures.map((m) => `${m}: ${data.find((d) => d.measure === m)?.n ?? "?"}`).join(", "),
      },
    };
  },
};

export const TABLE_FIGURES: FigureDef[] = [finalTable, spikes, zeroshot];
