// Benchmark of the figure path at the size of the default ablation (original + 12 LAWA
// series, 51 checkpoints, 3 domains + 'all'): Vega-Lite -> SVG (the baseline), SVG -> PNG
// with resvg at 1x and 2x, and the whole plot step (every figure + report) against it.
import { fakeContext } from "../tests/helpers/fake_ctx.ts";
import { PlotParams, plotStep } from "../steps/plot.ts";
import { evaluateStep } from "../steps/evaluate.ts";
import { figureById, type FigureResult, FigureScope } from "../report/figures/index.ts";
import { BASE_CONFIG, svgToPng, vegaLiteToSvg } from "../report/render.ts";
import type { InputRef, TableSchema } from "../pipeline/step.ts";

const TABLES: Record<string, TableSchema> = { ...evaluateStep.tables };

async function timed(label: string, repeats: number, fn: () => Promise<unknown>) {
  await fn(); // warm-up
  const ms: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  ms.sort((a, b) => a - b);
  return { label, min: ms[0], median: ms[Math.floor(ms.length / 2)] };
}

const ctx = await fakeContext({ tables: TABLES }, { key: "eval-bench" });
interface BenchSeries {
  id: string;
  label: string;
  method: string;
  k: number | null;
  nu: number | null;
}
const series: BenchSeries[] = [
  { id: "train/original", label: "original", method: "original", k: null, nu: null },
];
for (const k of [2, 5, 10]) {
  for (const nu of [1, 2, 5, 10]) {
    series.push({ id: `avg${k}-${nu}/.`, label: `LAWA k=${k} ν=${nu}`, method: "lawa", k, nu });
  }
}
ctx.results.append(
  "series",
  series.map((s) => ({
    series_id: s.id,
    label: s.label,
    method: s.method,
    k: s.k,
    nu: s.nu,
    lr: 6e-3,
    batch_tokens: 16384,
    params: "{}",
  })),
);
const evalRows = [];
for (const [i, s] of series.entries()) {
  for (let step = 0; step <= 1000; step += 20) {
    for (const domain of ["all", "brown", "sotu", "moby"]) {
      const loss = 3 + 6 * Math.exp(-step / 200) - 0.005 * i + (domain === "all" ? 0 : 0.1);
      evalRows.push({
        series_id: s.id,
        step,
        tokens: step * 16384,
        domain,
        loss,
        ppl: Math.exp(loss),
        n_tokens: 4096,
      });
    }
  }
}
ctx.results.append("eval_loss", evalRows);
const inputs: InputRef[] = [{
  key: "eval-bench",
  step: "evaluate",
  node: "evaluate",
  params: {},
  dir: ".",
}];

const scope = new FigureScope((sql) => ctx.results.query(sql), inputs);
const figure = await figureById("ablation-k").build(scope, true) as FigureResult;
const spec = { ...figure.spec, config: BASE_CONFIG };
const svg = await vegaLiteToSvg(spec);
console.log(
  `data: ${series.length} series x 51 checkpoints x 4 domains = ${evalRows.length} eval rows; ` +
    `ablation-k chart has ${figure.rows.length} points, SVG ${(svg.length / 1024).toFixed(0)} KiB`,
);

const repeats = 5;
const results = [
  await timed("ablation-k: Vega-Lite -> SVG (baseline)", repeats, () => vegaLiteToSvg(spec)),
  await timed("ablation-k: SVG -> PNG 1x (resvg)", repeats, () => svgToPng(svg, { scale: 1 })),
  await timed("ablation-k: SVG -> PNG 2x (resvg)", repeats, () => svgToPng(svg, { scale: 2 })),
  await timed(
    "ablation-k: query + build data",
    repeats,
    () =>
      figureById("ablation-k").build(
        new FigureScope((sql) => ctx.results.query(sql), inputs),
        true,
      ),
  ),
  await timed("plot step: every figure with data + report", 3, async () => {
    const out = await Deno.makeTempDir({ prefix: "plot-bench-" });
    await plotStep.run({ ...ctx, outDir: out }, PlotParams.parse({ pipeline: "bench" }), {
      evals: inputs,
    });
    await Deno.remove(out, { recursive: true });
  }),
];
const base = results[0].median;
for (const r of results) {
  console.log(
    `${r.label.padEnd(46)} min ${r.min.toFixed(1).padStart(7)} ms  median ${
      r.median.toFixed(1).padStart(7)
    } ms  ratio ${(r.median / base).toFixed(2)}x baseline`,
  );
}
await ctx.dispose();
