// The ResultsSink a running step writes to: rows go to `<outDir>/_rows/<table>.jsonl`
// right away (so they belong to the cache entry and die with a failed work folder);
// the runner loads them into DuckDB once the entry is committed. Measured columns
// (timings) go to `<outDir>/_side/_rows/<table>.jsonl` instead, line for line with the
// rows, so that they stay out of the entry's digest (store.ts).
import type { ResultsSink, Row, TableSchema } from "./step.ts";
import { ROWS_DIR, SIDE_DIR } from "./store.ts";
import type { ResultsDb } from "./results.ts";

export function createSink(
  stepName: string,
  outDir: string,
  tables: Record<string, TableSchema>,
  results: ResultsDb,
): ResultsSink {
  const made = new Set<string>();
  const appendLines = (dir: string, table: string, rows: Row[]) => {
    if (!made.has(dir)) {
      Deno.mkdirSync(`${outDir}/${dir}`, { recursive: true });
      made.add(dir);
    }
    const text = rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
    Deno.writeTextFileSync(`${outDir}/${dir}/${table}.jsonl`, text, { append: true });
  };
  const only = (row: Row, keep: (column: string) => boolean): Row =>
    Object.fromEntries(Object.entries(row).filter(([c]) => keep(c)));
  return {
    append(table: string, rows: Row[], measured: readonly string[] = []) {
      if (!tables[table]) {
        throw new Error(
          `step kind "${stepName}" appended to table "${table}", which it does not declare ` +
            `(declared: ${Object.keys(tables).join(", ") || "none"})`,
        );
      }
      if (rows.length === 0) return;
      const isMeasured = (column: string) => measured.includes(column);
      appendLines(ROWS_DIR, table, rows.map((r) => only(r, (c) => !isMeasured(c))));
      // Line i of the side file completes row i of the table's rows.
      if (measured.length > 0) {
        appendLines(`${SIDE_DIR}/${ROWS_DIR}`, table, rows.map((r) => only(r, isMeasured)));
      }
    },
    query(sql: string, params?: unknown[]) {
      return results.query(sql, params ?? []);
    },
  };
}
