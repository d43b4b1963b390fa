// The savings step end to end on an in-memory results database: synthetic eval curves
// of an original run and a LAWA series of the same training, plus a training log.
import assert from "node:assert/strict";
import { savingsStep } from "../../steps/savings.ts";
import { fakeContext } from "../helpers/fake_ctx.ts";
import { evaluateStep } from "../../steps/evaluate.ts";
import { trainStep } from "../../steps/train.ts";
import type { InputRef, Row } from "../../pipeline/step.ts";

const tables = { ...savingsStep.tables, ...evaluateStep.tables, ...trainStep.tables };

const STEPS = [100, 200, 300, 400, 500];
const train = { lr: 6e-3, batch_tokens: 2048, steps: 500 };

function lossRows(seriesId: string, shift: number): Row[] {
  return STEPS.flatMap((step) => {
    const ppl = 10 + 100 / (step + shift);
    return ["all", "web"].map((domain) => ({
      series_id: seriesId,
      step,
      tokens: step * 2048,
      domain,
      loss: Math.log(domain === "all" ? ppl : ppl * 2),
      ppl: domain === "all" ? ppl : ppl * 2,
      n_tokens: 1000,
    }));
  });
}

Deno.test("savings step: baseline found by training params, rows per series and tolerance", async () => {
  const ctx = await fakeContext({ tables: tables as typeof savingsStep.tables });
  try {
    ctx.results.append("series", [
      {
        series_id: `${ctx.key}/original`,
        label: "original",
        method: "original",
        k: null,
        nu: null,
        lr: 6e-3,
        batch_tokens: 2048,
        params: JSON.stringify({ train, seed: 0 }),
      },
      {
        series_id: "A/.",
        label: "LAWA k=2",
        method: "lawa",
        k: 2,
        nu: 1,
        lr: 6e-3,
        batch_tokens: 2048,
        params: JSON.stringify({ k: 2, nu: 1, train, seed: 0 }),
      },
      // the same training params with another seed: a separate run with its own original
      {
        series_id: "C/original",
        label: "original",
        method: "original",
        k: null,
        nu: null,
        lr: 6e-3,
        batch_tokens: 2048,
        params: JSON.stringify({ train, seed: 1 }),
      },
      {
        series_id: "D/.",
        label: "LAWA k=2",
        method: "lawa",
        k: 2,
        nu: 1,
        lr: 6e-3,
        batch_tokens: 2048,
        params: JSON.stringify({ k: 2, nu: 1, train, seed: 1 }),
      },
      // another training run without an original series: skipped, not mixed in
      {
        series_id: "B/.",
        label: "LAWA",
        method: "lawa",
        k: 2,
        nu: 1,
        lr: 6e-4,
        batch_tokens: 2048,
        params: JSON.stringify({ train: { ...train, lr: 6e-4 } }),
      },
    ]);
    ctx.results.append("eval_loss", [
      ...lossRows(`${ctx.key}/original`, 0),
      ...lossRows("A/.", 200),
      ...lossRows("B/.", 1000),
      ...lossRows("C/original", 50),
      ...lossRows("D/.", 100),
    ]);
    // the baseline's series id starts with its training instance key, whose log gives the clock
    ctx.results.append("train_log", STEPS.map((step) => ({ step, elapsed_s: step / 10 })));
    const evals: InputRef[] = [{
      key: ctx.key,
      step: "evaluate",
      node: "eval",
      params: {},
      dir: ctx.outDir,
    }];
    await savingsStep.run(ctx, savingsStep.params.parse({ tolerances: [0, 0.05] }), { evals });

    const all = ctx.rows.savings;
    assert.equal(all.length, 8); // 2 runs x 2 series x 2 tolerances
    const rows = all.filter((r) => r.series_id === "A/." || r.series_id === `${ctx.key}/original`);
    assert.ok(
      rows.every((r) => r.baseline_id === `${ctx.key}/original` && r.baseline_step === 500),
    );
    const seed1 = all.filter((r) => r.series_id === "C/original" || r.series_id === "D/.");
    assert.ok(seed1.length === 4 && seed1.every((r) => r.baseline_id === "C/original"));
    // D: 10 + 100/(s+100) <= C's final 10 + 100/550  <=>  s >= 450
    assert.equal(seed1.find((r) => r.series_id === "D/." && r.tolerance === 0)!.first_step, 500);
    // no training log for run C: no wall clock
    assert.equal(seed1.find((r) => r.series_id === "D/.")!.wall_saved_s, null);
    const lawa0 = rows.find((r) => r.series_id === "A/." && r.tolerance === 0)!;
    // 10 + 100/(s+200) <= 10.2  <=>  s >= 300
    assert.equal(lawa0.first_step, 300);
    assert.equal(lawa0.steps_saved, 200);
    assert.equal(lawa0.tokens_saved, 200 * 2048);
    assert.ok(Math.abs((lawa0.wall_saved_s as number) - 20) < 1e-9); // elapsed = step / 10
    const orig5 = rows.find((r) => r.series_id === `${ctx.key}/original` && r.tolerance === 0.05)!;
    // 10 + 100/s <= 10.2 * 1.05 = 10.71  <=>  s >= 140.8
    assert.equal(orig5.first_step, 200);
    assert.ok(ctx.progressEvents.some((e) => e.includes("no original series for B/.")));
    // rows also reached the database
    const db = await ctx.results.query("SELECT count(*) AS n FROM savings");
    assert.equal(Number(db[0].n), 8);
  } finally {
    await ctx.dispose();
  }
});

Deno.test("savings step: no eval rows is a clear error", async () => {
  const ctx = await fakeContext({ tables: tables as typeof savingsStep.tables });
  try {
    const evals: InputRef[] = [{
      key: "nope",
      step: "evaluate",
      node: "eval",
      params: {},
      dir: ctx.outDir,
    }];
    await assert.rejects(
      () => savingsStep.run(ctx, savingsStep.params.parse({}), { evals }),
      /no eval_loss rows for domain 'all' from evaluate instances nope/,
    );
  } finally {
    await ctx.dispose();
  }
});
