// Chart building blocks every figure family shares, typed with vega-lite's own types:
// a palette that separates 20 series, originals always black and dashed, one legend
// (colour and dash share a field), one y-scale across the panels of a row, axis titles
// with units, and a mean-over-seeds line with its band.
import type { TopLevelSpec } from "vega-lite";
import type { DataRow, SeriesMeta } from "./scope.ts";

/** A view inside a composition (a facet's, layer's or concat's child). */
export type SubSpec = Extract<TopLevelSpec, { vconcat: unknown }>["vconcat"][number];
/** A layer inside a layered view. */
export type LayerSpec = Extract<SubSpec, { mark: unknown }>;

/** Axis titles, with units. */
export const AXIS = {
  step: "training step",
  tokens: "training tokens seen",
  valLoss: "validation loss (nats/token)",
  trainLoss: "training loss (nats/token)",
  gap: "gap to the original (nats/token)",
  lr: "learning rate",
} as const;

/**
 * Twenty colours that stay apart on white (none black or grey: those mean "original").
 * Tableau's 10 then a darker, distinct 10.
 */
export const PALETTE = [
  "#4e79a7",
  "#f28e2b",
  "#59a14f",
  "#e15759",
  "#76b7b2",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
  "#17becf",
  "#1b3a93",
  "#a6501a",
  "#1f6f2a",
  "#8e1b2e",
  "#6a3d9a",
  "#b8860b",
  "#d6278b",
  "#00a087",
  "#7f7f00",
  "#5a9bd4",
];
export const ORIGINAL_COLOUR = "#000000";
const ORIGINAL_DASHES = [
  [6, 3],
  [2, 2],
  [9, 3, 2, 3],
  [1, 4],
  [12, 4],
  [4, 2, 1, 2],
  [8, 2, 2, 2, 2, 2],
  [3, 5],
];
const SOLID = [1, 0];

/** Colour and dash of each legend entry: originals black and dashed, the rest solid. */
export interface SeriesScale {
  field: string;
  title: string;
  domain: string[];
  colours: string[];
  dashes: number[][];
}

export function seriesScale(
  field: string,
  title: string,
  names: string[],
  isOriginal: (name: string) => boolean,
): SeriesScale {
  let others = 0;
  let originals = 0;
  const colours: string[] = [];
  const dashes: number[][] = [];
  for (const n of names) {
    if (isOriginal(n)) {
      colours.push(ORIGINAL_COLOUR);
      dashes.push(ORIGINAL_DASHES[originals++ % ORIGINAL_DASHES.length]);
    } else {
      colours.push(PALETTE[others++ % PALETTE.length]);
      dashes.push(SOLID);
    }
  }
  return { field, title, domain: names, colours, dashes };
}

/** The scale for series shown by their (seed-group) label. */
export function scaleOfSeries(series: SeriesMeta[], title = "series"): SeriesScale {
  const names = [
    ...new Set([...series].sort((a, b) => a.order - b.order).map((s) => s.groupDisplay)),
  ];
  const originals = new Set(
    series.filter((s) => s.method === "original").map((s) => s.groupDisplay),
  );
  return seriesScale("series", title, names, (n) => originals.has(n));
}

export interface LineOptions {
  x: { field: string; title: string };
  y: { field: string; title: string };
  series: SeriesScale;
  /** Fields of a band drawn behind each line (seed spread, or an interval). */
  band?: { lower: string; upper: string };
  /** A horizontal reference line at this y (e.g. 0 for a gap). */
  zeroRule?: boolean;
  /** One panel per value of this field, in `sort` order (values absent from the data make no panel). */
  facet?: { field: string; title: string; columns?: number; sort: string[] };
  points?: boolean;
  width?: number;
  height?: number;
}

function layersOf(o: LineOptions): LayerSpec[] {
  const x = {
    field: o.x.field,
    type: "quantitative" as const,
    title: o.x.title,
    ...(o.x.field === "tokens" ? { axis: { format: "~s" } } : {}),
  };
  const color = {
    field: o.series.field,
    type: "nominal" as const,
    title: o.series.title,
    scale: { domain: o.series.domain, range: o.series.colours },
  };
  const strokeDash = {
    field: o.series.field,
    type: "nominal" as const,
    title: o.series.title,
    scale: { domain: o.series.domain, range: o.series.dashes },
  };
  const layers: LayerSpec[] = [];
  if (o.band) {
    // The band's fill is computed from the series name (no scale), so it adds no legend
    // and leaves the one legend of the lines alone.
    const bandColour = o.series.domain.reduceRight(
      (rest, name, i) =>
        `datum.${o.series.field} === ${JSON.stringify(name)} ? ` +
        `${JSON.stringify(o.series.colours[i])} : ${rest}`,
      '"#888888"',
    );
    layers.push({
      mark: { type: "area", opacity: 0.18 },
      transform: [
        { filter: `isValid(datum.${o.band.lower}) && isValid(datum.${o.band.upper})` },
        { calculate: bandColour, as: "band_colour" },
      ],
      encoding: {
        x,
        y: { field: o.band.lower, type: "quantitative", title: o.y.title, scale: { zero: false } },
        y2: { field: o.band.upper },
        fill: { field: "band_colour", type: "nominal", scale: null, legend: null },
        detail: { field: o.series.field },
      },
    });
  }
  if (o.zeroRule) {
    layers.push({
      mark: { type: "rule", color: ORIGINAL_COLOUR, strokeDash: [6, 3] },
      encoding: { y: { datum: 0 } },
    });
  }
  layers.push({
    mark: { type: "line", point: o.points ?? false, strokeWidth: 1.6 },
    encoding: {
      x,
      y: { field: o.y.field, type: "quantitative", title: o.y.title, scale: { zero: false } },
      color,
      strokeDash,
      tooltip: [
        { field: o.series.field, type: "nominal" },
        { field: o.x.field, type: "quantitative" },
        { field: o.y.field, type: "quantitative", format: ".4f" },
      ],
    },
  });
  return layers;
}

/** One panel (or one row of facets) of a line chart over `rows`. */
export function linePanel(
  rows: DataRow[],
  o: LineOptions,
  panelTitle?: string,
  filter?: string,
): SubSpec {
  const width = o.width ?? (o.facet ? 240 : 460);
  const height = o.height ?? (o.facet ? 170 : 230);
  const transform = filter ? [{ filter }] : [];
  const title = panelTitle ? { title: panelTitle } : {};
  if (o.facet) {
    const present = new Set(rows.map((r) => String(r[o.facet!.field])));
    return {
      ...title,
      transform,
      facet: {
        field: o.facet.field,
        type: "nominal",
        title: o.facet.title,
        sort: o.facet.sort.filter((v) => present.has(v)),
      },
      columns: o.facet.columns ?? 4,
      spec: { width, height, layer: layersOf(o) },
      // Panels share the y-scale so they compare at a glance.
      resolve: { scale: { y: "shared" } },
    };
  }
  return { ...title, transform, width, height, layer: layersOf(o) };
}

/**
 * A line chart: the whole run and, when `zoomLate`, a second row zoomed on the second
 * half of training (rows with `late` true). Rows have their own y-scale; one legend.
 */
export function lineChart(
  title: string,
  rows: DataRow[],
  o: LineOptions,
  extraRows: SubSpec[] = [],
  zoomLate = false,
): TopLevelSpec {
  const panels: SubSpec[] = zoomLate
    ? [linePanel(rows, o, "whole run"), linePanel(rows, o, "second half (zoom)", "datum.late")]
    : [linePanel(rows, o)];
  if (panels.length === 1 && extraRows.length === 0) {
    return { title, data: { values: rows }, ...panels[0] } as TopLevelSpec;
  }
  return {
    title,
    data: { values: rows },
    vconcat: [...panels, ...extraRows],
    resolve: { scale: { y: "independent", color: "shared", strokeDash: "shared" } },
  };
}
