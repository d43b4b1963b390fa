// results.duckdb as a derived view of the cache: a write lands by rename (no .wal left,
// the file stamped), and a new database is filled from every entry (other pipelines'
// too) and from the log of failed executions.
import assert from "node:assert/strict";
import { ResultsDb } from "../../pipeline/results.ts";
import { queryDb, tempDir, TOY_YAML, writeConfig } from "./toy_helpers.ts";
import { cli } from "./fault_helpers.ts";

Deno.test("a write replaces the file whole: no .wal beside it, and its stamp matches", async () => {
  const art = await tempDir();
  const db = new ResultsDb(art);
  await db.withConnection((c) => c.run("CREATE TABLE t AS SELECT 1 AS x"));
  await db.flush();
  const names = [...Deno.readDirSync(art)].map((e) => e.name).sort();
  assert.deepEqual(names, [".results.lock", ".results.stamp.json", "results.duckdb"]);
  const stamp = JSON.parse(await Deno.readTextFile(`${art}/.results.stamp.json`));
  const info = await Deno.stat(`${art}/results.duckdb`);
  assert.deepEqual(stamp, { size: info.size, mtime_ms: info.mtime!.getTime(), ino: info.ino });
  // A read changes nothing on disk.
  assert.deepEqual(await db.query("SELECT x FROM t"), [{ x: 1 }]);
  assert.equal((await Deno.stat(`${art}/results.duckdb`)).ino, info.ino);
  await Deno.remove(art, { recursive: true });
});

Deno.test("a new database is filled from every cache entry and the failure log", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  const common = ["--artifacts", art, "--configs", dir];
  const toy = await writeConfig(dir, "toy.yaml", TOY_YAML);
  const other = await writeConfig(
    dir,
    "other.yaml",
    "steps:\n  s: { kind: source, params: { offset: 50 } }\n  f: { kind: fail, inputs: { numbers: s } }\n",
  );
  assert.equal((await cli(["run", toy, ...common])).code, 0);
  assert.equal((await cli(["run", other, ...common])).code, 1); // `fail` fails
  const all = `SELECT stage, value FROM "values" ORDER BY ALL`;
  const runs =
    "SELECT step_kind, status, count(*)::INTEGER AS n FROM runs GROUP BY ALL ORDER BY ALL";
  const before = { values: await queryDb(art, all), runs: await queryDb(art, runs) };
  assert.equal(before.values.length, 15);
  assert.deepEqual(before.runs, [
    { step_kind: "fail", status: "failed", n: 1 },
    { step_kind: "source", status: "ok", n: 3 },
    { step_kind: "square", status: "ok", n: 2 },
    { step_kind: "sum", status: "ok", n: 1 },
  ]);

  await Deno.remove(`${art}/results.duckdb`);
  // Running only the toy pipeline brings back the other pipeline's rows and its failure.
  const rerun = await cli(["run", toy, ...common]);
  assert.equal(rerun.code, 0, rerun.err);
  assert.deepEqual({ values: await queryDb(art, all), runs: await queryDb(art, runs) }, before);
  await Deno.remove(dir, { recursive: true });
});
