// Every science results table in one place: its name, its columns with DuckDB types, and
// what each column means. The steps that write a table take its schema from here (and
// type their rows with `RowOf`); the figures and the report read table and column names
// from here (`selectSql`, `column`), so a renamed column fails `deno check` in every
// reader instead of silently emptying a figure. The README's table list is checked
// against `RESULTS_TABLES` by a test.
//
// To add a table: declare it with `defineTable`, list it in `RESULTS_TABLES`, put
// `tablesOf(YOUR_TABLE)` in the writing step's `tables`, and add it to the README.
// The engine's own bookkeeping tables (`runs`, `loaded_instances`) live in pipeline/.
import type { ColumnType, ResultsSink, TableSchema } from "../pipeline/step.ts";

/** One column: its DuckDB type and a one-line meaning (units included). */
export interface Column {
  readonly type: ColumnType;
  readonly meaning: string;
  /**
   * A measurement of the run (wall-clock seconds, tokens/s), not a computed result: kept
   * in the entry's side files, so two runs of the same config and seed give downstream
   * steps the same cache keys (pipeline/store.ts).
   */
  readonly measured?: true;
}

/** A results table: name, the step kinds that write it, a one-line meaning, its columns. */
export interface ResultsTable<C extends Record<string, Column> = Record<string, Column>> {
  readonly name: string;
  readonly writtenBy: readonly string[];
  readonly meaning: string;
  readonly columns: C;
}

/** Declare a table; the column names stay literal types, so readers are checked. */
export function defineTable<const C extends Record<string, Column>>(
  table: ResultsTable<C>,
): ResultsTable<C> {
  return table;
}

const col = (type: ColumnType, meaning: string): Column => ({ type, meaning });
const measured = (type: ColumnType, meaning: string): Column => ({ type, meaning, measured: true });

/** The JS value a column of each DuckDB type takes in a row a step appends. */
type JsValue<T extends ColumnType> = T extends "INTEGER" | "BIGINT" | "DOUBLE" ? number
  : T extends "BOOLEAN" ? boolean
  : T extends "TIMESTAMP" ? Date | string
  : string;

/** A row of `T` as a step appends it (null for a missing value). */
export type RowOf<T extends ResultsTable> = {
  [K in keyof T["columns"]]: JsValue<T["columns"][K]["type"]> | null;
};

/** Column names of a table. */
export type ColumnOf<T extends ResultsTable> = keyof T["columns"] & string;

// ---------------------------------------------------------------------------------
// Training

export const TRAIN_LOG = defineTable({
  name: "train_log",
  writtenBy: ["train"],
  meaning: "one row per optimizer step of a training run",
  columns: {
    step: col("INTEGER", "training step (1-based: after this many optimizer updates)"),
    tokens: col("BIGINT", "training tokens seen after this step"),
    train_loss: col("DOUBLE", "training loss of this step's batch (nats/token)"),
    lr: col("DOUBLE", "learning rate used for this step"),
    grad_norm: col("DOUBLE", "global L2 norm of the gradient before clipping"),
    tokens_per_s: measured("DOUBLE", "training throughput of this step (tokens/s)"),
    elapsed_s: measured("DOUBLE", "wall-clock seconds since the run started (resumes included)"),
  },
});

export const TRAIN_RUNS = defineTable({
  name: "train_runs",
  writtenBy: ["train"],
  meaning: "one row per training run",
  columns: {
    status: col("VARCHAR", "completed / diverged"),
    steps_done: col("INTEGER", "optimizer steps taken"),
    final_train_loss: col("DOUBLE", "training loss of the last step (nats/token)"),
    preset: col("VARCHAR", "model preset name"),
    lr: col("DOUBLE", "peak learning rate"),
    batch_tokens: col("BIGINT", "tokens per optimizer step"),
    seed: col("INTEGER", "run seed"),
    wall_s: measured("DOUBLE", "wall-clock seconds of the run"),
  },
});

// ---------------------------------------------------------------------------------
// Evaluation

export const SERIES = defineTable({
  name: "series",
  writtenBy: ["evaluate"],
  meaning: "one row per evaluated checkpoint series (original, LAWA, EMA, SWA)",
  columns: {
    series_id: col("VARCHAR", "unique id: <producing instance key>/<subfolder>"),
    name: col("VARCHAR", "readable id: method and its params, lr, batch and seed"),
    label: col("VARCHAR", 'short label from series.json, e.g. "LAWA k=5 ν=4"'),
    method: col("VARCHAR", "original / lawa / ema / swa"),
    k: col("INTEGER", "LAWA: checkpoints per window"),
    nu: col("INTEGER", "LAWA: spacing ν between window members (training steps)"),
    lr: col("DOUBLE", "peak learning rate of the training run"),
    batch_tokens: col("BIGINT", "tokens per optimizer step of the training run"),
    seed: col("INTEGER", "seed of the training run"),
    backend: col("VARCHAR", "tfjs backend of the training run"),
    params: col("JSON", "method params and, under `train`, the training params"),
  },
});

export const EVAL_LOSS = defineTable({
  name: "eval_loss",
  writtenBy: ["evaluate"],
  meaning: "held-out loss per checkpoint and domain (domain 'all' = token-weighted mean)",
  columns: {
    series_id: col("VARCHAR", "the series (see `series`)"),
    step: col("INTEGER", "training step of the checkpoint"),
    tokens: col("BIGINT", "training tokens seen at that step"),
    domain: col("VARCHAR", "held-out domain, or 'all'"),
    loss: col("DOUBLE", "validation loss (nats/token)"),
    ppl: col("DOUBLE", "validation perplexity, exp(loss)"),
    n_tokens: col("BIGINT", "held-out tokens scored"),
  },
});

export const DIVERSITY = defineTable({
  name: "diversity",
  writtenBy: ["evaluate"],
  meaning: "argmax disagreement between consecutive checkpoints of a series",
  columns: {
    series_id: col("VARCHAR", "the series (see `series`)"),
    step_a: col("INTEGER", "training step of the earlier checkpoint"),
    step_b: col("INTEGER", "training step of the later checkpoint"),
    diversity: col("DOUBLE", "fraction of held-out tokens whose argmax predictions differ"),
  },
});

export const ZEROSHOT = defineTable({
  name: "zeroshot",
  writtenBy: ["evaluate"],
  meaning: "zero-shot task metrics per checkpoint",
  columns: {
    series_id: col("VARCHAR", "the series (see `series`)"),
    step: col("INTEGER", "training step of the checkpoint"),
    task: col("VARCHAR", "task name"),
    metric: col("VARCHAR", "metric name (accuracy, perplexity, ...)"),
    value: col("DOUBLE", "metric value"),
    n: col("INTEGER", "examples scored"),
  },
});

export const SPIKES = defineTable({
  name: "spikes",
  writtenBy: ["evaluate"],
  meaning: "largest rise of the 'all' validation loss between consecutive checkpoints",
  columns: {
    series_id: col("VARCHAR", "the series (see `series`)"),
    step: col("INTEGER", "training step of the checkpoint after the rise"),
    rise: col("DOUBLE", "loss rise (nats/token)"),
  },
});

// ---------------------------------------------------------------------------------
// Derived measures

export const SAVINGS = defineTable({
  name: "savings",
  writtenBy: ["savings"],
  meaning: "steps and tokens saved reaching the original's final perplexity × (1 + tolerance)",
  columns: {
    series_id: col("VARCHAR", "the series compared (see `series`)"),
    baseline_id: col("VARCHAR", "its original series (same lr, batch and seed)"),
    tolerance: col("DOUBLE", "relative tolerance over the baseline's final perplexity"),
    target_ppl: col("DOUBLE", "perplexity to reach"),
    first_step: col("INTEGER", "first training step at or below the target (null: never)"),
    baseline_step: col("INTEGER", "the baseline's last evaluated step"),
    steps_saved: col("INTEGER", "baseline_step - first_step"),
    tokens_saved: col("BIGINT", "training tokens saved"),
    wall_saved_s: measured("DOUBLE", "training wall-clock seconds saved"),
  },
});

export const LMC = defineTable({
  name: "lmc",
  writtenBy: ["lmc"],
  meaning: "loss along the line α·θ_a + (1-α)·θ_b between two checkpoints",
  columns: {
    pair: col("VARCHAR", "name of the checkpoint pair"),
    step_a: col("INTEGER", "training step of checkpoint a"),
    step_b: col("INTEGER", "training step of checkpoint b"),
    alpha: col("DOUBLE", "weight of checkpoint a"),
    domain: col("VARCHAR", "held-out domain, or 'all'"),
    loss: col("DOUBLE", "validation loss of the interpolated weights (nats/token)"),
  },
});

// ---------------------------------------------------------------------------------
// Uncertainty

export const EVAL_WINDOWS = defineTable({
  name: "eval_windows",
  writtenBy: ["evaluate"],
  meaning: "held-out loss of every evaluation window, the unit the paired bootstrap resamples",
  columns: {
    series_id: col("VARCHAR", "the series (see `series`)"),
    step: col("INTEGER", "training step of the checkpoint"),
    domain: col("VARCHAR", "held-out domain of the window"),
    window: col("INTEGER", "index of the window within its domain (same windows for every series)"),
    loss: col("DOUBLE", "mean loss over the window's tokens (nats/token)"),
    n_tokens: col("INTEGER", "tokens in the window"),
  },
});

const intervalColumns = {
  series_id: col("VARCHAR", "the averaged series, or pooled:<config> for a pool over seeds"),
  label: col("VARCHAR", 'method label, e.g. "LAWA k=5 ν=2"'),
  method: col("VARCHAR", "lawa / ema / swa"),
  k: col("INTEGER", "LAWA: checkpoints per window"),
  nu: col("INTEGER", "LAWA: spacing ν between window members (as in `series`)"),
  lr: col("DOUBLE", "peak learning rate of the training run"),
  steps_total: col("INTEGER", "length of the training run (steps)"),
  preset: col("VARCHAR", "model preset of the training run"),
  seed: col("INTEGER", "seed of the run; null for a pool over seeds"),
  gap: col("DOUBLE", "held-out loss of the series minus its original's (nats/token)"),
  lower: col("DOUBLE", "lower end of the 95% paired-bootstrap interval of gap"),
  upper: col("DOUBLE", "upper end of the 95% paired-bootstrap interval of gap"),
  n_windows: col("INTEGER", "evaluation windows per seed (all domains)"),
  n_seeds: col("INTEGER", "seeds pooled (resampled first, then windows within each)"),
} as const;

export const GAP_INTERVALS = defineTable({
  name: "gap_intervals",
  writtenBy: ["intervals"],
  meaning: "gap of each averaged series to its own original (same seed, windows, step), " +
    "with a 95% paired-bootstrap interval",
  columns: {
    ...intervalColumns,
    step: col("INTEGER", "training step (both series evaluated there)"),
  },
});

export const GAP_MEANS = defineTable({
  name: "gap_means",
  writtenBy: ["intervals"],
  meaning: "gap averaged over the evaluated steps from a fraction of the run on, " +
    "with a 95% paired-bootstrap interval",
  columns: {
    ...intervalColumns,
    from_step: col("INTEGER", "first evaluated step in the mean"),
    to_step: col("INTEGER", "last evaluated step in the mean"),
    n_steps: col("INTEGER", "evaluated steps in the mean"),
  },
});

// ---------------------------------------------------------------------------------
// Downloaded checkpoints

export const HUB_REVISIONS = defineTable({
  name: "hub_revisions",
  writtenBy: ["hub"],
  meaning: "one row per Hugging Face revision the hub step fetched",
  columns: {
    repo: col("VARCHAR", "Hugging Face model repo, e.g. EleutherAI/pythia-160m"),
    revision: col("VARCHAR", "branch or tag, e.g. step1000"),
    step: col("INTEGER", "training step the revision stands for"),
    commit: col("VARCHAR", "commit the revision resolved to"),
    format: col("VARCHAR", "weights file format it was read from"),
    bytes: col("BIGINT", "bytes of its weights"),
    duplicate_of: col(
      "VARCHAR",
      "earlier revision with identical weights (left out of the series)",
    ),
  },
});

/** Every science results table, in the README's order. */
export const RESULTS_TABLES: readonly ResultsTable[] = [
  TRAIN_LOG,
  TRAIN_RUNS,
  SERIES,
  EVAL_LOSS,
  DIVERSITY,
  ZEROSHOT,
  SPIKES,
  SAVINGS,
  LMC,
  EVAL_WINDOWS,
  GAP_INTERVALS,
  GAP_MEANS,
  HUB_REVISIONS,
];

// ---------------------------------------------------------------------------------
// Writers

/** `{ column: type }` of a table, as the engine creates it. */
export function schemaOf(table: ResultsTable): TableSchema {
  return Object.fromEntries(Object.entries(table.columns).map(([c, d]) => [c, d.type]));
}

/** A step kind's `tables` field: `tables: tablesOf(SERIES, EVAL_LOSS)`. */
export function tablesOf(...tables: ResultsTable[]): Record<string, TableSchema> {
  return Object.fromEntries(tables.map((t) => [t.name, schemaOf(t)]));
}

/** Columns of a table that measure the run (`measured`), not computed results. */
export function measuredColumns(table: ResultsTable): string[] {
  return Object.entries(table.columns).filter(([, c]) => c.measured).map(([name]) => name);
}

/** Append typed rows to a table (its measured columns go to the entry's side files). */
export function appendRows<T extends ResultsTable>(
  sink: ResultsSink,
  table: T,
  rows: RowOf<T>[],
): void {
  sink.append(table.name, rows, measuredColumns(table));
}

// ---------------------------------------------------------------------------------
// Readers

/** A quoted identifier. */
function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A column of a table, quoted for SQL (`alias."col"` when an alias is given). */
export function column<T extends ResultsTable>(
  table: T,
  name: ColumnOf<T>,
  alias?: string,
): string {
  if (!(name in table.columns)) throw new Error(`table ${table.name} has no column ${name}`);
  return alias ? `${alias}.${ident(name)}` : ident(name);
}

/** Quote strings as a SQL list literal: `('a', 'b')`; an empty list matches nothing. */
export function sqlList(values: readonly string[]): string {
  if (values.length === 0) return "(NULL)";
  return "(" + values.map((v) => `'${v.replaceAll("'", "''")}'`).join(", ") + ")";
}

export interface SelectOptions<T extends ResultsTable> {
  /** Keep rows of these instances only (`instance_key IN (...)`). */
  instanceKeys?: readonly string[];
  /** Further equality filters, e.g. `{ domain: "all" }`. */
  equals?: Partial<Record<ColumnOf<T>, string | number>>;
  /** Further inequality filters, e.g. `{ domain: "all" }` for every other domain. */
  notEquals?: Partial<Record<ColumnOf<T>, string | number>>;
  /** `SELECT DISTINCT` over the columns asked for (then without `instance_key`). */
  distinct?: boolean;
  /** Sort columns (`instance_key` is the column the engine adds to every table). */
  orderBy?: (ColumnOf<T> | "instance_key")[];
}

function literal(v: string | number): string {
  return typeof v === "number" ? String(v) : `'${v.replaceAll("'", "''")}'`;
}

/**
 * `SELECT instance_key, <columns> FROM <table> WHERE ...`: BIGINT columns come back as
 * DOUBLE (plain JS numbers) and JSON as text, under their own names.
 */
export function selectSql<T extends ResultsTable>(
  table: T,
  columns: readonly ColumnOf<T>[],
  opts: SelectOptions<T> = {},
): string {
  const cols = columns.map((c) => {
    const type = table.columns[c].type;
    if (type === "BIGINT") return `${ident(c)}::DOUBLE AS ${ident(c)}`;
    if (type === "JSON") return `${ident(c)}::VARCHAR AS ${ident(c)}`;
    return ident(c);
  });
  const where: string[] = [];
  if (opts.instanceKeys) where.push(`instance_key IN ${sqlList(opts.instanceKeys)}`);
  for (const [c, v] of Object.entries(opts.equals ?? {})) {
    where.push(`${ident(c)} = ${literal(v as string | number)}`);
  }
  for (const [c, v] of Object.entries(opts.notEquals ?? {})) {
    where.push(`${ident(c)} <> ${literal(v as string | number)}`);
  }
  const head = opts.distinct ? "SELECT DISTINCT " : "SELECT instance_key, ";
  return `${head}${cols.join(", ")} FROM ${ident(table.name)}` +
    (where.length ? ` WHERE ${where.join(" AND ")}` : "") +
    (opts.orderBy?.length ? ` ORDER BY ${opts.orderBy.map(ident).join(", ")}` : "");
}

// ---------------------------------------------------------------------------------------
// Reading rows back: DuckDB returns BIGINT as bigint, NULL as null, JSON as text.

/** A numeric cell as a finite number, or null (NULL, missing, empty, NaN). */
export function asNumber(v: unknown): number | null {
  if (v === null || v === undefined || v === "") return null;
  const n = typeof v === "number" ? v : Number(v);
  return Number.isFinite(n) ? n : null;
}

/** A `params` cell (JSON text or an object) as an object; {} when it is not one. */
export function parseParams(v: unknown): Record<string, unknown> {
  if (typeof v === "string") {
    try {
      const p = JSON.parse(v);
      return p && typeof p === "object" ? p as Record<string, unknown> : {};
    } catch {
      return {};
    }
  }
  return v && typeof v === "object" ? v as Record<string, unknown> : {};
}
