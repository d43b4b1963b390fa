import assert from "node:assert/strict";
import { formatCsv, formatTable, queryResults } from "../../cli/sql.ts";
import { withAttached } from "../../pipeline/duckdb.ts";
import { withFileLock } from "../../pipeline/lock.ts";

async function withResults(fn: (artifacts: string) => Promise<void>) {
  const artifacts = await Deno.makeTempDir({ prefix: "sql-test-" });
  try {
    await withAttached(`${artifacts}/results.duckdb`, async (conn) => {
      await conn.run(`CREATE TABLE eval_loss (series_id VARCHAR, step BIGINT, loss DOUBLE)`);
      await conn.run(
        `INSERT INTO eval_loss VALUES ('a', 2, 3.25), ('a', 4, 3.125), ('b, "q"', 2, NULL)`,
      );
    });
    await fn(artifacts);
  } finally {
    await Deno.remove(artifacts, { recursive: true });
  }
}

Deno.test("a query reads rows, read-only, even while a run holds the results lock", async () => {
  await withResults(async (artifacts) => {
    // Runs write to a private copy under this lock; a reader must not wait for it.
    await withFileLock(`${artifacts}/.results.lock`, async () => {
      const { columns, rows } = await queryResults(
        artifacts,
        "SELECT series_id, step, loss FROM eval_loss ORDER BY series_id, step",
      );
      assert.deepEqual(columns, ["series_id", "step", "loss"]);
      assert.deepEqual(rows, [["a", 2, 3.25], ["a", 4, 3.125], ['b, "q"', 2, null]]);
    });
    await assert.rejects(
      () => queryResults(artifacts, "DELETE FROM eval_loss"),
      /read-only/,
    );
    const { rows } = await queryResults(artifacts, "SELECT count(*) AS n FROM eval_loss");
    assert.deepEqual(rows, [[3]]);
  });
});

Deno.test("a missing database is one clear line", async () => {
  await assert.rejects(
    () => queryResults("/nonexistent-artifacts", "SELECT 1"),
    /no results database at/,
  );
});

Deno.test("tables align numbers right and say how many rows; CSV quotes what it must", () => {
  const columns = ["series_id", "step", "loss"];
  const rows = [["a", 2, 3.25], ["a", 40, null], ['b, "q"', 2, 1 / 3]];
  assert.equal(
    formatTable(columns, rows),
    [
      "series_id  step      loss",
      "---------  ----  --------",
      "a             2      3.25",
      "a            40      NULL",
      'b, "q"        2  0.333333',
      "3 rows",
    ].join("\n"),
  );
  assert.match(formatTable(columns, rows, 1), /3 rows \(first 1 shown; --csv for all\)$/);
  assert.equal(
    formatCsv(columns, rows),
    `series_id,step,loss\na,2,3.25\na,40,\n"b, ""q""",2,${1 / 3}`,
  );
});
