// End to end: a tiny copy of the main job (tests/fixtures/e2e/ablation-tiny.yaml, which
// extends configs/ablation-k-nu.yaml) run through the real command line, then checked
// the way a user would look at it: every figure exists, PNGs are real images with
// something drawn on them, SVGs carry their axis titles, DuckDB has exactly one loss
// row per (series, step, domain), every LAWA series has a paired interval at every step
// it shares with the original, results.md holds the claims with intervals and verdicts,
// and a second run executes nothing.
import assert from "node:assert/strict";
import { ResultsDb } from "../../pipeline/results.ts";
import { blankSvg, pngSize, svgSize, svgToPng } from "../../report/render.ts";

const CONFIG = new URL("../fixtures/e2e/ablation-tiny.yaml", import.meta.url).pathname;
const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const FIGURES = [
  "ablation-k",
  "ablation-nu",
  "final-table",
  "loss-vs-step",
  "train-loss",
  "per-domain",
  "spikes",
];

async function cli(artifacts: string): Promise<{ code: number; text: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, "run", CONFIG, "--artifacts", artifacts],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, text: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

Deno.test("ablation-k-nu (tiny): figures, report, one row per (series, step, domain), cached rerun", async () => {
  const artifacts = await Deno.makeTempDir({ prefix: "e2e-" });
  try {
    const first = await cli(artifacts);
    assert.equal(first.code, 0, first.text);
    assert.match(first.text, /15 ran, 0 cached, 0 failed/);

    // A derived config publishes under its own name, not its parent's.
    const dir = `${artifacts}/figures/ablation-tiny`;
    assert.ok(first.text.includes(`report: ${dir}/report.html`), first.text);
    for (const id of FIGURES) {
      for (const ext of ["vl.json", "svg", "png"]) {
        const st = await Deno.stat(`${dir}/${id}.${ext}`);
        assert.ok(st.size > 0, `${id}.${ext} is empty`);
      }
      const svg = await Deno.readTextFile(`${dir}/${id}.svg`);
      const png = await Deno.readFile(`${dir}/${id}.png`);
      const { width, height } = pngSize(png, `${id}.png`);
      const size = svgSize(svg);
      // A blank render of the same size compresses to almost nothing; a chart does not.
      const blank = await svgToPng(blankSvg(size.width, size.height), {
        scale: width / size.width,
      });
      assert.equal(pngSize(blank).height, height);
      assert.ok(png.length > 4 * blank.length, `${id}.png looks blank`);
      if (id !== "final-table" && id !== "spikes") {
        assert.match(svg, /training step/, `${id}.svg has no x-axis title`);
      }
      assert.match(svg, /loss/, `${id}.svg has no loss axis or column`);
    }
    const report = await Deno.readTextFile(`${dir}/report.html`);
    for (const id of FIGURES) assert.ok(report.includes(id), `report lacks ${id}`);
    assert.doesNotMatch(report, /<script[^>]+src="https?:/);

    const db = new ResultsDb(artifacts);
    const dup = await db.query(
      `SELECT series_id, step, domain, count(*) AS n FROM eval_loss
       GROUP BY ALL HAVING count(*) <> 1`,
    );
    assert.deepEqual(dup, []);
    const perSeries = await db.query(
      `SELECT series_id, count(DISTINCT step) AS steps, count(DISTINCT domain) AS domains,
              count(*) AS n FROM eval_loss GROUP BY series_id ORDER BY series_id`,
    );
    // The original series and 4 LAWA settings, each scored on 2 domains plus 'all'.
    assert.equal(perSeries.length, 5);
    for (const s of perSeries) {
      assert.equal(Number(s.domains), 3);
      assert.equal(Number(s.n), Number(s.steps) * 3);
    }
    const original = await db.query(
      `SELECT count(DISTINCT e.step) AS steps FROM eval_loss e JOIN series s USING (series_id)
       WHERE s.method = 'original'`,
    );
    assert.equal(Number(original[0].steps), 6); // 24 steps, scored every 4 (step_every)

    // Every window of every scored checkpoint is kept, and sums to the checkpoint's loss.
    const windows = await db.query(
      `SELECT w.series_id, w.step, count(*) AS n, avg(w.loss) AS mean, any_value(e.loss) AS loss,
              any_value(e.n_tokens) AS tokens, sum(w.n_tokens) AS window_tokens
       FROM eval_windows w JOIN eval_loss e
         ON e.series_id = w.series_id AND e.step = w.step AND e.domain = 'all'
       GROUP BY ALL`,
    );
    assert.ok(windows.length > 0);
    for (const w of windows) {
      assert.equal(Number(w.n), 16, "8 windows in each of 2 domains");
      assert.equal(Number(w.window_tokens), Number(w.tokens));
      assert.ok(Math.abs(Number(w.mean) - Number(w.loss)) < 1e-9, JSON.stringify(w));
    }
    // One interval per LAWA series and step it shares with the original, bracketing its gap.
    const gaps = await db.query(
      `SELECT g.series_id, g.step, g.gap, g.lower, g.upper, g.n_windows, g.n_seeds,
              l.loss - o.loss AS direct
       FROM gap_intervals g
       JOIN eval_loss l ON l.series_id = g.series_id AND l.step = g.step AND l.domain = 'all'
       JOIN series os ON os.method = 'original'
       JOIN eval_loss o ON o.series_id = os.series_id AND o.step = g.step AND o.domain = 'all'`,
    );
    const lawaPoints = await db.query(
      `SELECT count(*) AS n FROM eval_loss e JOIN series s USING (series_id)
       WHERE s.method = 'lawa' AND e.domain = 'all'`,
    );
    assert.equal(gaps.length, Number(lawaPoints[0].n));
    for (const g of gaps) {
      assert.ok(Math.abs(Number(g.gap) - Number(g.direct)) < 1e-9, JSON.stringify(g));
      assert.ok(Number(g.lower) <= Number(g.gap) && Number(g.gap) <= Number(g.upper));
      assert.equal(Number(g.n_windows), 16);
      assert.equal(Number(g.n_seeds), 1);
    }
    const results = await Deno.readTextFile(`${dir}/results.md`);
    assert.match(
      results,
      /\| paper's claim \| what this run shows \| gap \[95% interval\] \| verdict \|/,
    );
    assert.match(results, /At 10× LR, LAWA lowers held-out loss/);
    assert.match(results, /\| (not )?reproduced \|/);
    assert.match(results, /seed 0, commit `([0-9a-f]{40}|unknown)`/);

    const second = await cli(artifacts);
    assert.equal(second.code, 0, second.text);
    assert.match(second.text, /0 ran, 15 cached, 0 failed/);
  } finally {
    await Deno.remove(artifacts, { recursive: true });
  }
});
