// The figure catalogue: each figure of the paper we reproduce is one DuckDB query over
// the results tables plus one Vega-Lite spec builder (and, for some, a table).
// Every query is restricted to the instance keys the plot step was given, so a figure
// shows exactly the runs its pipeline made and can be traced back to their params.
// Figures show whatever the data says; a figure without data is skipped with a reason.
import type { InputRef } from "../pipeline/step.ts";
import type { VegaLiteSpec } from "./render.ts";
import { selectSql, TRAIN_LOG } from "../steps/tables.ts";

// ---------------------------------------------------------------------------------
// Data access

/** Runs a read-only SQL query against the results database. */
export type QueryFn = (sql: string) => Promise<Record<string, unknown>[]>;

/** A value for a chart row or table cell. */
export type Cell = string | number | boolean | null;
export type DataRow = Record<string, Cell>;

/** A table shown in the report (and written as markdown / HTML). */
export interface TableData {
  columns: string[];
  rows: Cell[][];
  /** One line under the table saying what it shows. */
  note?: string;
}

/** One evaluated series (a row of the `series` table), with a unique display label. */
export interface SeriesMeta {
  /** `instance_key|series_id`: unique across evaluate instances. */
  ref: string;
  instance_key: string;
  series_id: string;
  label: string;
  method: string;
  k: number | null;
  nu: number | null;
  lr: number | null;
  batch_tokens: number | null;
  params: Record<string, unknown>;
  /** Label made unique among the series shown (the stored label plus what tells them apart). */
  display: string;
  /** Position in legends: original, EMA, SWA, LAWA (by k, ν), others; then lr, batch. */
  order: number;
}

/** What a built figure holds. */
export interface FigureResult {
  /** The data the chart plots (also written as `<id>.csv`). */
  rows: DataRow[];
  spec: VegaLiteSpec;
  table?: TableData;
  /** The series the figure shows. */
  series: SeriesMeta[];
  /** Instance keys of the result rows the figure read. */
  instanceKeys: string[];
  /** What the figure leaves out, if anything (shown under it in the report). */
  note?: string;
}

export interface Skipped {
  skip: string;
}

export interface FigureDef {
  id: string;
  title: string;
  /** Which figure or table of the paper it mirrors. */
  paper: string;
  /** What it shows, one sentence. */
  description: string;
  /** Build the figure; `requested` is true when the user named it (then sweep figures
   *  render even if the swept value does not vary). */
  build(scope: FigureScope, requested: boolean): Promise<FigureResult | Skipped>;
}

/** Quote keys as a SQL list literal: `('a', 'b')`; an empty list matches nothing. */
export function sqlList(values: string[]): string {
  if (values.length === 0) return "(NULL)";
  return "(" + values.map((v) => `'${v.replaceAll("'", "''")}'`).join(", ") + ")";
}

function num(v: unknown): number | null {
  if (v === null || v === undefined || v === "") return null;
  const n = typeof v === "number" ? v : Number(v);
  return Number.isFinite(n) ? n : null;
}

function str(v: unknown): string {
  return v === null || v === undefined ? "" : String(v);
}

const METHOD_RANK: Record<string, number> = { original: 0, ema: 1, swa: 2, lawa: 3 };

/** Short labels for swept values. */
export function formatLr(lr: number | null): string {
  if (lr === null) return "lr ?";
  return `lr ${Number(lr.toPrecision(3)).toExponential().replace("e-", "e-").replace("e+", "e")}`;
}
export function formatBatch(tokens: number | null): string {
  if (tokens === null) return "batch ?";
  return tokens >= 1000
    ? `${Number((tokens / 1000).toPrecision(3))}K tok/step`
    : `${tokens} tok/step`;
}

/**
 * Everything a figure may read: the query function, the inputs, the keys to filter by,
 * and the series metadata (loaded once and shared by all figures).
 */
export class FigureScope {
  readonly keys: string[];
  #tables?: Set<string>;
  #series?: Map<string, SeriesMeta>;
  #trainKeys?: string[];

  constructor(readonly query: QueryFn, readonly inputs: InputRef[]) {
    this.keys = [...new Set(inputs.map((i) => i.key))].sort();
  }

  /** SQL list of the input keys: `instance_key IN ${scope.inKeys}`. */
  get inKeys(): string {
    return sqlList(this.keys);
  }

  async hasTable(name: string): Promise<boolean> {
    if (!this.#tables) {
      const rows = await this.query("SELECT table_name FROM information_schema.tables");
      this.#tables = new Set(rows.map((r) => str(r.table_name)));
    }
    return this.#tables.has(name);
  }

  /** Names of the tables among `names` that the database lacks. */
  async missingTables(names: string[]): Promise<string[]> {
    const missing: string[] = [];
    for (const n of names) if (!(await this.hasTable(n))) missing.push(n);
    return missing;
  }

  /** All series of the input instances, by `instance_key|series_id`. */
  async series(): Promise<Map<string, SeriesMeta>> {
    if (this.#series) return this.#series;
    const found = new Map<string, SeriesMeta>();
    if (await this.hasTable("series")) {
      const rows = await this.query(
        `SELECT instance_key, series_id, label, method, k, nu, lr,
                batch_tokens::DOUBLE AS batch_tokens, params::VARCHAR AS params
         FROM series WHERE instance_key IN ${this.inKeys}
         ORDER BY instance_key, series_id`,
      );
      for (const r of rows) {
        let params: Record<string, unknown> = {};
        try {
          params = r.params ? JSON.parse(str(r.params)) : {};
        } catch { /* params that are not JSON are shown as absent */ }
        const meta: SeriesMeta = {
          ref: `${str(r.instance_key)}|${str(r.series_id)}`,
          instance_key: str(r.instance_key),
          series_id: str(r.series_id),
          label: str(r.label) || str(r.series_id),
          method: str(r.method).toLowerCase() || "unknown",
          k: num(r.k),
          nu: num(r.nu),
          lr: num(r.lr),
          batch_tokens: num(r.batch_tokens),
          params,
          display: "",
          order: 0,
        };
        found.set(meta.ref, meta);
      }
    }
    const ordered = [...found.values()];
    finishSeries(ordered);
    return this.#series = new Map(ordered.map((s) => [s.ref, s]));
  }

  /** Metadata for a series, or a stand-in when the `series` table lacks it. */
  async seriesFor(instanceKey: string, seriesId: string): Promise<SeriesMeta> {
    const all = await this.series();
    const ref = `${instanceKey}|${seriesId}`;
    const known = all.get(ref) ?? [...all.values()].find((s) => s.series_id === seriesId);
    if (known) return known;
    const standIn: SeriesMeta = {
      ref,
      instance_key: instanceKey,
      series_id: seriesId,
      label: seriesId,
      method: "unknown",
      k: null,
      nu: null,
      lr: null,
      batch_tokens: null,
      params: {},
      display: seriesId,
      order: 1e6 + all.size,
    };
    all.set(ref, standIn);
    return standIn;
  }

  /**
   * Train instance keys reachable from the inputs: inputs that are train instances, the
   * producer key in each series id (`<producer key>/<subfolder>`), and `train_key` /
   * `source_key` strings in series params.
   */
  async trainKeys(): Promise<string[]> {
    if (this.#trainKeys) return this.#trainKeys;
    const keys = new Set(this.inputs.filter((i) => i.step === "train").map((i) => i.key));
    for (const s of (await this.series()).values()) {
      const producer = s.series_id.split("/")[0];
      if (producer) keys.add(producer);
      for (const name of ["train_key", "source_key"]) {
        const v = s.params[name] ?? (s.params.train as Record<string, unknown> | undefined)?.[name];
        if (typeof v === "string") keys.add(v);
      }
    }
    return this.#trainKeys = [...keys].sort();
  }
}

/** Order series for legends and give each a label that is unique among them. */
function finishSeries(series: SeriesMeta[]): void {
  series.sort((a, b) =>
    (METHOD_RANK[a.method] ?? 9) - (METHOD_RANK[b.method] ?? 9) ||
    (a.k ?? 0) - (b.k ?? 0) || (a.nu ?? 0) - (b.nu ?? 0) ||
    (a.lr ?? 0) - (b.lr ?? 0) || (a.batch_tokens ?? 0) - (b.batch_tokens ?? 0) ||
    a.label.localeCompare(b.label) || a.ref.localeCompare(b.ref)
  );
  series.forEach((s, i) => s.order = i);
  const byLabel = new Map<string, SeriesMeta[]>();
  for (const s of series) byLabel.set(s.label, [...(byLabel.get(s.label) ?? []), s]);
  for (const group of byLabel.values()) {
    if (group.length === 1) {
      group[0].display = group[0].label;
      continue;
    }
    const lrs = new Set(group.map((s) => s.lr)).size > 1;
    const batches = new Set(group.map((s) => s.batch_tokens)).size > 1;
    for (const s of group) {
      const parts = [s.label];
      if (lrs) parts.push(formatLr(s.lr));
      if (batches) parts.push(formatBatch(s.batch_tokens));
      s.display = parts.join(" · ");
    }
    // Still equal (same label, lr and batch): tell them apart by the producing instance.
    const seen = new Map<string, number>();
    for (const s of group) seen.set(s.display, (seen.get(s.display) ?? 0) + 1);
    for (const s of group) {
      if ((seen.get(s.display) ?? 0) > 1) s.display += ` [${s.series_id.slice(0, 8)}]`;
    }
  }
}

// ---------------------------------------------------------------------------------
// Shared queries

interface LossPoint {
  series: SeriesMeta;
  step: number;
  tokens: number | null;
  domain: string;
  loss: number | null;
  ppl: number | null;
  instance_key: string;
}

async function loadLoss(scope: FigureScope, domainFilter: string): Promise<LossPoint[] | Skipped> {
  const missing = await scope.missingTables(["eval_loss"]);
  if (missing.length) return { skip: `no ${missing.join(", ")} table in the results` };
  const rows = await scope.query(
    `SELECT instance_key, series_id, step, tokens::DOUBLE AS tokens, domain, loss, ppl
     FROM eval_loss WHERE instance_key IN ${scope.inKeys} AND ${domainFilter}
     ORDER BY instance_key, series_id, domain, step`,
  );
  const points: LossPoint[] = [];
  for (const r of rows) {
    points.push({
      series: await scope.seriesFor(str(r.instance_key), str(r.series_id)),
      step: num(r.step) ?? 0,
      tokens: num(r.tokens),
      domain: str(r.domain),
      loss: num(r.loss),
      ppl: num(r.ppl),
      instance_key: str(r.instance_key),
    });
  }
  return points;
}

function isSkipped<T>(v: T | Skipped): v is Skipped {
  return typeof v === "object" && v !== null && "skip" in v;
}

function uniqueSeries(points: { series: SeriesMeta }[]): SeriesMeta[] {
  const map = new Map(points.map((p) => [p.series.ref, p.series]));
  return [...map.values()].sort((a, b) => a.order - b.order);
}

function uniqueKeys(points: { instance_key: string }[]): string[] {
  return [...new Set(points.map((p) => p.instance_key))].sort();
}

/** The chart row for a loss point: flat fields Vega-Lite can encode. */
function lossRow(p: LossPoint, lateFrom: number): DataRow {
  const s = p.series;
  return {
    series: s.display,
    series_ref: s.ref,
    method: s.method,
    k: s.k,
    nu: s.nu,
    lr: formatLr(s.lr),
    batch: formatBatch(s.batch_tokens),
    step: p.step,
    tokens: p.tokens,
    domain: p.domain,
    loss: p.loss,
    late: p.step >= lateFrom,
  };
}

/** First step of the second half of training (by the largest step present). */
function lateStart(points: { step: number }[]): number {
  return Math.max(0, ...points.map((p) => p.step)) / 2;
}

const PALETTE = [
  "#4c78a8",
  "#f58518",
  "#54a24b",
  "#e45756",
  "#72b7b2",
  "#b279a2",
  "#eeca3b",
  "#9d755d",
  "#ff9da6",
  "#bab0ac",
];

interface LineOptions {
  x: { field: string; title: string };
  y: { field: string; title: string };
  color: { field: string; title: string; domain: string[]; range?: string[] };
  dash?: { field: string; title: string };
  /** Facet into columns by this field. */
  /** `sort`: panel values in display order (default: alphabetical). */
  facet?: { field: string; title: string; columns?: number; sort?: string[] };
  /** Add a second panel zoomed on the second half of training (field `late`). */
  zoomLate?: boolean;
  points?: boolean;
  width?: number;
  height?: number;
}

/** A line chart (optionally faceted, optionally with a zoomed second panel). */
function lineChart(title: string, rows: DataRow[], o: LineOptions): VegaLiteSpec {
  const encoding: Record<string, unknown> = {
    x: {
      field: o.x.field,
      type: "quantitative",
      title: o.x.title,
      ...(o.x.field === "tokens" ? { axis: { format: "~s" } } : {}),
    },
    y: { field: o.y.field, type: "quantitative", title: o.y.title, scale: { zero: false } },
    color: {
      field: o.color.field,
      type: "nominal",
      title: o.color.title,
      scale: { domain: o.color.domain, ...(o.color.range ? { range: o.color.range } : {}) },
    },
    detail: { field: "series_ref" in (rows[0] ?? {}) ? "series_ref" : o.color.field },
    tooltip: [
      { field: o.color.field },
      { field: o.x.field, type: "quantitative" },
      { field: o.y.field, type: "quantitative", format: ".4f" },
    ],
  };
  if (o.dash) encoding.strokeDash = { field: o.dash.field, type: "nominal", title: o.dash.title };
  const layer: VegaLiteSpec = {
    mark: { type: "line", point: o.points ?? false, strokeWidth: 1.6 },
    encoding,
  };
  const width = o.width ?? (o.facet ? 240 : 460);
  const height = o.height ?? (o.facet ? 170 : 230);
  const panel = (panelTitle: string | null, late: boolean): VegaLiteSpec => {
    const transform = late ? [{ filter: "datum.late" }] : [];
    if (o.facet) {
      return {
        ...(panelTitle ? { title: panelTitle } : {}),
        transform,
        facet: {
          field: o.facet.field,
          type: "nominal",
          title: o.facet.title,
          ...(o.facet.sort ? { sort: o.facet.sort } : {}),
        },
        columns: o.facet.columns ?? 4,
        spec: { width, height, ...layer },
        resolve: { scale: { y: "independent" } },
      };
    }
    return { ...(panelTitle ? { title: panelTitle } : {}), transform, width, height, ...layer };
  };
  const body = o.zoomLate
    ? { vconcat: [panel("whole run", false), panel("second half (zoom)", true)] }
    : panel(null, false);
  return { title, data: { values: rows }, ...body };
}

/** Colour domain of series display names in legend order. */
function seriesDomain(series: SeriesMeta[]): string[] {
  return [...new Set(series.map((s) => s.display))];
}

// ---------------------------------------------------------------------------------
// Figures

/** Chart rows (with the late-zoom flag), the series shown and the instance keys read. */
function lossFigureData(points: LossPoint[]) {
  const late = lateStart(points);
  return {
    rows: points.map((p) => lossRow(p, late)),
    series: uniqueSeries(points),
    instanceKeys: uniqueKeys(points),
  };
}

const lossVsStep: FigureDef = {
  id: "loss-vs-step",
  title: "Validation loss vs step",
  paper: "Fig. 1",
  description: "Held-out loss (all domains, token-weighted) of every evaluated series.",
  async build(scope) {
    const points = await loadLoss(scope, "domain = 'all'");
    if (isSkipped(points)) return points;
    if (points.length === 0) return { skip: "no eval_loss rows with domain 'all' for the inputs" };
    const { rows, series, instanceKeys } = lossFigureData(points);
    return {
      rows,
      series,
      instanceKeys,
      spec: lineChart("Validation loss vs step", rows, {
        x: { field: "step", title: "training step" },
        y: { field: "loss", title: "validation loss (nats/token)" },
        color: { field: "series", title: "series", domain: seriesDomain(series) },
        zoomLate: true,
      }),
    };
  },
};

/** Fig. 9: LAWA loss vs step, one line per `colour` value, one panel per `panel` value. */
function ablation(id: string, colour: "k" | "nu", panel: "k" | "nu", paper: string): FigureDef {
  const name = (f: "k" | "nu") => (f === "k" ? "k" : "ν");
  return {
    id,
    title: `LAWA: loss vs step by ${name(colour)} at fixed ${name(panel)}`,
    paper,
    description: `Validation loss of LAWA series; colour = ${name(colour)} (checkpoints ` +
      `averaged / spacing), one panel per ${
        name(panel)
      }; the original run is the black dashed line. ` +
      `Shows the training run (lr, batch) with the most LAWA settings.`,
    async build(scope, requested) {
      const points = await loadLoss(scope, "domain = 'all'");
      if (isSkipped(points)) return points;
      const allLawa = points.filter((p) =>
        p.series.method === "lawa" && p.series.k !== null && p.series.nu !== null
      );
      if (allLawa.length === 0) return { skip: "no LAWA series (method 'lawa' with k and ν)" };
      // The ablation is over one training run: the (lr, batch) with the most (k, ν) settings.
      const runOf = (s: SeriesMeta) => `${formatLr(s.lr)} · ${formatBatch(s.batch_tokens)}`;
      const settings = new Map<string, Set<string>>();
      for (const p of allLawa) {
        const run = runOf(p.series);
        settings.set(run, (settings.get(run) ?? new Set()).add(`${p.series.k}/${p.series.nu}`));
      }
      const runs = [...settings.entries()].sort((a, b) => b[1].size - a[1].size);
      const chosen = runs[0][0];
      const lawa = allLawa.filter((p) => runOf(p.series) === chosen);
      const note = runs.length > 1
        ? `LAWA series of other runs left out: ${runs.slice(1).map((r) => r[0]).join("; ")}.`
        : undefined;
      const colourValues = [...new Set(lawa.map((p) => p.series[colour] as number))].sort((a, b) =>
        a - b
      );
      if (colourValues.length < 2 && !requested) {
        return {
          skip: `only one ${name(colour)} value (${colourValues[0]}) among the LAWA series`,
        };
      }
      const panels = [...new Set(lawa.map((p) => p.series[panel] as number))].sort((a, b) => a - b);
      const originals = points.filter((p) =>
        p.series.method === "original" && runOf(p.series) === chosen
      );
      const late = lateStart(points);
      const rows: DataRow[] = [];
      const label = (f: "k" | "nu", v: number) => `${name(f)}=${v}`;
      for (const p of lawa) {
        rows.push({
          ...lossRow(p, late),
          colour: label(colour, p.series[colour] as number),
          panel: label(panel, p.series[panel] as number),
          reference: "LAWA",
        });
      }
      // The original run is the reference in every panel.
      for (const v of panels) {
        for (const p of originals) {
          rows.push({
            ...lossRow(p, late),
            colour: "original",
            panel: label(panel, v),
            reference: "original",
          });
        }
      }
      const domain = [...colourValues.map((v) => label(colour, v)), "original"];
      const range = [...colourValues.map((_, i) => PALETTE[i % PALETTE.length]), "#000000"];
      const used = [...lawa, ...originals];
      return {
        rows,
        series: uniqueSeries(used),
        instanceKeys: uniqueKeys(used),
        note,
        spec: lineChart(`${this.title} (${chosen})`, rows, {
          x: { field: "step", title: "training step" },
          y: { field: "loss", title: "validation loss" },
          color: { field: "colour", title: name(colour), domain, range },
          dash: { field: "reference", title: "series" },
          facet: {
            field: "panel",
            title: `fixed ${name(panel)}`,
            columns: 4,
            sort: panels.map((v) => label(panel, v)), // numeric order: ν=1, 2, 5, 10
          },
          zoomLate: true,
        }),
      };
    },
  };
}

function round(v: number | null, digits = 4): number | null {
  return v === null ? null : Number(v.toFixed(digits));
}

/** Final checkpoint of each series: loss per domain, and the gap to the matching original. */
const finalTable: FigureDef = {
  id: "final-table",
  title: "Final validation loss per series and domain",
  paper: "Fig. 1 (end points), Table 1 (held-out domains)",
  description: "Loss at each series' last evaluated step; Δ is the difference to the original " +
    "series trained with the same learning rate and batch (negative = better).",
  async build(scope) {
    const points = await loadLoss(scope, "TRUE");
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
    const originalFor = (s: SeriesMeta) =>
      series.find((o) =>
        o.method === "original" && o.lr === s.lr && o.batch_tokens === s.batch_tokens
      );
    const rows: DataRow[] = [];
    const tableRows: Cell[][] = [];
    for (const s of series) {
      const all = lossOf(s, "all") ?? lossOf(s, domains[0]);
      const orig = originalFor(s);
      const origLoss = orig ? lossOf(orig, "all") ?? lossOf(orig, domains[0]) : null;
      const delta = all !== null && origLoss !== null ? all - origLoss : null;
      rows.push({
        series: s.display,
        method: s.method,
        step: lastStep.get(s.ref) ?? null,
        loss: all,
        delta,
      });
      tableRows.push([
        s.display,
        s.method,
        lastStep.get(s.ref) ?? null,
        ...domains.map((d) => round(lossOf(s, d))),
        round(delta),
      ]);
    }
    const shown = rows.filter((r) => r.loss !== null);
    if (shown.length === 0) return { skip: "every series' final loss is missing (diverged?)" };
    const spec: VegaLiteSpec = {
      title: "Final validation loss (all domains)",
      data: { values: shown },
      width: 420,
      height: { step: 22 },
      encoding: {
        y: { field: "series", type: "nominal", sort: { field: "loss" }, title: null },
        x: { field: "loss", type: "quantitative", scale: { zero: false }, title: "final loss" },
      },
      layer: [
        {
          mark: { type: "rule", color: "#ccc" },
          encoding: { x2: { datum: Math.max(...shown.map((r) => r.loss as number)) } },
        },
        {
          mark: { type: "point", filled: true, size: 70 },
          encoding: { color: { field: "method", type: "nominal", title: "method" } },
        },
        {
          mark: { type: "text", align: "left", dx: 7, fontSize: 10 },
          encoding: { text: { field: "loss", type: "quantitative", format: ".4f" } },
        },
      ],
    };
    return {
      rows,
      series,
      instanceKeys: uniqueKeys(final),
      spec,
      table: {
        columns: ["series", "method", "step", ...domains.map((d) => `loss ${d}`), "Δ vs original"],
        rows: tableRows,
        note: this.description,
      },
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
  return {
    id,
    title: `Validation loss by ${what}, with and without LAWA`,
    paper,
    description: `Validation loss vs ${x === "step" ? "step" : "tokens seen"}; colour = ` +
      `${what}, dash = original vs LAWA; the other training param is held fixed and one LAWA ` +
      `setting (the one run at the most ${
        field === "lr" ? "learning rates" : "batch sizes"
      }) is shown.`,
    async build(scope, requested) {
      const points = await loadLoss(scope, "domain = 'all'");
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
      const lawaAt = new Map<string, Set<number | null>>();
      for (const p of atFixed.filter((p) => p.series.method === "lawa")) {
        const kn = `k=${p.series.k} ν=${p.series.nu}`;
        lawaAt.set(kn, (lawaAt.get(kn) ?? new Set()).add(p.series[field]));
      }
      const lawaSetting = [...lawaAt.entries()].sort((a, b) => b[1].size - a[1].size)[0]?.[0];
      const used = atFixed.filter((p) =>
        p.series.method === "original" || `k=${p.series.k} ν=${p.series.nu}` === lawaSetting
      );
      const fixedLabel = other === "lr" ? formatLr(fixed) : formatBatch(fixed);
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
      const note = left.length ? `Left out: ${left.join("; ")}.` : undefined;
      const values = [...new Set(used.map((p) => p.series[field]))];
      if (values.length < 2 && !requested) {
        return { skip: `only one ${what} (${values[0]}) among the series` };
      }
      const late = lateStart(used);
      const rows = used.map((p) => ({
        ...lossRow(p, late),
        swept: field === "lr" ? formatLr(p.series.lr) : formatBatch(p.series.batch_tokens),
        kind: p.series.method === "lawa" ? "LAWA" : "original",
      }));
      const order = [...new Set(used.map((p) => p.series[field] ?? 0))].sort((a, b) => a - b);
      const domain = order.map((v) => field === "lr" ? formatLr(v) : formatBatch(v));
      return {
        rows,
        series: uniqueSeries(used),
        instanceKeys: uniqueKeys(used),
        note,
        spec: lineChart(
          `${this.title} (${fixedLabel}${lawaSetting ? `, LAWA ${lawaSetting}` : ""})`,
          rows,
          {
            x: { field: x, title: x === "step" ? "training step" : "tokens seen" },
            y: { field: "loss", title: "validation loss" },
            color: { field: "swept", title: what, domain },
            dash: { field: "kind", title: "method" },
            zoomLate: true,
          },
        ),
      };
    },
  };
}

const trainLoss: FigureDef = {
  id: "train-loss",
  title: "Training loss and learning rate",
  paper: "Fig. 2 (training curves), Fig. 12 (SWA LR)",
  description: "Per-step training loss of each training run (top) and its learning rate (bottom).",
  async build(scope) {
    const missing = await scope.missingTables(["train_log"]);
    if (missing.length) return { skip: "no train_log table in the results" };
    const trainKeys = await scope.trainKeys();
    const rows = await scope.query(
      selectSql(TRAIN_LOG, ["step", "tokens", "train_loss", "lr"], {
        instanceKeys: trainKeys,
        orderBy: ["instance_key", "step"],
      }),
    );
    if (rows.length === 0) return { skip: "no train_log rows for the training runs of the inputs" };
    const keys = [...new Set(rows.map((r) => str(r.instance_key)))].sort();
    const labels = await trainRunLabels(scope, keys);
    const data: DataRow[] = rows.map((r) => ({
      run: labels.get(str(r.instance_key)) ?? str(r.instance_key),
      series_ref: str(r.instance_key),
      step: num(r.step),
      tokens: num(r.tokens),
      loss: num(r.train_loss),
      lr: num(r.lr),
      late: false,
    }));
    const domain = keys.map((k) => labels.get(k) ?? k);
    const base = (y: string, title: string, log: boolean): VegaLiteSpec => ({
      width: 460,
      height: y === "loss" ? 230 : 110,
      mark: { type: "line", strokeWidth: 1.2 },
      encoding: {
        x: { field: "step", type: "quantitative", title: "training step" },
        y: {
          field: y,
          type: "quantitative",
          title,
          scale: log ? { type: "log" } : { zero: false },
        },
        color: { field: "run", type: "nominal", title: "training run", scale: { domain } },
        detail: { field: "series_ref" },
      },
    });
    return {
      rows: data,
      series: [],
      instanceKeys: keys,
      spec: {
        title: this.title,
        data: { values: data },
        vconcat: [
          base("loss", "training loss", false),
          { ...base("lr", "learning rate", false), transform: [{ filter: "datum.lr != null" }] },
        ],
      },
    };
  },
};

/** Labels for train instances from `train_runs` (lr, batch, status) or the input params. */
async function trainRunLabels(scope: FigureScope, keys: string[]): Promise<Map<string, string>> {
  const labels = new Map<string, string>();
  if (await scope.hasTable("train_runs")) {
    const runs = await scope.query(
      `SELECT instance_key, status, preset, lr, batch_tokens::DOUBLE AS batch_tokens
       FROM train_runs WHERE instance_key IN ${sqlList(keys)}`,
    );
    for (const r of runs) {
      const parts = [str(r.preset), formatLr(num(r.lr)), formatBatch(num(r.batch_tokens))];
      if (str(r.status) && str(r.status) !== "completed") parts.push(str(r.status));
      labels.set(str(r.instance_key), parts.filter((p) => p).join(" · "));
    }
  }
  for (const k of keys) {
    if (labels.has(k)) continue;
    const input = scope.inputs.find((i) => i.key === k);
    const p = input?.params ?? {};
    const lr = num(p.lr);
    const bt = num(p.batch_tokens);
    labels.set(
      k,
      input
        ? [input.node, lr !== null ? formatLr(lr) : "", bt !== null ? formatBatch(bt) : ""]
          .filter((s) => s).join(" · ")
        : `train ${k.slice(0, 8)}`,
    );
  }
  // Two runs with the same settings (e.g. seeds) get their key prefix.
  const counts = new Map<string, number>();
  for (const l of labels.values()) counts.set(l, (counts.get(l) ?? 0) + 1);
  for (const [k, l] of labels) {
    if ((counts.get(l) ?? 0) > 1) labels.set(k, `${l} [${k.slice(0, 8)}]`);
  }
  return labels;
}

const perDomain: FigureDef = {
  id: "per-domain",
  title: "Validation loss per held-out domain",
  paper: "Fig. 7 (Pythia held-out domains)",
  description: "Loss vs step on each held-out domain separately; one panel per domain.",
  async build(scope) {
    const points = await loadLoss(scope, "domain <> 'all'");
    if (isSkipped(points)) return points;
    if (points.length === 0) return { skip: "no per-domain eval_loss rows (only 'all')" };
    const { rows, series, instanceKeys } = lossFigureData(points);
    return {
      rows,
      series,
      instanceKeys,
      spec: lineChart(this.title, rows, {
        x: { field: "step", title: "training step" },
        y: { field: "loss", title: "validation loss" },
        color: { field: "series", title: "series", domain: seriesDomain(series) },
        facet: { field: "domain", title: "held-out domain", columns: 3 },
      }),
    };
  },
};

const savings: FigureDef = {
  id: "savings",
  title: "Compute savings: steps saved to reach the original's final perplexity",
  paper: "Fig. 13",
  description: "For each tolerance, how many steps before the original run's end each series " +
    "first reaches the original's final perplexity × (1 + tolerance); missing bar = never reached.",
  async build(scope) {
    if (!(await scope.hasTable("savings"))) return { skip: "no savings table in the results" };
    const rows = await scope.query(
      `SELECT instance_key, series_id, baseline_id, tolerance, target_ppl, first_step,
              baseline_step, steps_saved, tokens_saved::DOUBLE AS tokens_saved, wall_saved_s
       FROM savings WHERE instance_key IN ${scope.inKeys}
       ORDER BY tolerance, series_id`,
    );
    if (rows.length === 0) return { skip: "no savings rows for the inputs" };
    const series: SeriesMeta[] = [];
    const data: DataRow[] = [];
    const table: Cell[][] = [];
    for (const r of rows) {
      const s = await scope.seriesFor(str(r.instance_key), str(r.series_id));
      const b = await scope.seriesFor(str(r.instance_key), str(r.baseline_id));
      series.push(s);
      const tol = num(r.tolerance) ?? 0;
      const tolLabel = `+${Number((tol * 100).toPrecision(3))}%`;
      data.push({
        series: s.display,
        tolerance: tolLabel,
        tol,
        steps_saved: num(r.steps_saved),
        tokens_saved: num(r.tokens_saved),
      });
      table.push([
        s.display,
        b.display,
        tolLabel,
        round(num(r.target_ppl), 3),
        num(r.first_step) ?? "not reached",
        num(r.baseline_step),
        num(r.steps_saved),
        num(r.tokens_saved),
        round(num(r.wall_saved_s), 1),
      ]);
    }
    const shownSeries = [...new Map(series.map((s) => [s.ref, s])).values()].sort((a, b) =>
      a.order - b.order
    );
    const tolerances = [...new Set(data.map((d) => d.tol as number))].sort((a, b) => a - b);
    return {
      rows: data,
      series: shownSeries,
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
            sort: tolerances.map((t) => `+${Number((t * 100).toPrecision(3))}%`),
            axis: { labelAngle: 0 },
          },
          xOffset: { field: "series", type: "nominal", sort: seriesDomain(shownSeries) },
          y: { field: "steps_saved", type: "quantitative", title: "training steps saved" },
          color: {
            field: "series",
            type: "nominal",
            title: "series",
            scale: { domain: seriesDomain(shownSeries) },
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
          "wall saved (s)",
        ],
        rows: table,
        note: this.description,
      },
    };
  },
};

const lmc: FigureDef = {
  id: "lmc",
  title: "Linear mode connectivity: loss along the line between two checkpoints",
  paper: "Fig. 15",
  description: "Loss of α·θ_a + (1-α)·θ_b for each checkpoint pair; a flat or convex curve " +
    "without a bump means the two checkpoints are linearly mode connected.",
  async build(scope) {
    if (!(await scope.hasTable("lmc"))) return { skip: "no lmc table in the results" };
    const rows = await scope.query(
      `SELECT instance_key, pair, step_a, step_b, alpha, domain, loss
       FROM lmc WHERE instance_key IN ${scope.inKeys} ORDER BY pair, domain, alpha`,
    );
    if (rows.length === 0) return { skip: "no lmc rows for the inputs" };
    const data: DataRow[] = rows.map((r) => ({
      pair: `${str(r.pair)} (step ${num(r.step_a)} ↔ ${num(r.step_b)})`,
      series_ref: `${str(r.instance_key)}|${str(r.pair)}`,
      alpha: num(r.alpha),
      domain: str(r.domain),
      loss: num(r.loss),
      late: false,
    }));
    const domains = new Set(data.map((d) => d.domain));
    const pairs = [...new Set(data.map((d) => d.pair as string))];
    const shown = domains.has("all") && domains.size > 1
      ? data.filter((d) => d.domain === "all")
      : data;
    return {
      rows: data,
      series: [],
      instanceKeys: [...new Set(rows.map((r) => str(r.instance_key)))].sort(),
      spec: lineChart(this.title, shown, {
        x: { field: "alpha", title: "α (weight of checkpoint a)" },
        y: { field: "loss", title: "validation loss" },
        color: { field: "pair", title: "checkpoint pair", domain: pairs },
        points: true,
        ...(new Set(shown.map((d) => d.domain)).size > 1
          ? { facet: { field: "domain", title: "domain", columns: 3 } }
          : {}),
      }),
    };
  },
};

const diversityFigure: FigureDef = {
  id: "diversity",
  title: "Prediction diversity between checkpoints",
  paper: "Sec. 5 (diversity of averaged checkpoints)",
  description: "Fraction of held-out tokens where the argmax predictions of the checkpoints at " +
    "step a and step b differ, plotted at step b.",
  async build(scope) {
    if (!(await scope.hasTable("diversity"))) return { skip: "no diversity table in the results" };
    const rows = await scope.query(
      `SELECT instance_key, series_id, step_a, step_b, diversity
       FROM diversity WHERE instance_key IN ${scope.inKeys} ORDER BY series_id, step_b, step_a`,
    );
    if (rows.length === 0) return { skip: "no diversity rows for the inputs" };
    const series: SeriesMeta[] = [];
    const data: DataRow[] = [];
    for (const r of rows) {
      const s = await scope.seriesFor(str(r.instance_key), str(r.series_id));
      series.push(s);
      data.push({
        series: s.display,
        series_ref: s.ref,
        step_a: num(r.step_a),
        step: num(r.step_b),
        diversity: num(r.diversity),
        late: false,
      });
    }
    const shown = [...new Map(series.map((s) => [s.ref, s])).values()].sort((a, b) =>
      a.order - b.order
    );
    return {
      rows: data,
      series: shown,
      instanceKeys: [...new Set(rows.map((r) => str(r.instance_key)))].sort(),
      spec: lineChart(this.title, data, {
        x: { field: "step", title: "step b (later checkpoint of the pair)" },
        y: { field: "diversity", title: "diversity (fraction of differing predictions)" },
        color: { field: "series", title: "series", domain: seriesDomain(shown) },
        points: true,
      }),
    };
  },
};

const spikes: FigureDef = {
  id: "spikes",
  title: "Largest loss spike per series",
  paper: "Sec. 5 (LAWA smooths loss spikes)",
  description: "The largest rise of validation loss from one checkpoint to the next, per series.",
  async build(scope) {
    if (!(await scope.hasTable("spikes"))) return { skip: "no spikes table in the results" };
    const rows = await scope.query(
      `SELECT instance_key, series_id, step, rise FROM spikes
       WHERE instance_key IN ${scope.inKeys} ORDER BY series_id`,
    );
    if (rows.length === 0) return { skip: "no spikes rows for the inputs" };
    const series: SeriesMeta[] = [];
    const data: DataRow[] = [];
    for (const r of rows) {
      const s = await scope.seriesFor(str(r.instance_key), str(r.series_id));
      series.push(s);
      data.push({ series: s.display, method: s.method, step: num(r.step), rise: num(r.rise) });
    }
    const shown = [...new Map(series.map((s) => [s.ref, s])).values()].sort((a, b) =>
      a.order - b.order
    );
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
          y: { field: "series", type: "nominal", sort: seriesDomain(shown), title: null },
          x: {
            field: "rise",
            type: "quantitative",
            title: "largest loss rise between checkpoints",
          },
        },
        layer: [
          { mark: "bar", encoding: { color: { field: "method", type: "nominal" } } },
          {
            mark: { type: "text", align: "left", dx: 4, fontSize: 10 },
            encoding: { text: { field: "step", type: "quantitative", format: "d" } },
          },
        ],
      },
      table: {
        columns: ["series", "method", "at step", "loss rise"],
        rows: data.map((d) => [d.series, d.method, d.step, round(d.rise as number | null)]),
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
    if (!(await scope.hasTable("zeroshot"))) return { skip: "no zeroshot table in the results" };
    const rows = await scope.query(
      `SELECT z.instance_key, z.series_id, z.step, z.task, z.metric, z.value, z.n
       FROM zeroshot z
       JOIN (SELECT instance_key, series_id, max(step) AS last FROM zeroshot
             WHERE instance_key IN ${scope.inKeys} GROUP BY instance_key, series_id) m
         ON z.instance_key = m.instance_key AND z.series_id = m.series_id AND z.step = m.last
       ORDER BY z.task, z.metric, z.series_id`,
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
        step: num(r.step),
        measure: `${str(r.task)} · ${str(r.metric)}`,
        value: num(r.value),
        n: num(r.n),
      });
    }
    const shown = [...new Map(series.map((s) => [s.ref, s])).values()].sort((a, b) =>
      a.order - b.order
    );
    const measures = [...new Set(data.map((d) => d.measure as string))];
    const tableRows: Cell[][] = shown.map((s) => {
      const mine = data.filter((d) => d.series_ref === s.ref);
      return [
        s.display,
        mine[0]?.step ?? null,
        ...measures.map((m) => round(mine.find((d) => d.measure === m)?.value as number ?? null)),
      ];
    });
    return {
      rows: data,
      series: shown,
      instanceKeys: [...new Set(rows.map((r) => str(r.instance_key)))].sort(),
      spec: {
        title: this.title,
        data: { values: data },
        facet: { field: "measure", type: "nominal", title: "task · metric" },
        columns: 3,
        resolve: { scale: { x: "independent" } },
        spec: {
          width: 200,
          height: { step: 16 },
          mark: "bar",
          encoding: {
            y: { field: "series", type: "nominal", sort: seriesDomain(shown), title: null },
            x: { field: "value", type: "quantitative", title: "value" },
            color: {
              field: "series",
              type: "nominal",
              legend: null,
              scale: { domain: seriesDomain(shown) },
            },
          },
        },
      },
      table: {
        columns: ["series", "step", ...measures],
        rows: tableRows,
        note: `${this.description} n (examples) per task: ` +
          measures.map((m) => `${m}: ${data.find((d) => d.measure === m)?.n ?? "?"}`).join(", "),
      },
    };
  },
};

/** Every figure, in report order. */
export const FIGURES: FigureDef[] = [
  lossVsStep,
  ablation("ablation-k", "k", "nu", "Fig. 9a"),
  ablation("ablation-nu", "nu", "k", "Fig. 9b"),
  finalTable,
  sweep("lr-sweep", "Fig. 2", "lr", "step"),
  sweep("batch-sweep", "Fig. 10", "batch_tokens", "tokens"),
  trainLoss,
  perDomain,
  savings,
  lmc,
  diversityFigure,
  spikes,
  zeroshot,
];

export const FIGURE_IDS: string[] = FIGURES.map((f) => f.id);

export function figureById(id: string): FigureDef {
  const found = FIGURES.find((f) => f.id === id);
  if (!found) {
    throw new Error(`unknown figure "${id}": expected one of ${FIGURE_IDS.join(", ")}`);
  }
  return found;
}

/** Rows as CSV (RFC 4180 quoting), columns in first-seen order. */
export function toCsv(rows: DataRow[]): string {
  const columns: string[] = [];
  for (const r of rows) for (const c of Object.keys(r)) if (!columns.includes(c)) columns.push(c);
  const cell = (v: Cell | undefined) => {
    if (v === null || v === undefined) return "";
    const s = String(v);
    return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  return [columns.join(","), ...rows.map((r) => columns.map((c) => cell(r[c])).join(","))]
    .join("\n") + "\n";
}
