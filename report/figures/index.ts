// The figure catalogue: each figure of the paper we reproduce is a query over the results
// tables (named in steps/tables.ts) plus a Vega-Lite spec builder and, for some, a table.
// Every query is restricted to the instance keys the plot step was given, so a figure
// shows exactly the runs its pipeline made and can be traced back to their params.
// Figures show whatever the data says; a figure without data is skipped with a reason.
// Families: loss curves (loss.ts), the LAWA ablation (ablation.ts), tables (tables.ts),
// savings (savings.ts), checkpoint distance (lmc.ts); shared parts in scope.ts/charts.ts.
import { ABLATION_FIGURES } from "./ablation.ts";
import { LMC_FIGURES } from "./lmc.ts";
import { LOSS_FIGURES } from "./loss.ts";
import { SAVINGS_FIGURES } from "./savings.ts";
import type { Cell, DataRow, FigureDef } from "./scope.ts";
import { TABLE_FIGURES } from "./tables.ts";

export * from "./scope.ts";

const byId = new Map(
  [...LOSS_FIGURES, ...ABLATION_FIGURES, ...TABLE_FIGURES, ...SAVINGS_FIGURES, ...LMC_FIGURES]
    .map((f) => [f.id, f]),
);

/** Every figure, in report order. */
export const FIGURES: FigureDef[] = [
  "loss-vs-step",
  "ablation-k",
  "ablation-nu",
  "final-table",
  "lr-sweep",
  "batch-sweep",
  "train-loss",
  "per-domain",
  "savings",
  "lmc",
  "diversity",
  "spikes",
  "zeroshot",
].map((id) => byId.get(id)!);

export const FIGURE_IDS: string[] = FIGURES.map((f) => f.id);

export function figureById(id: string): FigureDef {
  const found = byId.get(id);
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
