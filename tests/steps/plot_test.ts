// Tests of the plot step on synthetic results (tests/fixtures/plot): every figure's files
// exist, PNGs are real images with visible text, SVGs carry axis titles, report.html
// shows every figure and fetches nothing, and only the given instances are plotted.
import assert from "node:assert/strict";
import { PlotParams, plotStep, publishFigures } from "../../steps/plot.ts";
import { FIGURE_IDS } from "../../report/figures/index.ts";
import {
  blankSvg,
  inkPixels,
  pngSize,
  stripSvgText,
  svgSize,
  svgToPixels,
  svgToPng,
} from "../../report/render.ts";
import { contextWithRows, fixtureInputs, readFixture } from "../fixtures/plot/load.ts";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("plot: every catalogue figure is drawn from the fixture results", async () => {
  const fixture = await readFixture();
  const ctx = await contextWithRows(fixture.tables);
  try {
    const params = PlotParams.parse({ pipeline: "fixture", png_scale: 1 });
    await plotStep.run(ctx, params, { evals: fixtureInputs() });
    const index = JSON.parse(await Deno.readTextFile(`${ctx.outDir}/figures.json`));
    assert.deepEqual(index.skipped, []);
    assert.deepEqual(index.figures.map((f: { id: string }) => f.id), FIGURE_IDS);

    const report = await Deno.readTextFile(`${ctx.outDir}/report.html`);
    for (const id of FIGURE_IDS) {
      for (const ext of ["vl.json", "svg", "png", "csv"]) {
        assert.ok(await exists(`${ctx.outDir}/${id}.${ext}`), `${id}.${ext} missing`);
      }
      const svg = await Deno.readTextFile(`${ctx.outDir}/${id}.svg`);
      const png = await Deno.readFile(`${ctx.outDir}/${id}.png`);
      const { width, height } = pngSize(png, `${id}.png`);
      const size = svgSize(svg);
      assert.equal(width, Math.round(size.width));
      assert.equal(height, Math.round(size.height));
      const blank = await svgToPng(blankSvg(size.width, size.height), { scale: 1 });
      assert.ok(png.length > blank.length, `${id}.png is no larger than a blank image`);
      assert.ok(report.includes(`<section id="${id}">`), `report lacks ${id}`);
      // Only the given instances are plotted.
      assert.ok(!svg.includes("DECOY"), `${id} shows the decoy instance`);
    }
    // Axis titles are in the SVGs as text.
    const lossSvg = await Deno.readTextFile(`${ctx.outDir}/loss-vs-step.svg`);
    assert.match(lossSvg, /<text[^>]*>training step<\/text>/);
    assert.match(lossSvg, /<text[^>]*>validation loss \(nats\/token\)<\/text>/);
    const lmcSvg = await Deno.readTextFile(`${ctx.outDir}/lmc.svg`);
    assert.match(lmcSvg, /α \(weight of checkpoint a\)/);

    // Text is drawn: the render has more dark pixels than the same SVG without its text.
    const withText = await svgToPixels(lossSvg, { scale: 1 });
    const noText = await svgToPixels(stripSvgText(lossSvg), { scale: 1 });
    assert.ok(inkPixels(withText.rgba) > inkPixels(noText.rgba) + 500);

    // Tables and report.
    assert.ok(await exists(`${ctx.outDir}/tables/final-table.md`));
    assert.ok(await exists(`${ctx.outDir}/tables/zeroshot.html`));
    assert.doesNotMatch(report, /<script[^>]*src=/i);
    assert.doesNotMatch(report, /(src|href)="https?:/i);
    assert.doesNotMatch(report, /@import|url\(/i);
    assert.ok(report.includes("evaluate-evalA"), "report lacks the input node names");
    assert.ok(report.includes("&quot;tolerances&quot;"), "report lacks the input params");

    // train-loss reads the train runs reachable from the series, not the decoy's.
    const trainCsv = await Deno.readTextFile(`${ctx.outDir}/train-loss.csv`);
    for (const k of ["trainA", "trainB", "trainC"]) assert.ok(trainCsv.includes(k), k);
    assert.ok(!trainCsv.includes("trainZ"));
    assert.ok(ctx.progressEvents.some((e) => e.startsWith("start plot 13")));
  } finally {
    await ctx.dispose();
  }
});

Deno.test("plot: seeds and intervals read at a glance: one legend, units, bands, linked SVGs", async () => {
  const ctx = await contextWithRows((await readFixture()).tables);
  try {
    const params = PlotParams.parse({
      pipeline: "fixture",
      png_scale: 1,
      figures: ["ablation-k", "loss-vs-step", "final-table", "spikes", "train-loss"],
    });
    await plotStep.run(ctx, params, { evals: fixtureInputs({ seeds: true, intervals: true }) });
    const svg = (id: string) => Deno.readTextFile(`${ctx.outDir}/${id}.svg`);
    for (const id of ["ablation-k", "loss-vs-step", "train-loss"]) {
      const text = await svg(id);
      assert.equal(text.match(/role-legend"/g)?.length, 1, `${id}: one legend`);
      assert.match(text, />training step<\/text>/, `${id}: x axis with unit`);
    }
    const ablation = await svg("ablation-k");
    assert.match(ablation, />validation loss \(nats\/token\)<\/text>/);
    assert.match(ablation, />gap to the original \(nats\/token\)<\/text>/);
    assert.match(await svg("train-loss"), />training loss \(nats\/token\)<\/text>/);
    // Spike bars carry the step they happened at.
    assert.match(await svg("spikes"), />step 300<\/text>/);

    const report = await Deno.readTextFile(`${ctx.outDir}/report.html`);
    assert.match(report, /<a href="ablation-k\.svg"[^>]*><svg/);
    assert.match(report, /<details class="inputs"><summary><b>All inputs<\/b>/);
    assert.match(report, /LAWA k=5 ν=2 · seed 1/);
    assert.match(report, /mean over seeds; the band spans min–max over seeds/);
    assert.match(report, /gap \[95% CI\]/);
  } finally {
    await ctx.dispose();
  }
});

Deno.test("plot: figures without data are skipped with a notice unless requested", async () => {
  const fixture = await readFixture();
  const { eval_loss, series } = fixture.tables;
  const ctx = await contextWithRows({ eval_loss, series });
  try {
    await plotStep.run(ctx, PlotParams.parse({ pipeline: "partial" }), {
      evals: fixtureInputs(),
    });
    const index = JSON.parse(await Deno.readTextFile(`${ctx.outDir}/figures.json`));
    const skipped = index.skipped.map((s: { id: string }) => s.id).sort();
    assert.deepEqual(skipped, ["diversity", "lmc", "savings", "spikes", "train-loss", "zeroshot"]);
    assert.ok(ctx.progressEvents.some((e) => e.includes("skipped lmc: no lmc rows")));
    assert.ok(await exists(`${ctx.outDir}/loss-vs-step.png`));
    assert.ok(!(await exists(`${ctx.outDir}/lmc.png`)));
    const report = await Deno.readTextFile(`${ctx.outDir}/report.html`);
    assert.match(report, /Figures without data/);

    await assert.rejects(
      () => plotStep.run(ctx, PlotParams.parse({ figures: ["lmc"] }), { evals: fixtureInputs() }),
      /figure "lmc" was requested but has no data: no lmc rows for the inputs/,
    );
  } finally {
    await ctx.dispose();
  }
});

Deno.test("plot: params reject unknown figures and bad pipeline names; evals must not be empty", async () => {
  assert.throws(
    () => PlotParams.parse({ figures: ["loss-vs-stpe"] }),
    /unknown figure .{0,2}loss-vs-stpe/,
  );
  assert.throws(() => PlotParams.parse({ pipeline: "../x" }));
  assert.deepEqual(PlotParams.parse({}), { pipeline: "pipeline", png_scale: 2 });
  const ctx = await contextWithRows({});
  try {
    await assert.rejects(
      () => plotStep.run(ctx, PlotParams.parse({}), { evals: [] }),
      /input "evals" is empty/,
    );
  } finally {
    await ctx.dispose();
  }
});

Deno.test("publishFigures replaces the destination with a copy of the outputs", async () => {
  const src = await Deno.makeTempDir();
  const root = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${src}/tables`);
    await Deno.writeTextFile(`${src}/a.svg`, "<svg/>");
    await Deno.writeTextFile(`${src}/tables/t.md`, "| x |");
    const dest = `${root}/figures/demo`;
    await Deno.mkdir(dest, { recursive: true });
    await Deno.writeTextFile(`${dest}/stale.png`, "old");
    await publishFigures(src, dest);
    assert.equal(await Deno.readTextFile(`${dest}/a.svg`), "<svg/>");
    assert.equal(await Deno.readTextFile(`${dest}/tables/t.md`), "| x |");
    assert.ok(!(await exists(`${dest}/stale.png`)));
    assert.deepEqual([...Deno.readDirSync(`${root}/figures`)].map((e) => e.name), ["demo"]);
  } finally {
    await Deno.remove(src, { recursive: true });
    await Deno.remove(root, { recursive: true });
  }
});
