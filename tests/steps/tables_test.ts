// The results-table declarations: the README lists every table with its columns in order,
// step kinds declare exactly these schemas, and the SQL helpers quote and cast as promised.
import assert from "node:assert/strict";
import {
  EVAL_LOSS,
  RESULTS_TABLES,
  schemaOf,
  selectSql,
  SERIES,
  sqlList,
  tablesOf,
} from "../../steps/tables.ts";
import { STEP_KINDS } from "../../steps/registry.ts";

Deno.test("README's results-table list matches the declared tables", async () => {
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  const section = readme.slice(readme.indexOf("## Results in DuckDB"));
  for (const table of RESULTS_TABLES) {
    const line = section.split("\n").find((l) => l.startsWith(`| \`${table.name}\``));
    assert.ok(line, `README lists no table \`${table.name}\``);
    const listed = line.split("|")[2].replace(/\([^)]*\)/g, "").split(",").map((c) => c.trim());
    assert.deepEqual(listed, Object.keys(table.columns), `README's columns of ${table.name}`);
  }
});

Deno.test("every step kind writes declared tables with the declared schemas", () => {
  const declared = new Map(RESULTS_TABLES.map((t) => [t.name, t]));
  const written = new Set<string>();
  for (const kind of STEP_KINDS) {
    for (const [name, schema] of Object.entries(kind.tables ?? {})) {
      const table = declared.get(name);
      assert.ok(table, `step kind ${kind.name} writes undeclared table ${name}`);
      assert.deepEqual(schema, schemaOf(table), `schema of ${name} in ${kind.name}`);
      assert.ok(table.writtenBy.includes(kind.name), `${name}.writtenBy lacks ${kind.name}`);
      written.add(name);
    }
  }
  for (const t of RESULTS_TABLES) assert.ok(written.has(t.name), `no step writes ${t.name}`);
  for (const t of RESULTS_TABLES) {
    for (const [c, d] of Object.entries(t.columns)) {
      assert.ok(d.meaning.length > 0, `${t.name}.${c} has no meaning`);
    }
  }
});

Deno.test("selectSql casts BIGINT to DOUBLE and JSON to text, filters and orders", () => {
  assert.equal(
    selectSql(EVAL_LOSS, ["series_id", "tokens", "loss"], {
      instanceKeys: ["a", "b'c"],
      equals: { domain: "all" },
      orderBy: ["series_id", "step"],
    }),
    `SELECT instance_key, "series_id", "tokens"::DOUBLE AS "tokens", "loss" FROM "eval_loss" ` +
      `WHERE instance_key IN ('a', 'b''c') AND "domain" = 'all' ORDER BY "series_id", "step"`,
  );
  assert.equal(
    selectSql(SERIES, ["params"], { distinct: true, notEquals: { k: 2 } }),
    `SELECT DISTINCT "params"::VARCHAR AS "params" FROM "series" WHERE "k" <> 2`,
  );
  assert.equal(sqlList([]), "(NULL)");
  assert.deepEqual(Object.keys(tablesOf(SERIES, EVAL_LOSS)), ["series", "eval_loss"]);
});

Deno.test("steps and figures name no results table in SQL or append calls: they go through steps/tables.ts", async () => {
  const names = new Set(RESULTS_TABLES.map((t) => t.name));
  const offenders: string[] = [];
  const scan = async (dir: string) => {
    for await (const e of Deno.readDir(new URL(`../../${dir}/`, import.meta.url))) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await scan(path);
      else if (e.name.endsWith(".ts") && path !== "steps/tables.ts") {
        const text = await Deno.readTextFile(new URL(`../../${path}`, import.meta.url));
        for (const m of text.matchAll(/\b(?:FROM|JOIN|INTO|UPDATE)\s+"?([A-Za-z_]\w*)"?/g)) {
          if (names.has(m[1])) offenders.push(`${path}: ${m[0]}`);
        }
        // Writers append typed rows (appendRows) rather than to a table named by a string.
        for (const m of text.matchAll(/\.append\(\s*"([A-Za-z_]\w*)"/g)) {
          if (names.has(m[1])) offenders.push(`${path}: ${m[0]}`);
        }
      }
    }
  };
  await scan("steps");
  await scan("report");
  assert.deepEqual(offenders, []);
});
