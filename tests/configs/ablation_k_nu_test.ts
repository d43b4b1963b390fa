// End to end: a tiny copy of the main job (tests/fixtures/e2e/ablation-tiny.yaml, which
// extends configs/ablation-k-nu.yaml) run through the real command line, then checked
// the way a user would look at it: every figure exists, PNGs are real images with
// something drawn on them, SVGs carry their axis titles, DuckDB has exactly one loss
// row per (series, step, domain), and a second run executes nothing.
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
    assert.match(first.text, /13 ran, 0 cached, 0 failed/);

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
    assert.equal(Number(original[0].steps), 12); // 24 steps, a checkpoint every 2

    const second = await cli(artifacts);
    assert.equal(second.code, 0, second.text);
    assert.match(second.text, /0 ran, 13 cached, 0 failed/);
  } finally {
    await Deno.remove(artifacts, { recursive: true });
  }
});
