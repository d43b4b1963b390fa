// The ResultsSink a running step writes to: rows go to `<outDir>/_rows/<table>.jsonl`
// right away (so they belong to the cache entry and die with a failed work folder);
// the runner loads them into DuckDB once the entry is committed.
import type { ResultsSink, Row, TableSchema } from "./step.ts";
import { ROWS_DIR } from "./store.ts";
import type { ResultsDb } from "./results.ts";

export function createSink(
  stepName: string,
  outDir: string,
  tables: Record<string, TableSchema>,
  results: ResultsDb,
): ResultsSink {
  let dirMade = false;
  return {
    append(table: string, rows: Row[]) {
      if (!tables[table]) {
        throw new Error(
          `step kind "${stepName}" appended to table "${table}", which it does not declare ` +
            `(declared: ${Object.keys(tables).join(", ") || "none"})`,
        );
      }
      if (rows.length === 0) return;
      if (!dirMade) {
        Deno.mkdirSync(`${outDir}/${ROWS_DIR}`, { recursive: true });
        dirMade = true;
      }
      const text = rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
      Deno.writeTextFileSync(`${outDir}/${ROWS_DIR}/${table}.jsonl`, text, { append: true });
    },
    query(sql: string, params?: unknown[]) {
      return results.query(sql, params ?? []);
    },
  };
}
