// `deno task sql "<query>"`: read the results database without installing a DuckDB
// client. The file is opened read-only and without the writers' lock: runs write to a
// private copy that they rename over results.duckdb (pipeline/results.ts), so a query
// reads the snapshot it opened and never makes a run wait. Prints an aligned table (or
// CSV with --csv); with no query, lists the tables and their row counts.
import { parseArgs } from "node:util";
import { withAttached } from "../pipeline/duckdb.ts";

export const HELP = `Query the results database (read-only).

Usage: deno task sql [--artifacts DIR] [--csv] [--max-rows N] ["<query>"]

  <query>         any read-only SQL, e.g.
                  "SELECT step_kind, count(*) FROM runs GROUP BY ALL"
                  (none: list the tables and their row counts)
  --artifacts DIR artifacts folder (default $LAWA_ARTIFACTS or "artifacts")
  --csv           print CSV instead of an aligned table
  --max-rows N    rows printed in a table (default 200; CSV prints all)`;

export type Cell = string | number | boolean | null;

/** Rows of a query on the results database of `artifacts`. */
export async function queryResults(
  artifacts: string,
  sql: string,
): Promise<{ columns: string[]; rows: Cell[][] }> {
  const path = `${artifacts}/results.duckdb`;
  try {
    await Deno.stat(path);
  } catch {
    throw new Error(`no results database at ${path} (run a pipeline first, or pass --artifacts)`);
  }
  return await withAttached(path, async (conn) => {
    const reader = await conn.runAndReadAll(sql);
    const columns = reader.columnNames();
    const rows = reader.getRows().map((row) => row.map(toCell));
    return { columns, rows };
  }, { readOnly: true });
}

/** A DuckDB value as printable: big integers as numbers where exact, the rest as text. */
function toCell(v: unknown): Cell {
  if (v === null || v === undefined) return null;
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : String(v);
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "string") return v;
  return String(v);
}

function cellText(v: Cell): string {
  if (v === null) return "NULL";
  if (typeof v === "number" && !Number.isInteger(v)) return String(Number(v.toPrecision(6)));
  return String(v);
}

/** An aligned text table: numbers right-aligned, at most `maxRows` rows. */
export function formatTable(columns: string[], rows: Cell[][], maxRows = 200): string {
  const shown = rows.slice(0, maxRows).map((r) => r.map(cellText));
  const numeric = columns.map((_, c) =>
    rows.length > 0 && rows.every((r) => r[c] === null || typeof r[c] === "number")
  );
  const widths = columns.map((name, c) =>
    Math.min(60, Math.max(name.length, ...shown.map((r) => r[c].length)))
  );
  const fit = (text: string, c: number) => {
    const cut = text.length > widths[c] ? text.slice(0, widths[c] - 1) + "…" : text;
    return numeric[c] ? cut.padStart(widths[c]) : cut.padEnd(widths[c]);
  };
  const lines = [
    columns.map(fit).join("  ").trimEnd(),
    widths.map((w) => "-".repeat(w)).join("  "),
    ...shown.map((r) => r.map(fit).join("  ").trimEnd()),
  ];
  const more = rows.length > shown.length ? ` (first ${shown.length} shown; --csv for all)` : "";
  lines.push(`${rows.length} row${rows.length === 1 ? "" : "s"}${more}`);
  return lines.join("\n");
}

export function formatCsv(columns: string[], rows: Cell[][]): string {
  const field = (v: Cell | string) => {
    const s = v === null ? "" : String(v);
    return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  return [columns, ...rows].map((r) => r.map(field).join(",")).join("\n");
}

const TABLES_SQL = `SELECT table_name AS "table", estimated_size AS rows, column_count AS columns
  FROM duckdb_tables() WHERE database_name = current_database() ORDER BY table_name`;

/** The command; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let values;
  let positionals;
  try {
    ({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        artifacts: { type: "string" },
        csv: { type: "boolean" },
        "max-rows": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    console.error(`error: ${(e as Error).message.split("\n")[0]}\n${HELP}`);
    return 1;
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length > 1) {
    console.error(`error: expected one query (quote it), got ${positionals.length} arguments`);
    return 1;
  }
  const maxRows = Number(values["max-rows"] ?? 200);
  if (!Number.isInteger(maxRows) || maxRows < 1) {
    console.error(`error: --max-rows: expected a positive integer, got "${values["max-rows"]}"`);
    return 1;
  }
  const artifacts = values.artifacts ?? Deno.env.get("LAWA_ARTIFACTS") ?? "artifacts";
  try {
    const { columns, rows } = await queryResults(artifacts, positionals[0] ?? TABLES_SQL);
    console.log(values.csv ? formatCsv(columns, rows) : formatTable(columns, rows, maxRows));
    return 0;
  } catch (e) {
    console.error(`error: ${(e as Error).message.split("\n")[0]}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
