// What every figure reads: the results of the plot's input instances (and nothing else),
// the series they evaluated with labels unique among them, and the grouping of series
// that differ only by seed (figures draw such a group as its mean with a band).
// Table and column names come from steps/tables.ts, the module the writers use.
import type { InputRef } from "../../pipeline/step.ts";
import type { TopLevelSpec } from "vega-lite";
import { asNumber, parseParams, selectSql, SERIES, sqlList } from "../../steps/tables.ts";

export { sqlList };

/** Runs a read-only SQL query against the results database. */
export type QueryFn = (sql: string) => Promise<Record<string, unknown>[]>;

/** A value for a chart row or table cell. */
export type Cell = string | number | boolean | null;
export type DataRow = Record<string, Cell>;

/** A table shown in the report (and written as markdown / HTML). */
export interface TableData {
  columns: string[];
  rows: Cell[][];
  /** Decimals of each numeric column (null: as is), so a column reads with one precision. */
  decimals?: (number | null)[];
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
  /** LAWA spacing ν in training steps. */
  nu: number | null;
  lr: number | null;
  batch_tokens: number | null;
  seed: number | null;
  params: Record<string, unknown>;
  /** Label made unique among the series shown (seed included when a group has several). */
  display: string;
  /** Series that differ only by seed share a group (and its label, `groupDisplay`). */
  group: string;
  groupDisplay: string;
  /** Position in legends: original, EMA, SWA, LAWA (by k, ν), others; then lr, batch, seed. */
  order: number;
}

/** What a built figure holds. */
export interface FigureResult {
  /** The data the chart plots (also written as `<id>.csv`). */
  rows: DataRow[];
  spec: TopLevelSpec;
  table?: TableData;
  /** The series the figure shows. */
  series: SeriesMeta[];
  /** Instance keys of the result rows the figure read. */
  instanceKeys: string[];
  /** What the figure leaves out or how it aggregates, if anything (shown under it). */
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

export function str(v: unknown): string {
  return v === null || v === undefined ? "" : String(v);
}

export function isSkipped<T>(v: T | Skipped): v is Skipped {
  return typeof v === "object" && v !== null && "skip" in v;
}

const METHOD_RANK: Record<string, number> = { original: 0, ema: 1, swa: 2, lawa: 3 };

/** Short labels for swept values. */
export function formatLr(lr: number | null): string {
  if (lr === null) return "lr ?";
  return `lr ${Number(lr.toPrecision(3)).toExponential().replace("e+", "e")}`;
}
export function formatBatch(tokens: number | null): string {
  if (tokens === null) return "batch ?";
  return tokens >= 1000
    ? `${Number((tokens / 1000).toPrecision(3))}K tok/step`
    : `${tokens} tok/step`;
}

/** The params of a series that make it differ from another, seed left out. */
function groupKey(s: Omit<SeriesMeta, "group" | "groupDisplay" | "display" | "order">): string {
  const { seed: _seed, ...rest } = s.params;
  const train = rest.train && typeof rest.train === "object"
    ? Object.fromEntries(
      Object.entries(rest.train as Record<string, unknown>).filter(([k]) => k !== "seed"),
    )
    : rest.train;
  // The producing instance differs per seed; what it ran is in the params.
  return JSON.stringify([s.label, s.method, s.k, s.nu, s.lr, s.batch_tokens, {
    ...rest,
    train,
    source_key: undefined,
    train_key: undefined,
  }]);
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

  async hasTable(name: string): Promise<boolean> {
    if (!this.#tables) {
      const rows = await this.query("SELECT table_name FROM information_schema.tables");
      this.#tables = new Set(rows.map((r) => str(r.table_name)));
    }
    return this.#tables.has(name);
  }

  /** All series of the input instances, by `instance_key|series_id`. */
  async series(): Promise<Map<string, SeriesMeta>> {
    if (this.#series) return this.#series;
    const found = new Map<string, SeriesMeta>();
    if (await this.hasTable(SERIES.name)) {
      const rows = await this.query(
        selectSql(
          SERIES,
          ["series_id", "label", "method", "k", "nu", "lr", "batch_tokens", "seed", "params"],
          { instanceKeys: this.keys, orderBy: ["instance_key", "series_id"] },
        ),
      );
      for (const r of rows) {
        const params = parseParams(r.params); // params that are not JSON are shown as absent
        const base = {
          ref: `${str(r.instance_key)}|${str(r.series_id)}`,
          instance_key: str(r.instance_key),
          series_id: str(r.series_id),
          label: str(r.label) || str(r.series_id),
          method: str(r.method).toLowerCase() || "unknown",
          k: asNumber(r.k),
          nu: asNumber(r.nu),
          lr: asNumber(r.lr),
          batch_tokens: asNumber(r.batch_tokens),
          seed: asNumber(r.seed) ?? asNumber(params.seed),
          params,
        };
        found.set(base.ref, {
          ...base,
          group: groupKey(base),
          groupDisplay: "",
          display: "",
          order: 0,
        });
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
      seed: null,
      params: {},
      display: seriesId,
      group: ref,
      groupDisplay: seriesId,
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

/** The training params of `s` (its `params.train`), or none. */
function trainOf(s: SeriesMeta): Record<string, unknown> {
  const t = s.params.train;
  return t && typeof t === "object" ? t as Record<string, unknown> : {};
}

/**
 * Which training run a series comes from, seed aside: its training params when recorded
 * (an averaged series carries its source's), else lr and batch size.
 */
export function trainingRun(s: SeriesMeta): string {
  const t = trainOf(s);
  if (Object.keys(t).length === 0) return `lr ${s.lr} · batch ${s.batch_tokens}`;
  return JSON.stringify(Object.keys(t).sort().map((k) => [k, t[k]]));
}

/** Training params (besides lr, batch and `except`) whose values differ among `series`. */
export function trainParamsThatDiffer(series: SeriesMeta[], except: string[] = []): string[] {
  const skip = new Set(["lr", "batch_tokens", "min_lr", ...except]);
  const keys = new Set(series.flatMap((s) => Object.keys(trainOf(s))));
  return [...keys].filter((k) =>
    !skip.has(k) && new Set(series.map((s) => JSON.stringify(trainOf(s)[k] ?? null))).size > 1
  ).sort((a, b) => (a === "preset" ? -1 : b === "preset" ? 1 : a.localeCompare(b)));
}

/** Those params of one series, readably: "cpu-micro · 600 steps · warmup=20". */
export function describeTrain(s: SeriesMeta, keys: string[]): string {
  const t = trainOf(s);
  return keys.filter((k) => t[k] !== undefined).map((k) => {
    const v = t[k];
    if (k === "preset") return String(v);
    if (k === "steps") return `${v} steps`;
    return `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`;
  }).join(" · ");
}

/** Order series for legends and give each a label that is unique among them. */
export function finishSeries(series: SeriesMeta[]): void {
  series.sort((a, b) =>
    (METHOD_RANK[a.method] ?? 9) - (METHOD_RANK[b.method] ?? 9) ||
    (a.k ?? 0) - (b.k ?? 0) || (a.nu ?? 0) - (b.nu ?? 0) ||
    (a.lr ?? 0) - (b.lr ?? 0) || (a.batch_tokens ?? 0) - (b.batch_tokens ?? 0) ||
    a.label.localeCompare(b.label) || (a.seed ?? 0) - (b.seed ?? 0) || a.ref.localeCompare(b.ref)
  );
  series.forEach((s, i) => s.order = i);
  // One representative per group gets a label unique among groups...
  const groups = new Map<string, SeriesMeta[]>();
  for (const s of series) groups.set(s.group, [...(groups.get(s.group) ?? []), s]);
  const heads = [...groups.values()].map((g) => g[0]);
  const byLabel = new Map<string, SeriesMeta[]>();
  for (const s of heads) byLabel.set(s.label, [...(byLabel.get(s.label) ?? []), s]);
  for (const same of byLabel.values()) {
    const lrs = new Set(same.map((s) => s.lr)).size > 1;
    const batches = new Set(same.map((s) => s.batch_tokens)).size > 1;
    const differ = same.length > 1 ? trainParamsThatDiffer(same) : [];
    for (const s of same) {
      const parts = [s.label];
      if (same.length > 1 && lrs) parts.push(formatLr(s.lr));
      if (same.length > 1 && batches) parts.push(formatBatch(s.batch_tokens));
      if (differ.length) parts.push(describeTrain(s, differ));
      s.groupDisplay = parts.filter((p) => p).join(" · ");
    }
    // Still equal (same label, lr and batch): tell them apart by the producing instance.
    const seen = new Map<string, number>();
    for (const s of same) seen.set(s.groupDisplay, (seen.get(s.groupDisplay) ?? 0) + 1);
    for (const s of same) {
      if ((seen.get(s.groupDisplay) ?? 0) > 1) s.groupDisplay += ` [${s.series_id.slice(0, 8)}]`;
    }
  }
  // ...which its members share, with their seed when there are several.
  for (const members of groups.values()) {
    const head = members[0];
    for (const s of members) {
      s.groupDisplay = head.groupDisplay;
      s.display = members.length > 1
        ? `${head.groupDisplay} · seed ${s.seed ?? "?"}`
        : head.groupDisplay;
    }
  }
}

/** Distinct series of some points, in legend order. */
export function uniqueSeries(points: { series: SeriesMeta }[]): SeriesMeta[] {
  const map = new Map(points.map((p) => [p.series.ref, p.series]));
  return [...map.values()].sort((a, b) => a.order - b.order);
}

/** Distinct instance keys of some rows, sorted. */
export function uniqueKeys(points: { instance_key: string }[]): string[] {
  return [...new Set(points.map((p) => p.instance_key))].sort();
}

/** Group display names in legend order (one per seed group). */
export function groupDomain(series: SeriesMeta[]): string[] {
  return [...new Set([...series].sort((a, b) => a.order - b.order).map((s) => s.groupDisplay))];
}

/** Mean, spread and count of the values of one group at one x. */
export interface SeedStats {
  mean: number;
  min: number;
  max: number;
  sd: number;
  n: number;
}

export function seedStats(values: number[]): SeedStats {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const sd = n > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, min: Math.min(...values), max: Math.max(...values), sd, n };
}

/**
 * Average points over the seeds of each group, per key (e.g. step and domain): one
 * entry per (group, key) with the group's representative series and the stats.
 */
export function bySeedGroup<P extends { series: SeriesMeta }>(
  points: P[],
  keyOf: (p: P) => string,
  valueOf: (p: P) => number | null,
): { first: P; stats: SeedStats }[] {
  const cells = new Map<string, { first: P; values: number[] }>();
  for (const p of points) {
    const v = valueOf(p);
    if (v === null) continue;
    const id = `${p.series.group}\u0000${keyOf(p)}`;
    const cell = cells.get(id);
    if (cell) cell.values.push(v);
    else cells.set(id, { first: p, values: [v] });
  }
  return [...cells.values()].map((c) => ({ first: c.first, stats: seedStats(c.values) }));
}

/** The largest number of seeds in any group, and the caption saying how groups are drawn. */
export function seedNote(
  series: SeriesMeta[],
  band = "the band spans min–max",
): string | undefined {
  const counts = new Map<string, number>();
  for (const s of series) counts.set(s.group, (counts.get(s.group) ?? 0) + 1);
  const most = Math.max(0, ...counts.values());
  if (most < 2) return undefined;
  return `Series run with several seeds (up to ${most}) are drawn as their mean over seeds; ` +
    `${band} over seeds.`;
}
