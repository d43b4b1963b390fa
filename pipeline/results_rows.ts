// Rows into the results database: the typed appender, the tables a step declares
// (created, or given the columns they gained), an entry's `_rows/*.jsonl` (completed by
// the measured columns in `_side/_rows/`) and its manifest's `runs` row loaded in one
// transaction, and the log of failed executions.
// pipeline/results.ts decides when and on which copy of the file this runs.
import { type DuckDBConnection, timestampValue } from "@duckdb/node-api";
import type { Row, TableSchema } from "./step.ts";
import { MANIFEST, type Manifest, ROWS_DIR, SIDE_DIR } from "./store.ts";
import { readJsonLog } from "./jsonl.ts";

/** A failed execution of an instance (successful ones are read from manifests). */
export interface RunRecord {
  key: string;
  step_kind: string;
  node: string;
  params: Record<string, unknown>;
  status: "ok" | "failed";
  started: Date;
  duration_s: number;
  error: string | null;
}

export const RUN_COLUMNS = [
  "key",
  "step_kind",
  "node",
  "params",
  "status",
  "started",
  "duration_s",
  "error",
  "host",
] as const;
export const RUNS_DDL = `CREATE TABLE IF NOT EXISTS runs (
  key VARCHAR, step_kind VARCHAR, node VARCHAR, params JSON, status VARCHAR,
  started TIMESTAMP, duration_s DOUBLE, error VARCHAR, host VARCHAR)`;
export const LOADED_DDL =
  `CREATE TABLE IF NOT EXISTS loaded_instances (key VARCHAR, loaded TIMESTAMP)`;
export const META_DDL = `CREATE TABLE IF NOT EXISTS results_layout (version INTEGER)`;

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Append one JS value to a column of the given DuckDB type. */
function appendTyped(
  appender: Awaited<ReturnType<DuckDBConnection["createAppender"]>>,
  type: string,
  value: unknown,
): void {
  if (value === null || value === undefined) return appender.appendNull();
  switch (type) {
    case "INTEGER":
      return appender.appendInteger(Number(value));
    case "BIGINT":
      return appender.appendBigInt(BigInt(Math.round(Number(value))));
    case "DOUBLE":
      return appender.appendDouble(Number(value));
    case "BOOLEAN":
      return appender.appendBoolean(Boolean(value));
    case "TIMESTAMP": {
      const ms = value instanceof Date ? value.getTime() : Date.parse(String(value));
      return appender.appendTimestamp(timestampValue(BigInt(Math.round(ms)) * 1000n));
    }
    case "JSON":
      return appender.appendVarchar(typeof value === "string" ? value : JSON.stringify(value));
    default:
      return appender.appendVarchar(typeof value === "string" ? value : JSON.stringify(value));
  }
}

async function tableColumns(
  conn: DuckDBConnection,
  table: string,
): Promise<{ name: string; type: string }[]> {
  const reader = await conn.runAndReadAll(
    `SELECT column_name, data_type FROM information_schema.columns
     WHERE table_name = $1 AND table_catalog = current_database() ORDER BY ordinal_position`,
    [table],
  );
  return reader.getRowObjectsJson().map((r) => ({
    name: String(r.column_name),
    type: String(r.data_type),
  }));
}

/** Create the table (instance_key first) or add columns the schema gained since. */
async function ensureTable(conn: DuckDBConnection, table: string, schema: TableSchema) {
  const cols = Object.entries(schema).map(([c, t]) => `${quoteIdent(c)} ${t}`);
  await conn.run(
    `CREATE TABLE IF NOT EXISTS ${quoteIdent(table)} (instance_key VARCHAR, ${cols.join(", ")})`,
  );
  const have = new Set((await tableColumns(conn, table)).map((c) => c.name));
  for (const [c, t] of Object.entries(schema)) {
    if (!have.has(c)) {
      await conn.run(`ALTER TABLE ${quoteIdent(table)} ADD COLUMN ${quoteIdent(c)} ${t}`);
    }
  }
}

/** Read `<dir>/<table>.jsonl` files written by RowWriter. */
export async function readRowFiles(dir: string): Promise<Record<string, Row[]>> {
  const out: Record<string, Row[]> = {};
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || !e.name.endsWith(".jsonl")) continue;
      const text = await Deno.readTextFile(`${dir}/${e.name}`);
      out[e.name.slice(0, -".jsonl".length)] = text.split("\n").filter((l) => l.trim())
        .map((l) => JSON.parse(l));
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out;
}

/**
 * An entry's rows, each completed by its measured columns (the same line of the side
 * file, `_side/_rows/<table>.jsonl`, when the step wrote one).
 */
export async function readEntryRows(entryDir: string): Promise<Record<string, Row[]>> {
  const rows = await readRowFiles(`${entryDir}/${ROWS_DIR}`);
  const side = await readRowFiles(`${entryDir}/${SIDE_DIR}/${ROWS_DIR}`);
  for (const [table, measured] of Object.entries(side)) {
    const own = rows[table] ?? [];
    if (measured.length !== own.length) {
      throw new Error(
        `${entryDir}: ${measured.length} measured rows for ${own.length} rows of ${table}`,
      );
    }
    rows[table] = own.map((r, i) => ({ ...r, ...measured[i] }));
  }
  return rows;
}

/** An entry's rows (replacing any of the same instance) and its `runs` row, in one transaction. */
export async function loadEntry(
  conn: DuckDBConnection,
  key: string,
  tables: Record<string, TableSchema>,
  entryDir: string,
): Promise<void> {
  const manifest = JSON.parse(await Deno.readTextFile(`${entryDir}/${MANIFEST}`)) as Manifest;
  const rows = await readEntryRows(entryDir);
  await conn.run("BEGIN TRANSACTION");
  for (const [table, schema] of Object.entries(tables)) {
    await ensureTable(conn, table, schema);
    await conn.run(`DELETE FROM ${quoteIdent(table)} WHERE instance_key = $1`, [key]);
    const tableRows = rows[table] ?? [];
    if (tableRows.length === 0) continue;
    const columns = await tableColumns(conn, table);
    const appender = await conn.createAppender(table);
    for (const row of tableRows) {
      for (const col of columns) {
        appendTyped(appender, col.type, col.name === "instance_key" ? key : row[col.name]);
      }
      appender.endRow();
    }
    appender.flushSync();
    appender.closeSync();
  }
  await conn.run("DELETE FROM loaded_instances WHERE key = $1", [key]);
  await conn.run("INSERT INTO loaded_instances VALUES ($1, now()::TIMESTAMP)", [key]);
  await conn.run("DELETE FROM runs WHERE key = $1 AND status = 'ok'", [key]);
  await insertRun(conn, runOfManifest(manifest), manifest.host);
  await conn.run("COMMIT");
}

/** The `runs` row of a committed entry. */
function runOfManifest(m: Manifest): RunRecord {
  return {
    key: m.key,
    step_kind: m.step,
    node: m.node,
    params: m.params,
    status: "ok",
    started: new Date(m.started),
    duration_s: m.duration_s,
    error: null,
  };
}

export async function readFailures(path: string): Promise<(RunRecord & { host?: string })[]> {
  return (await readJsonLog(path)).map((value) => {
    const r = value as RunRecord & { host?: string };
    return { ...r, started: new Date(r.started) };
  });
}

export async function insertRun(
  conn: DuckDBConnection,
  run: RunRecord & { host?: string },
  host = run.host ?? Deno.hostname(),
): Promise<void> {
  const placeholders = RUN_COLUMNS.map((_, i) => `$${i + 1}`).join(", ");
  await conn.run(`INSERT INTO runs (${RUN_COLUMNS.join(", ")}) VALUES (${placeholders})`, [
    run.key,
    run.step_kind,
    run.node,
    JSON.stringify(run.params),
    run.status,
    run.started.toISOString().replace("T", " ").replace("Z", ""),
    run.duration_s,
    run.error,
    host,
  ]);
}
