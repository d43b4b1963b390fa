// The step contract: what a step kind is, what it receives when it runs.
// Step kinds are plain values (no class hierarchy) so a pipeline file can name them
// and the engine can fingerprint their code. The engine knows nothing about ML.
import type { z } from "zod";

/** A DuckDB column type, as written in CREATE TABLE. */
export type ColumnType =
  | "VARCHAR"
  | "INTEGER"
  | "BIGINT"
  | "DOUBLE"
  | "BOOLEAN"
  | "TIMESTAMP"
  | "JSON";

/** Columns of a results table a step appends to. `instance_key` is added by the engine. */
export type TableSchema = Record<string, ColumnType>;

/** One result row: column name -> value (null for missing). */
export type Row = Record<string, string | number | boolean | null | Date>;

/** Where a finished upstream instance's outputs are, and who made them. */
export interface InputRef {
  /** Cache key of the upstream instance. */
  key: string;
  /** Step kind name of the upstream instance (e.g. "train"). */
  step: string;
  /** Node name in the pipeline file (e.g. "train-high-lr"). */
  node: string;
  /** Its params after defaults were applied. */
  params: Record<string, unknown>;
  /** Read-only folder holding its outputs. */
  dir: string;
}

/** An input is one upstream instance (mapped) or a list of them (gathered). */
export type InputValue = InputRef | InputRef[];

export interface Progress {
  /** Start (or restart) a bar: `total` units of `unit` (e.g. "tok", "step", "ckpt"). */
  start(label: string, total: number, unit?: string): void;
  /** Advance to `done` units; `info` is a short status (e.g. "loss 3.21 · 1.2k tok/s"). */
  update(done: number, info?: string): void;
  /** A one-line message shown above the live display. */
  log(message: string): void;
}

export interface ResultsSink {
  /**
   * Append rows to `table` (declared in the step kind's `tables`). Rows are
   * tagged with this instance's key and land in DuckDB in bulk when the
   * instance succeeds; a failed instance leaves none behind. `measured` names columns
   * that measure the run rather than compute a result (wall-clock seconds, tokens/s):
   * they reach DuckDB from the entry's side files, out of downstream cache keys.
   */
  append(table: string, rows: Row[], measured?: readonly string[]): void;
  /**
   * Run a read-only SQL query against the results database (for steps such as
   * `plot` that read what upstream steps wrote). Rows come back as objects.
   */
  query(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
}

export interface StepContext {
  /** Cache key of this instance. */
  key: string;
  /** Node name in the pipeline file. */
  node: string;
  /** Folder to write outputs into. For resumable steps it keeps what an interrupted run left. */
  outDir: string;
  /**
   * Backend requested for this run ("wasm", "cpu", "webgpu", "tensorflow"). A step whose
   * params carry a string `backend` runs on that one instead; backends are process-wide,
   * so the command line refuses `--jobs` > 1 when such a param differs from the run's.
   */
  backend: string;
  /** Seed of this run (also in the cache key). */
  seed: number;
  results: ResultsSink;
  progress: Progress;
  /** Aborted when the run is cancelled (Ctrl-C): long loops should check it. */
  signal: AbortSignal;
}

export interface StepKind<P extends z.ZodType = z.ZodType> {
  /** Name used in pipeline files (`kind: train`). */
  name: string;
  /** URL of the module that defines the step (`import.meta.url`): its local import graph is the code fingerprint. */
  module: string;
  /** Zod schema of params; defaults are applied before hashing. */
  params: P;
  /**
   * Checks of params the schema cannot express (one against another, against a preset,
   * a memory bound), run while planning, `--dry-run` included, so that a bad value
   * fails before anything runs. Throws (a ParamError from errors.ts names the param).
   */
  check?(params: z.infer<P>): void;
  /** Names of the inputs it takes. Optional inputs end with "?". */
  inputs: string[];
  /** Results tables it appends to. */
  tables?: Record<string, TableSchema>;
  /** If true, a crashed run's outDir is kept and handed to the next run (e.g. training resumes). */
  resumable?: boolean;
  /**
   * Whether the run's tfjs backend and seed can change this step's outputs (both
   * default to true). A step that sets one to false (e.g. tokenize, which uses neither)
   * keeps it out of its cache key, so switching `--backend` does not rebuild it.
   */
  uses?: { backend?: boolean; seed?: boolean };
  /**
   * Files or folders the step reads by path from its params (a user's corpus, a task
   * file): their contents go into the cache key, so editing one reruns the step.
   */
  files?(params: z.infer<P>): string[];
  /** npm packages whose versions go into the key beyond those its modules import (e.g. datasets read at run time). */
  extraPackages?: string[];
  /**
   * Escape hatch: when set, this string stands in for the fingerprint of the step's
   * local source files (npm package versions still count), so an edit its author knows
   * does not change results (a log line, a refactor) keeps the cache. Risk: an edit that
   * does change results but forgets to bump `version` silently reuses stale outputs.
   */
  version?: string;
  run(ctx: StepContext, params: z.infer<P>, inputs: Record<string, InputValue>): Promise<void>;
  /**
   * For `--dry-run`: a one-line estimate of what running the instance costs (disk,
   * time), or null. `inputs` is null while an upstream instance is not built; `env` has
   * the run's backend and the artifacts folder (where earlier runs' measurements are).
   */
  estimate?(
    params: z.infer<P>,
    inputs: Record<string, InputValue> | null,
    env: { backend: string; artifacts: string },
  ): Promise<string | null>;
  /**
   * Called after the instance is built or found in the cache, to copy its outputs
   * somewhere users look (e.g. plot -> artifacts/figures/<pipeline>/). `entryDir` is the
   * read-only cache entry; `artifactsDir` the artifacts root; `run.pipeline` the name the
   * run publishes under (the pipeline file's name, with a suffix when `--set` changed it),
   * so a derived config does not overwrite its parent's outputs. Returns the path users
   * should open (printed at the end of the run), if any.
   */
  publish?(
    entryDir: string,
    params: z.infer<P>,
    artifactsDir: string,
    run?: PublishContext,
  ): Promise<string | void>;
}

/** Who a `publish` call publishes for. */
export interface PublishContext {
  /** Name of the run's pipeline: `ablation-k-nu`, or `ablation-k-nu--lr_0.003` with `--set`. */
  pipeline: string;
}

/** Identity helper that keeps the params type when declaring a step kind. */
export function defineStep<P extends z.ZodType>(kind: StepKind<P>): StepKind<P> {
  return kind;
}
