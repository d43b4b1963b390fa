// Tests of the figure catalogue on synthetic results (tests/fixtures/plot): queries are
// restricted to the given instances, the final table matches numpy's numbers, sweeps
// hold the other param fixed, and figures without data say why.
import assert from "node:assert/strict";
import {
  describeTrain,
  FIGURE_IDS,
  figureById,
  type FigureResult,
  FigureScope,
  finishSeries,
  type SeriesMeta,
  type Skipped,
  sqlList,
  toCsv,
  trainParamsThatDiffer,
} from "../../report/figures/index.ts";
import { PALETTE } from "../../report/figures/charts.ts";
import { formatGap } from "../../report/figures/intervals.ts";
import { tableToMarkdown } from "../../report/html.ts";
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
      const row = table.rows.find((r) => r[0] === result.series[i].display);
      assert.ok(row, `no table row for ${result.series[i].display}`);
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

/** Every colour scale of a spec: its domain and range (colours) in order. */
function colourScales(spec: unknown): { domain: string[]; range: string[] }[] {
  const found: { domain: string[]; range: string[] }[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) return v.forEach(walk);
    if (!v || typeof v !== "object") return;
    const o = v as Record<string, unknown>;
    const color = o.color as { scale?: { domain?: string[]; range?: string[] } } | undefined;
    if (color?.scale?.domain && color.scale.range) {
      found.push({ domain: color.scale.domain, range: color.scale.range });
    }
    Object.values(o).forEach(walk);
  };
  walk(spec);
  return found;
}

Deno.test("every figure draws the original black, and 13+ series in distinct colours", async () => {
  const ctx = await contextWithRows((await readFixture()).tables);
  try {
    const scope = new FigureScope(
      (sql) => ctx.results.query(sql),
      fixtureInputs({ intervals: true }),
    );
    let originals = 0;
    for (const id of FIGURE_IDS) {
      const r = await figureById(id).build(scope, false);
      if ("skip" in r) continue;
      for (const scale of colourScales(r.spec)) {
        scale.domain.forEach((name, i) => {
          const isOriginal = /(^|· )original( ·|$)/.test(name) || name === "original";
          if (isOriginal) originals++;
          if (isOriginal) assert.equal(scale.range[i], "#000000", `${id}: ${name}`);
          else assert.notEqual(scale.range[i], "#000000", `${id}: ${name}`);
        });
        const others = scale.range.filter((c) => c !== "#000000");
        assert.equal(new Set(others).size, others.length, `${id}: colours repeat`);
      }
    }
    assert.ok(originals >= 5, `originals seen: ${originals}`);
    assert.ok(PALETTE.length >= 13 && new Set(PALETTE).size === PALETTE.length);
  } finally {
    await ctx.dispose();
  }
});

Deno.test("final-table: rows by training run, original first, then by final loss", async () => {
  const ctx = await contextWithRows((await readFixture()).tables);
  try {
    const scope = new FigureScope((sql) => ctx.results.query(sql), fixtureInputs());
    const table = built(await figureById("final-table").build(scope, false)).table!;
    const byDisplay = new Map([...(await scope.series()).values()].map((s) => [s.display, s]));
    const runs: string[] = [];
    let last = null as { run: string; loss: number } | null;
    for (const row of table.rows) {
      const s = byDisplay.get(row[0] as string)!;
      const run = `${s.lr}|${s.batch_tokens}`;
      if (run !== last?.run) {
        assert.ok(!runs.includes(run), `run ${run} split`);
        runs.push(run);
        assert.equal(s.method, "original", `${row[0]} opens its run`);
      } else if (s.method !== "original") {
        assert.ok((row[3] as number) >= last.loss || last.loss === -Infinity, `${row[0]} order`);
      }
      last = { run, loss: s.method === "original" ? -Infinity : row[3] as number };
    }
    assert.deepEqual(table.decimals, [null, null, null, 4, 4, 4, 4]);
    assert.match(tableToMarkdown(table), /\| 0\.0000 \|/);
  } finally {
    await ctx.dispose();
  }
});

Deno.test("seeds: curves are the mean over seeds with a min–max band; tables mean ± sd", async () => {
  const fixture = await readFixture();
  const ctx = await contextWithRows(fixture.tables);
  try {
    const scope = new FigureScope(
      (sql) => ctx.results.query(sql),
      fixtureInputs({ seeds: true }),
    );
    const series = [...(await scope.series()).values()];
    const lawa52 = series.filter((s) => s.label === "LAWA k=5 ν=2");
    assert.deepEqual(lawa52.map((s) => s.seed), [0, 1, 2]);
    assert.equal(new Set(lawa52.map((s) => s.group)).size, 1);
    assert.deepEqual(
      lawa52.map((s) => s.display),
      [0, 1, 2].map((i) => `LAWA k=5 ν=2 · seed ${i}`),
    );

    const curve = built(await figureById("loss-vs-step").build(scope, false));
    const want = fixture.expected_seeds["LAWA k=5 ν=2"];
    const mine = curve.rows.filter((r) => r.series === "LAWA k=5 ν=2");
    assert.equal(mine.length, Object.keys(want.curve).length);
    for (const r of mine) {
      const w = want.curve[String(r.step)];
      assert.ok(Math.abs((r.loss as number) - w.mean) < 1e-9, `mean at ${r.step}`);
      assert.ok(Math.abs((r.loss_lo as number) - w.min) < 1e-9, `min at ${r.step}`);
      assert.ok(Math.abs((r.loss_hi as number) - w.max) < 1e-9, `max at ${r.step}`);
      assert.equal(r.n_seeds, 3);
    }
    assert.match(JSON.stringify(curve.spec), /"y2":\{"field":"loss_hi"\}/);
    assert.match(curve.note ?? "", /mean over seeds; the band spans min–max/);

    const table = built(await figureById("final-table").build(scope, false)).table!;
    assert.ok(table.columns.includes("seeds"));
    const row = table.rows.find((r) => r[0] === "LAWA k=5 ν=2")!;
    const col = (name: string) => row[table.columns.indexOf(name)];
    assert.equal(col("seeds"), 3);
    assert.equal(col("loss all"), `${want.final_mean.toFixed(4)} ± ${want.final_sd.toFixed(4)}`);
    assert.equal(
      col("Δ vs original"),
      `${want.delta_mean!.toFixed(4)} ± ${want.delta_sd!.toFixed(4)}`,
    );
  } finally {
    await ctx.dispose();
  }
});

Deno.test("intervals: ablation gets a gap row with its band; the final table the gap's CI", async () => {
  const fixture = await readFixture();
  const gaps = fixture.tables.gap_intervals;
  const ctx = await contextWithRows(fixture.tables);
  try {
    const plain = new FigureScope((sql) => ctx.results.query(sql), fixtureInputs());
    const without = built(await figureById("ablation-k").build(plain, false));
    assert.equal((without.spec as { vconcat: unknown[] }).vconcat.length, 2);

    // One seed: each series' own rows.
    const scope = new FigureScope(
      (sql) => ctx.results.query(sql),
      fixtureInputs({ intervals: true }),
    );
    const fig = built(await figureById("ablation-k").build(scope, false));
    const rows = (fig.spec as { vconcat: { data?: { values: Record<string, number>[] } }[] })
      .vconcat;
    assert.equal(rows.length, 3);
    const gapRows = rows[2].data!.values;
    const want = gaps.filter((g) => g.series_id === "avgA52/.");
    const got = gapRows.filter((r) =>
      r.series === ("k=5" as unknown) && r.panel === ("ν=2" as unknown)
    );
    assert.deepEqual(
      got.map((r) => [r.step, r.gap, r.lower, r.upper]),
      want.map((g) => [g.step, g.gap, g.lower, g.upper]),
    );
    assert.ok(fig.instanceKeys.includes("ivl1"));
    assert.match(fig.note ?? "", /95% paired-bootstrap interval over evaluation windows\./);

    const table = built(await figureById("final-table").build(scope, false)).table!;
    const ci = table.columns.indexOf("gap [95% CI]");
    assert.ok(ci > 0);
    const last = want[want.length - 1];
    const row = table.rows.find((r) => r[0] === "LAWA k=5 ν=2")!;
    assert.equal(row[ci], formatGap(last as { gap: number; lower: number; upper: number }));
    assert.equal(table.rows.find((r) => r[0] === "original · lr 6e-3 · 16.4K tok/step")![ci], null);

    // The lr sweep gets the same row for its LAWA series (only lr 6e-3 has gaps here).
    const sweep = built(await figureById("lr-sweep").build(scope, false));
    const sweepRows =
      (sweep.spec as { vconcat: { data?: { values: Record<string, unknown>[] } }[] })
        .vconcat;
    assert.equal(sweepRows.length, 3);
    assert.deepEqual(
      sweepRows[2].data!.values.map((r) => [r.series, r.step, r.gap]),
      gaps.filter((g) => g.series_id === "avgA51/.").map((g) => [
        "lr 6e-3 · LAWA k=5 ν=1",
        g.step,
        g.gap,
      ]),
    );

    // Several seeds: the pooled rows (seed null).
    const seeded = new FigureScope(
      (sql) => ctx.results.query(sql),
      fixtureInputs({ intervals: true, seeds: true }),
    );
    const pooled = built(await figureById("ablation-k").build(seeded, false));
    const pooledRows =
      (pooled.spec as { vconcat: { data?: { values: Record<string, unknown>[] } }[] })
        .vconcat[2].data!.values.filter((r) => r.series === "k=5" && r.panel === "ν=2");
    assert.deepEqual(
      pooledRows.map((r) => r.lower),
      gaps.filter((g) => g.series_id === "pooled:ablation").map((g) => g.lower),
    );
    assert.match(pooled.note ?? "", /and 3 seeds\./);
  } finally {
    await ctx.dispose();
  }
});

Deno.test("labels tell apart runs that differ only in length or preset (a scale study)", () => {
  const meta = (id: string, train: Record<string, unknown>, seed = 0): SeriesMeta => ({
    ref: `ev|${id}`,
    instance_key: "ev",
    series_id: id,
    label: "original",
    method: "original",
    k: null,
    nu: null,
    lr: 0.02,
    batch_tokens: 2048,
    seed,
    params: { train: { lr: 0.02, batch_tokens: 2048, ...train }, seed },
    display: "",
    group: JSON.stringify([id.split("/")[0].replace(/s\d$/, ""), train]),
    groupDisplay: "",
    order: 0,
  });
  const series = [
    meta("a/original", { preset: "cpu-micro", steps: 600 }),
    meta("b/original", { preset: "cpu-micro", steps: 1200 }),
    meta("c/original", { preset: "cpu-tiny", steps: 1200 }),
  ];
  finishSeries(series);
  assert.deepEqual(series.map((s) => s.display), [
    "original · cpu-micro · 600 steps",
    "original · cpu-micro · 1200 steps",
    "original · cpu-tiny · 1200 steps",
  ]);
  assert.deepEqual(trainParamsThatDiffer(series), ["preset", "steps"]);
  assert.equal(describeTrain(series[0], ["preset", "steps"]), "cpu-micro · 600 steps");
});
