// The results store, `<artifacts>/results.duckdb`. DuckDB lets one process write a
// database file at a time, so every access here is one short attach-work-detach under a
// global file lock (`<artifacts>/.results.lock`); concurrent runs take turns. Work that
// piles up while waiting for the lock is done in one open (a batch).
//
// Rows a step appends are kept in its cache entry (`_rows/<table>.jsonl`) and loaded
// here only once the entry is committed: an instance that fails leaves no rows, and a
// deleted results.duckdb is rebuilt from the cache (`loaded_instances` says which
// entries are in). Loading first deletes the instance's rows, so it is idempotent.
import { type DuckDBConnection, timestampValue } from "@duckdb/node-api";
import { withAttached } from "./duckdb.ts";
import type { Row, TableSchema } from "./step.ts";
import { withFileLock } from "./lock.ts";

/** One execution of an instance, for the `runs` table. */
export interface RunRecord {
  key: string;
  step: string;
  node: string;
  params: Record<string, unknown>;
  status: "ok" | "failed";
  started: Date;
  duration_s: number;
  error: string | null;
}

const RUNS_DDL = `CREATE TABLE IF NOT EXISTS runs (
  key VARCHAR, step VARCHAR, node VARCHAR, params JSON, status VARCHAR,
  started TIMESTAMP, duration_s DOUBLE, error VARCHAR, host VARCHAR, pid INTEGER)`;
const LOADED_DDL = `CREATE TABLE IF NOT EXISTS loaded_instances (key VARCHAR, loaded TIMESTAMP)`;

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

/** How long an open database waits for more work, and the most it stays open. */
const LINGER_MS = 50;
const MAX_HOLD_MS = 1000;

type Job = {
  work: (conn: DuckDBConnection) => Promise<unknown>;
  done: PromiseWithResolvers<unknown>;
};

export class ResultsDb {
  readonly path: string;
  readonly lockPath: string;
  #queue: Job[] = [];
  #flushing: Promise<void> | null = null;

  constructor(artifactsRoot: string) {
    this.path = `${artifactsRoot}/results.duckdb`;
    this.lockPath = `${artifactsRoot}/.results.lock`;
  }

  /** Run `work` with a connection to the database, under the global lock. */
  withConnection<T>(work: (conn: DuckDBConnection) => Promise<T>): Promise<T> {
    const done = Promise.withResolvers<unknown>();
    this.#queue.push({ work, done });
    if (!this.#flushing) this.#flushing = this.#flush();
    return done.promise as Promise<T>;
  }

  async #flush(): Promise<void> {
    // Let jobs submitted in the same tick join the batch.
    await Promise.resolve();
    while (this.#queue.length) {
      const first = this.#queue.splice(0);
      try {
        await withFileLock(this.lockPath, () =>
          withAttached(this.path, async (conn) => {
            const openedMs = Date.now();
            await conn.run(RUNS_DDL);
            await conn.run(LOADED_DDL);
            let batch = first;
            // Keep the file attached while more work arrives soon (steps finishing one
            // after another), but never hold the lock long: other processes take turns.
            while (batch.length) {
              for (const job of batch) {
                try {
                  job.done.resolve(await job.work(conn));
                } catch (e) {
                  await conn.run("ROLLBACK").catch(() => {});
                  job.done.reject(e);
                }
              }
              batch = [];
              const deadline = Math.min(Date.now() + LINGER_MS, openedMs + MAX_HOLD_MS);
              while (!this.#queue.length && Date.now() < deadline) {
                await new Promise((r) => setTimeout(r, 5));
              }
              if (Date.now() < openedMs + MAX_HOLD_MS) batch = this.#queue.splice(0);
            }
          }));
      } catch (e) {
        for (const job of first) job.done.reject(e);
      }
    }
    this.#flushing = null;
  }

  /** Keys of the cache entries whose rows are in the database. */
  loadedKeys(): Promise<Set<string>> {
    return this.withConnection(async (conn) => {
      const reader = await conn.runAndReadAll("SELECT key FROM loaded_instances");
      return new Set(reader.getRowObjectsJson().map((r) => String(r.key)));
    });
  }

  /**
   * Load an entry's rows (replacing any of the same instance) and, when given, record
   * its execution, in one transaction.
   */
  loadInstance(
    key: string,
    tables: Record<string, TableSchema>,
    rowsDir: string,
    run?: RunRecord,
  ): Promise<void> {
    return this.withConnection(async (conn) => {
      const rows = await readRowFiles(rowsDir);
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
      if (run) await insertRun(conn, run);
      await conn.run("COMMIT");
    });
  }

  /** Record an execution that produced no entry (a failure). */
  recordRun(run: RunRecord): Promise<void> {
    return this.withConnection((conn) => insertRun(conn, run));
  }

  /** Read-only query, rows as plain objects. */
  query(sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
    return this.withConnection(async (conn) => {
      // deno-lint-ignore no-explicit-any
      const reader = await conn.runAndReadAll(sql, params as any);
      return reader.getRowObjectsJson() as Record<string, unknown>[];
    });
  }

  /** Drop an instance's rows from every table (gc of its entry). */
  forgetInstances(keys: string[]): Promise<void> {
    return this.withConnection(async (conn) => {
      const reader = await conn.runAndReadAll(
        `SELECT DISTINCT table_name FROM information_schema.columns
         WHERE column_name = 'instance_key' AND table_catalog = current_database()`,
      );
      const tables = reader.getRowObjectsJson().map((r) => String(r.table_name));
      for (const key of keys) {
        for (const t of tables) {
          await conn.run(`DELETE FROM ${quoteIdent(t)} WHERE instance_key = $1`, [key]);
        }
        await conn.run("DELETE FROM loaded_instances WHERE key = $1", [key]);
      }
    });
  }
}

async function insertRun(conn: DuckDBConnection, run: RunRecord): Promise<void> {
  const appender = await conn.createAppender("runs");
  const values: [string, unknown][] = [
    ["VARCHAR", run.key],
    ["VARCHAR", run.step],
    ["VARCHAR", run.node],
    ["JSON", run.params],
    ["VARCHAR", run.status],
    ["TIMESTAMP", run.started],
    ["DOUBLE", run.duration_s],
    ["VARCHAR", run.error],
    ["VARCHAR", Deno.hostname()],
    ["INTEGER", Deno.pid],
  ];
  for (const [type, v] of values) appendTyped(appender, type, v);
  appender.endRow();
  appender.flushSync();
  appender.closeSync();
}
