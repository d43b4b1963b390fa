// The evaluate step end to end on a tiny fixed model: held-out losses per domain and
// 'all' against the numpy reference, diversity 0 for identical checkpoints and the
// reference disagreement for different ones, spikes, zero-shot rows, flat memory.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import {
  evaluateStep,
  largestRise,
  scoredCheckpoints,
  windowsPerDomain,
} from "../../steps/evaluate.ts";
import { fakeContext } from "../helpers/fake_ctx.ts";
import { fixture, STEPS, writeFixtureDirs } from "../fixtures/eval/fixture_dirs.ts";
import type { InputRef } from "../../pipeline/step.ts";

function ref(step: string, dir: string, key: string): InputRef {
  return { key, step, node: step, params: {}, dir };
}

const close = (a: unknown, b: number, tol = 1e-4) =>
  assert.ok(Math.abs(Number(a) - b) < tol, `${a} vs reference ${b}`);

Deno.test("evaluate step: losses match the reference, diversity, spikes and zero-shot rows", async () => {
  const ctx = await fakeContext(evaluateStep, { backend: "cpu" });
  const root = await Deno.makeTempDir({ prefix: "evaluate-test-" });
  try {
    const { tokensDir, seriesDir } = await writeFixtureDirs(root);
    const params = evaluateStep.params.parse({
      max_windows: fixture.heldout.max_windows,
      batch_size: 3,
      zeroshot: {
        tasks: [
          { type: "heldout_lastword", passages: 4, min_context_words: 2 },
          {
            name: "mc-fixture",
            type: "multiple_choice",
            path: new URL("../fixtures/zeroshot/multiple_choice.jsonl", import.meta.url).pathname,
          },
          {
            name: "wikitext-fixture",
            type: "word_perplexity",
            path: new URL("../fixtures/zeroshot/word_perplexity.jsonl", import.meta.url).pathname,
          },
        ],
      },
    });
    const inputs = {
      series: ref("train", seriesDir, "TRAINKEY"),
      tokens: ref("tokenize", tokensDir, "TOK"),
    };
    await evaluateStep.run(ctx, params, inputs);
    const tensorsAfterFirst = tf.memory().numTensors;

    const id = "TRAINKEY/original";
    assert.equal(ctx.rows.series.length, 1);
    assert.equal(ctx.rows.series[0].series_id, id);
    assert.equal(ctx.rows.series[0].lr, 0.006);
    assert.equal(ctx.rows.series[0].batch_tokens, 64);

    const loss = ctx.rows.eval_loss;
    assert.equal(loss.length, STEPS.length * 3); // alpha, beta, all per checkpoint
    const expected = [fixture.heldout.loss_a, fixture.heldout.loss_a, fixture.heldout.loss_c];
    STEPS.forEach((step, i) => {
      for (const domain of ["alpha", "beta", "all"]) {
        const row = loss.find((r) => r.step === step && r.domain === domain)!;
        close(row.loss, expected[i][domain]);
        close(row.ppl, Math.exp(expected[i][domain]), 1e-3);
        assert.equal(row.tokens, step * 64);
      }
    });
    const nAll = loss.find((r) => r.domain === "all")!.n_tokens;
    assert.equal(nAll, 2 * fixture.heldout.max_windows * fixture.heldout.seq_len);

    const div = ctx.rows.diversity;
    assert.deepEqual(div.map((r) => [r.step_a, r.step_b]), [[100, 200], [200, 300]]);
    assert.equal(div[0].diversity, 0); // identical checkpoints
    close(div[1].diversity, fixture.heldout.diversity_ac, 1e-9);
    assert.ok(Number(div[1].diversity) > 0);

    assert.equal(ctx.rows.spikes.length, 1);
    assert.equal(ctx.rows.spikes[0].step, 300);
    close(ctx.rows.spikes[0].rise, fixture.heldout.loss_c.all - fixture.heldout.loss_a.all);

    const zs = ctx.rows.zeroshot;
    assert.ok(zs.every((r) => r.step === 300), "zero-shot runs on the last checkpoint by default");
    const tasks = new Set(zs.map((r) => r.task));
    assert.ok(
      tasks.has("mc-fixture") && tasks.has("wikitext-fixture") && tasks.has("lastword-alpha"),
    );
    for (const r of zs) {
      assert.ok(Number.isFinite(r.value as number), `${r.task} ${r.metric} = ${r.value}`);
      if (String(r.metric).startsWith("acc")) {
        assert.ok(Number(r.value) >= 0 && Number(r.value) <= 1);
      }
    }
    assert.equal(zs.find((r) => r.task === "mc-fixture" && r.metric === "acc")!.n, 3);
    assert.ok(ctx.progressEvents.some((e) => e.startsWith("start evaluate")));

    // A second run keeps memory flat: no tensors leak per checkpoint.
    await evaluateStep.run(
      ctx,
      evaluateStep.params.parse({ max_windows: 4, diversity: false }),
      inputs,
    );
    assert.equal(tf.memory().numTensors, tensorsAfterFirst);
  } finally {
    await ctx.dispose();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("evaluate step: clear errors for a missing domain, an unknown series, no series", async () => {
  const ctx = await fakeContext(evaluateStep, { backend: "cpu" });
  const root = await Deno.makeTempDir({ prefix: "evaluate-test-" });
  try {
    const { tokensDir, seriesDir } = await writeFixtureDirs(root);
    const tokens = ref("tokenize", tokensDir, "TOK");
    await assert.rejects(
      () =>
        evaluateStep.run(ctx, evaluateStep.params.parse({ domains: ["gamma"] }), {
          series: ref("train", seriesDir, "K"),
          tokens,
        }),
      /held-out domain 'gamma' is not in .*meta.json \(domains: alpha, beta\)/,
    );
    await assert.rejects(
      () =>
        evaluateStep.run(ctx, evaluateStep.params.parse({ series: ["ema"] }), {
          series: ref("train", seriesDir, "K"),
          tokens,
        }),
      /no checkpoint series named ema \(series.json\) in the output of train \(found: original\)/,
    );
    await assert.rejects(
      () =>
        evaluateStep.run(ctx, evaluateStep.params.parse({}), {
          series: ref("train", tokensDir, "K"),
          tokens,
        }),
      /no checkpoint series \(series.json\) in the output of train/,
    );
    await assert.rejects(
      () =>
        evaluateStep.run(ctx, evaluateStep.params.parse({ series: ["ema"] }), {
          series: ref("train", seriesDir, "K"),
          tokens,
        }),
      /no checkpoint series named ema \(series.json\) in the output of train \(found: original\)/,
    );
  } finally {
    await ctx.dispose();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("largestRise finds the biggest single-checkpoint increase", () => {
  assert.deepEqual(
    largestRise([{ step: 3, loss: 2.5 }, { step: 1, loss: 3 }, { step: 2, loss: 2 }, {
      step: 4,
      loss: 2.4,
    }]),
    { step: 3, rise: 0.5 },
  );
  assert.equal(largestRise([{ step: 1, loss: 3 }]), null);
});

Deno.test("evaluate step: per-window losses, step_every, heldout_tokens", async () => {
  const ctx = await fakeContext(evaluateStep, { backend: "cpu" });
  const root = await Deno.makeTempDir({ prefix: "evaluate-windows-test-" });
  try {
    const { tokensDir, seriesDir } = await writeFixtureDirs(root);
    const inputs = {
      series: ref("train", seriesDir, "TRAINKEY"),
      tokens: ref("tokenize", tokensDir, "TOK"),
    };
    const T = fixture.heldout.seq_len;
    // 2 domains: 3 windows each hold at least 6·T tokens.
    const params = evaluateStep.params.parse({
      heldout_tokens: 6 * T - 1,
      step_every: 200,
      diversity: false,
    });
    await evaluateStep.run(ctx, params, inputs);
    const all = ctx.rows.eval_loss.filter((r) => r.domain === "all");
    assert.deepEqual(all.map((r) => r.step), [200], "only the checkpoint at a multiple of 200");
    assert.equal(all[0].n_tokens, 6 * T);
    const windows = ctx.rows.eval_windows;
    assert.equal(windows.length, 6);
    for (const domain of ["alpha", "beta"]) {
      const mine = windows.filter((w) => w.domain === domain);
      assert.deepEqual(mine.map((w) => w.window), [0, 1, 2]);
      const domainLoss = ctx.rows.eval_loss.find((r) => r.domain === domain)!;
      const mean = mine.reduce((s, w) => s + Number(w.loss), 0) / mine.length;
      close(mean, Number(domainLoss.loss), 1e-9);
      assert.ok(mine.every((w) => w.n_tokens === T && w.series_id === "TRAINKEY/original"));
    }
    await assert.rejects(
      () =>
        evaluateStep.run(
          ctx,
          evaluateStep.params.parse({ step_every: 7, diversity: false }),
          inputs,
        ),
      /no checkpoint at a multiple of step_every 7/,
    );
  } finally {
    await ctx.dispose();
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("windowsPerDomain and scoredCheckpoints", () => {
  assert.equal(windowsPerDomain(32768, 4, 64), 128);
  assert.equal(windowsPerDomain(32769, 4, 64), 129);
  assert.equal(windowsPerDomain(10, 4, 64), 1);
  const cks = [{ step: 300 }, { step: 100 }, { step: 200 }];
  assert.deepEqual(scoredCheckpoints(cks).map((c) => c.step), [100, 200, 300]);
  assert.deepEqual(scoredCheckpoints(cks, 100).map((c) => c.step), [100, 200, 300]);
  assert.deepEqual(scoredCheckpoints(cks, 150).map((c) => c.step), [300]);
});
