// A StepContext for unit tests of single steps, without the engine: a temp output
// folder, results kept in an in-memory DuckDB (so `query` sees what `append` wrote),
// and a silent progress reporter that records what it was told.
import { withAttached } from "../../pipeline/duckdb.ts";
import type { Progress, Row, StepContext, StepKind, TableSchema } from "../../pipeline/step.ts";

export interface FakeContext extends StepContext {
  /** Every row appended, by table. */
  rows: Record<string, Row[]>;
  /** Progress calls, for tests that check a bar was shown. */
  progressEvents: string[];
  /** Remove the temp folder and close the database. */
  dispose(): Promise<void>;
}

/** Build a context for running `kind` in a test. Tables come from `kind.tables`. */
export async function fakeContext(
  kind: Pick<StepKind, "tables">,
  opts: { key?: string; outDir?: string; backend?: string; seed?: number } = {},
): Promise<FakeContext> {
  const outDir = opts.outDir ?? await Deno.makeTempDir({ prefix: "step-test-" });
  // A database file of its own, attached to the process's one DuckDB instance per use.
  const dbDir = await Deno.makeTempDir({ prefix: "step-test-db-" });
  const dbPath = `${dbDir}/results.duckdb`;
  const schemas: Record<string, TableSchema> = { ...(kind.tables ?? {}) };
  const created = new Set<string>();
  const rows: Record<string, Row[]> = {};
  const progressEvents: string[] = [];
  const key = opts.key ?? "test-key";

  const ensureTable = async (table: string) => {
    if (created.has(table)) return;
    const schema = schemas[table];
    if (!schema) throw new Error(`table ${table} is not declared by the step kind`);
    const cols = Object.entries(schema).map(([c, t]) => `"${c}" ${t}`).join(", ");
    await withAttached(
      dbPath,
      (conn) => conn.run(`CREATE TABLE IF NOT EXISTS "${table}" (instance_key VARCHAR, ${cols})`),
    );
    created.add(table);
  };
  const pending: Promise<void>[] = [];

  const progress: Progress = {
    start: (label, total, unit) => progressEvents.push(`start ${label} ${total} ${unit ?? ""}`),
    update: (done, info) => progressEvents.push(`update ${done} ${info ?? ""}`),
    log: (message) => progressEvents.push(`log ${message}`),
  };

  return {
    key,
    node: "test",
    outDir,
    backend: opts.backend ?? "cpu",
    seed: opts.seed ?? 0,
    signal: new AbortController().signal,
    progress,
    rows,
    progressEvents,
    results: {
      append(table, newRows) {
        if (!schemas[table]) throw new Error(`table ${table} is not declared by the step kind`);
        (rows[table] ??= []).push(...newRows);
        pending.push((async () => {
          await ensureTable(table);
          const cols = Object.keys(schemas[table]);
          await withAttached(dbPath, async (conn) => {
            for (const r of newRows) {
              const values = cols.map((c) => r[c] ?? null);
              const marks = ["?", ...cols.map(() => "?")].join(", ");
              // deno-lint-ignore no-explicit-any
              await conn.run(`INSERT INTO "${table}" VALUES (${marks})`, [key, ...values] as any);
            }
          });
        })());
      },
      async query(sql, params) {
        await Promise.all(pending);
        for (const t of Object.keys(schemas)) await ensureTable(t);
        return await withAttached(dbPath, async (conn) => {
          // deno-lint-ignore no-explicit-any
          const reader = await conn.runAndReadAll(sql, params as any);
          return reader.getRowObjectsJson() as Record<string, unknown>[];
        });
      },
    },
    async dispose() {
      await Promise.all(pending);
      await Deno.remove(dbDir, { recursive: true }).catch(() => {});
      await Deno.remove(outDir, { recursive: true }).catch(() => {});
    },
  };
}
