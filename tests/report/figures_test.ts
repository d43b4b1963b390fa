// Tests of the figure catalogue on synthetic results (tests/fixtures/plot): queries are
// restricted to the given instances, the final table matches numpy's numbers, sweeps
// hold the other param fixed, and figures without data say why.
import assert from "node:assert/strict";
import {
  FIGURE_IDS,
  figureById,
  type FigureResult,
  FigureScope,
  type Skipped,
  sqlList,
  toCsv,
} from "../../report/figures.ts";
import { contextWithRows, fixtureInputs, readFixture } from "../fixtures/plot/load.ts";

function built(r: FigureResult | Skipped): FigureResult {
  if ("skip" in r) throw new Error(`figure skipped: ${r.skip}`);
  return r;
}

Deno.test("sqlList quotes keys and matches nothing when empty", () => {
  assert.equal(sqlList(["ab", "o'k"]), "('ab', 'o''k')");
  assert.equal(sqlList([]), "(NULL)");
});

Deno.test("FigureScope: series of the inputs only, unique labels, reachable train runs", async () => {
  const ctx = await contextWithRows((await readFixture()).tables);
  try {
    const scope = new FigureScope((sql) => ctx.results.query(sql), fixtureInputs());
    const series = [...(await scope.series()).values()];
    assert.equal(series.length, 11);
    assert.ok(series.every((s) => s.instance_key !== "decoy"));
    const displays = series.map((s) => s.display);
    assert.equal(new Set(displays).size, displays.length, `labels not unique: ${displays}`);
    assert.deepEqual(series.slice(0, 3).map((s) => s.display), [
      "original · lr 6e-4 · 16.4K tok/step",
      "original · lr 6e-3 · 16.4K tok/step",
      "original · lr 6e-3 · 131K tok/step",
    ]);
    assert.equal(series[3].method, "ema");
    const trainKeys = await scope.trainKeys();
    for (const k of ["trainA", "trainB", "trainC"]) assert.ok(trainKeys.includes(k), k);
    assert.ok(!trainKeys.includes("trainZ"));
  } finally {
    await ctx.dispose();
  }
});

Deno.test("final-table: last-step loss per domain and Δ vs original match numpy", async () => {
  const fixture = await readFixture();
  const ctx = await contextWithRows(fixture.tables);
  try {
    const scope = new FigureScope((sql) => ctx.results.query(sql), fixtureInputs());
    const result = built(await figureById("final-table").build(scope, false));
    const table = result.table!;
    assert.deepEqual(table.columns, [
      "series",
      "method",
      "step",
      "loss all",
      "loss brown",
      "loss sotu",
      "Δ vs original",
    ]);
    assert.equal(table.rows.length, fixture.expected_final.length);
    for (const want of fixture.expected_final) {
      const i = result.series.findIndex((s) =>
        s.instance_key === want.instance_key && s.series_id === want.series_id
      );
      assert.ok(i >= 0, `${want.series_id} missing`);
      const row = table.rows[i];
      assert.equal(row[0], result.series[i].display);
      assert.equal(row[2], want.step);
      for (const [j, d] of ["all", "brown", "sotu"].entries()) {
        assert.ok(
          Math.abs((row[3 + j] as number) - want.losses[d]) < 6e-5,
          `${want.series_id} ${d}`,
        );
      }
      assert.ok(Math.abs((row[6] as number) - want.delta) < 6e-5, `${want.series_id} Δ`);
    }
    // The chart's data holds the same final losses.
    const best = Math.min(...fixture.expected_final.map((f) => f.losses.all));
    assert.ok(result.rows.some((r) => Math.abs((r.loss as number) - best) < 1e-9));
  } finally {
    await ctx.dispose();
  }
});

Deno.test("lr-sweep holds batch fixed and shows one LAWA setting common to both lrs", async () => {
  const ctx = await contextWithRows((await readFixture()).tables);
  try {
    const scope = new FigureScope((sql) => ctx.results.query(sql), fixtureInputs());
    const result = built(await figureById("lr-sweep").build(scope, false));
    assert.ok(result.series.every((s) => s.batch_tokens === 16384));
    const lawa = result.series.filter((s) => s.method === "lawa");
    assert.deepEqual(lawa.map((s) => [s.k, s.nu, s.lr]), [[5, 1, 6e-4], [5, 1, 6e-3]]);
    assert.equal(result.series.filter((s) => s.method === "original").length, 2);
    assert.match(result.note ?? "", /other LAWA settings \(k=2 ν=1, k=2 ν=2, k=5 ν=2\)/);

    const batch = built(await figureById("batch-sweep").build(scope, false));
    assert.ok(batch.series.every((s) => s.lr === 6e-3));
    assert.deepEqual(new Set(batch.series.map((s) => s.batch_tokens)), new Set([16384, 131072]));
  } finally {
    await ctx.dispose();
  }
});

Deno.test("ablation-k: one training run; skipped when k does not vary unless requested", async () => {
  const fixture = await readFixture();
  const ctx = await contextWithRows(fixture.tables);
  try {
    const scope = new FigureScope((sql) => ctx.results.query(sql), fixtureInputs());
    const result = built(await figureById("ablation-k").build(scope, false));
    const lawa = result.series.filter((s) => s.method === "lawa");
    assert.equal(lawa.length, 4);
    assert.ok(result.series.every((s) => s.lr === 6e-3 && s.batch_tokens === 16384));
    assert.match(result.note ?? "", /lr 6e-4 · 16.4K tok\/step/);
    // Panels in numeric order of ν, not alphabetical ("ν=10" before "ν=2").
    const panels = [...new Set(result.rows.map((r) => r.panel as string))];
    const order = JSON.stringify(result.spec).match(/"sort":(\[[^\]]*\])/)?.[1];
    assert.deepEqual(
      JSON.parse(order ?? "[]"),
      [...panels].sort((a, b) => Number(a.slice(2)) - Number(b.slice(2))),
    );
  } finally {
    await ctx.dispose();
  }
  const onlyK5 = fixture.tables.series.filter((s) => s.k !== 2);
  const ids = new Set(onlyK5.map((s) => s.series_id));
  const ctx2 = await contextWithRows({
    series: onlyK5,
    eval_loss: fixture.tables.eval_loss.filter((r) => ids.has(r.series_id as string)),
  });
  try {
    const scope = new FigureScope((sql) => ctx2.results.query(sql), fixtureInputs());
    const def = figureById("ablation-k");
    const skipped = await def.build(scope, false);
    assert.ok("skip" in skipped && /only one k value \(5\)/.test(skipped.skip));
    assert.ok("spec" in await def.build(scope, true));
  } finally {
    await ctx2.dispose();
  }
});

Deno.test("every figure is skipped with a reason when the database is empty", async () => {
  const ctx = await contextWithRows({}, {});
  try {
    const scope = new FigureScope((sql) => ctx.results.query(sql), fixtureInputs());
    for (const id of FIGURE_IDS) {
      const r = await figureById(id).build(scope, true);
      assert.ok("skip" in r, `${id} built without data`);
      assert.match(r.skip, /table in the results/, id);
    }
  } finally {
    await ctx.dispose();
  }
  assert.throws(() => figureById("nope"), /unknown figure "nope": expected one of loss-vs-step/);
});

Deno.test("toCsv quotes commas and quotes, leaves nulls empty", () => {
  assert.equal(
    toCsv([{ a: 1, b: 'x,"y"' }, { a: null, c: true }]),
    'a,b,c\n1,"x,""y""",\n,,true\n',
  );
});
