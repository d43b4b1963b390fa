// Reading the paired-bootstrap gaps (`gap_intervals`, written by the intervals step): the
// gap of an averaged series to its own original at each evaluated step, with a 95%
// interval. A row with a null seed pools several seeds; figures prefer those.
import { asNumber, GAP_INTERVALS, selectSql } from "../../steps/tables.ts";
import { AXIS, type LineOptions, linePanel, type SeriesScale, type SubSpec } from "./charts.ts";
import { type DataRow, type FigureScope, type SeriesMeta, str } from "./scope.ts";

export interface GapRow {
  instance_key: string;
  series_id: string;
  method: string;
  k: number | null;
  nu: number | null;
  lr: number | null;
  seed: number | null;
  steps_total: number | null;
  preset: string | null;
  step: number;
  gap: number;
  lower: number;
  upper: number;
  n_windows: number | null;
  n_seeds: number | null;
}

/** Every gap row of the inputs (empty when the table is absent). */
export async function loadGaps(scope: FigureScope): Promise<GapRow[]> {
  if (!(await scope.hasTable(GAP_INTERVALS.name))) return [];
  const rows = await scope.query(
    selectSql(
      GAP_INTERVALS,
      [
        "series_id",
        "method",
        "k",
        "nu",
        "lr",
        "seed",
        "steps_total",
        "preset",
        "step",
        "gap",
        "lower",
        "upper",
        "n_windows",
        "n_seeds",
      ],
      { instanceKeys: scope.keys, orderBy: ["series_id", "step"] },
    ),
  );
  const out: GapRow[] = [];
  for (const r of rows) {
    const gap = asNumber(r.gap);
    const lower = asNumber(r.lower);
    const upper = asNumber(r.upper);
    if (gap === null || lower === null || upper === null) continue;
    out.push({
      instance_key: str(r.instance_key),
      series_id: str(r.series_id),
      method: str(r.method).toLowerCase(),
      k: asNumber(r.k),
      nu: asNumber(r.nu),
      lr: asNumber(r.lr),
      seed: asNumber(r.seed),
      steps_total: asNumber(r.steps_total),
      preset: r.preset === null || r.preset === undefined ? null : str(r.preset),
      step: asNumber(r.step) ?? 0,
      gap,
      lower,
      upper,
      n_windows: asNumber(r.n_windows),
      n_seeds: asNumber(r.n_seeds),
    });
  }
  return out;
}

function sameNumber(a: number | null, b: number | null): boolean {
  return a === b ||
    (a !== null && b !== null && Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b)));
}

/**
 * The gap rows of one seed group: with several seeds, its pooled rows (seed null, same
 * method, k, ν and lr) when there are any; else the rows of its own series.
 */
export function gapsOfGroup(
  gaps: GapRow[],
  members: SeriesMeta[],
): { rows: GapRow[]; pooled: boolean } {
  const head = members[0];
  const train = (head.params.train ?? {}) as Record<string, unknown>;
  const steps = asNumber(train.steps);
  const preset = typeof train.preset === "string" ? train.preset : null;
  const pooled = gaps.filter((g) =>
    g.seed === null && g.method === head.method && sameNumber(g.k, head.k) &&
    sameNumber(g.nu, head.nu) && sameNumber(g.lr, head.lr) &&
    (steps === null || g.steps_total === null || g.steps_total === steps) &&
    (preset === null || g.preset === null || g.preset === preset)
  );
  if (members.length > 1 && pooled.length > 0) return { rows: pooled, pooled: true };
  const ids = new Set(members.map((m) => m.series_id));
  return { rows: gaps.filter((g) => ids.has(g.series_id)), pooled: false };
}

/**
 * One gap per step for a group: the pooled row, or the per-seed rows combined (mean gap,
 * the envelope of their intervals) when no pooled row exists.
 */
export function gapCurve(
  group: { rows: GapRow[]; pooled: boolean },
): { step: number; gap: number; lower: number; upper: number; n_seeds: number }[] {
  const bySteps = new Map<number, GapRow[]>();
  for (const g of group.rows) bySteps.set(g.step, [...(bySteps.get(g.step) ?? []), g]);
  return [...bySteps.entries()].sort((a, b) => a[0] - b[0]).map(([step, rows]) => ({
    step,
    gap: rows.reduce((a, r) => a + r.gap, 0) / rows.length,
    lower: Math.min(...rows.map((r) => r.lower)),
    upper: Math.max(...rows.map((r) => r.upper)),
    n_seeds: group.pooled ? (rows[0].n_seeds ?? 1) : rows.length,
  }));
}

/** "−0.0123 [−0.0200, −0.0040]" (4 decimals, a true minus sign). */
export function formatGap(g: { gap: number; lower: number; upper: number }): string {
  const f = (v: number) => v.toFixed(4).replace(/^-/, "−");
  return `${f(g.gap)} [${f(g.lower)}, ${f(g.upper)}]`;
}

/**
 * A row of gap-to-the-original curves with their interval bands, one curve per seed
 * group (its chart fields in `fields`), for figures to append under their loss rows;
 * null when the intervals table covers none of the groups.
 */
export async function gapRowOf(
  scope: FigureScope,
  groups: { members: SeriesMeta[]; fields: DataRow }[],
  o: { x: "step" | "tokens"; series: SeriesScale; facet?: LineOptions["facet"] },
): Promise<{ spec: SubSpec; note: string; keys: string[] } | null> {
  const gaps = await loadGaps(scope);
  if (gaps.length === 0) return null;
  const rows: DataRow[] = [];
  const keys = new Set<string>();
  let pooled = false;
  for (const { members, fields } of groups) {
    const found = gapsOfGroup(gaps, members);
    pooled ||= found.pooled;
    for (const g of found.rows) keys.add(g.instance_key);
    for (const c of gapCurve(found)) {
      rows.push({ ...fields, ...c, tokens: c.step * (members[0].batch_tokens ?? 0) });
    }
  }
  if (rows.length === 0) return null;
  const spec = {
    ...linePanel(rows, {
      x: { field: o.x, title: o.x === "step" ? AXIS.step : AXIS.tokens },
      y: { field: "gap", title: AXIS.gap },
      series: o.series,
      band: { lower: "lower", upper: "upper" },
      zeroRule: true,
      facet: o.facet,
    }, "gap to the original, 95% interval"),
    data: { values: rows },
  } as SubSpec;
  const nSeeds = Math.max(...rows.map((r) => r.n_seeds as number));
  const note = `Gap row: LAWA minus its original, below 0 = LAWA better; its band is the ` +
    `95% paired-bootstrap interval over evaluation windows` +
    (nSeeds > 1
      ? pooled ? ` and ${nSeeds} seeds.` : `, envelope of the per-seed intervals (${nSeeds} seeds).`
      : ".");
  return { spec, note, keys: [...keys] };
}
