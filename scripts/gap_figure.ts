// The scale study's figure: for each cell of the grid (model preset x run length), the
// gap of LAWA to its own original at every evaluated step, with its 95% paired-bootstrap
// interval as a band, at the 10x and at the tuned learning rate (`gap_intervals`).
//
//   deno run -A scripts/gap_figure.ts --artifacts DIR --out docs/scale-study.png [--nu 5] [--key K]
//
// K: the intervals instance (default: the one that finished last).
import { parseArgs } from "node:util";
import { ResultsDb } from "../pipeline/results.ts";
import { svgToPng, vegaLiteToSvg } from "../report/render.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    artifacts: { type: "string" },
    out: { type: "string" },
    nu: { type: "string" },
    key: { type: "string" },
  },
});
const artifacts = values.artifacts ?? Deno.env.get("LAWA_ARTIFACTS") ?? "artifacts";
const out = values.out ?? "scale-study.png";
const nu = Number(values.nu ?? 5);
const db = new ResultsDb(artifacts);
// The rows of one intervals instance: --key, else the one that finished last.
const key = values.key ?? String(
  (await db.query(
    `SELECT key FROM runs WHERE step_kind = 'intervals' AND status = 'ok'
     ORDER BY started DESC LIMIT 1`,
  ))[0]?.key ?? "",
);
// Several seeds: their pooled rows (seed NULL); one seed: its own rows.
const pooled = Number(
  (await db.query(
    `SELECT count(*) AS n FROM gap_intervals WHERE instance_key = ? AND seed IS NULL`,
    [key],
  ))[0]?.n ?? 0,
) > 0;
const rows = await db.query(
  `SELECT DISTINCT preset, steps_total, lr, step, gap, lower, upper, n_windows, n_seeds
   FROM gap_intervals WHERE instance_key = ? AND method = 'lawa' AND k = 5 AND nu = ?
     AND seed IS ${pooled ? "" : "NOT "}NULL
   ORDER BY preset, steps_total, lr, step`,
  [key, nu],
);
if (rows.length === 0) {
  console.error(`error: no LAWA k=5 ν=${nu} rows in ${artifacts}/results.duckdb gap_intervals`);
  Deno.exit(1);
}
const values_ = rows.map((r) => ({
  cell: `${r.preset}, ${r.steps_total} steps`,
  lr: `LR ${Number(r.lr)}`,
  step: Number(r.step),
  gap: Number(r.gap),
  lower: Number(r.lower),
  upper: Number(r.upper),
}));
const spec = {
  $schema: "https://vega.github.io/schema/vega-lite/v6.json",
  title: {
    text: [
      `LAWA k=5 ν=${nu} minus its own original`,
      "held-out loss gap, 95% paired-bootstrap band" +
      (pooled ? `, ${Number(rows[0]?.n_seeds)} seeds pooled` : ""),
    ],
    anchor: "start",
  },
  data: { values: values_ },
  facet: { column: { field: "cell", type: "nominal", title: null } },
  spec: {
    width: 220,
    height: 180,
    layer: [
      {
        mark: { type: "rule", color: "black", strokeDash: [4, 3] },
        encoding: { y: { datum: 0 } },
      },
      {
        mark: { type: "area", opacity: 0.25 },
        encoding: {
          x: { field: "step", type: "quantitative", title: "training step" },
          y: { field: "lower", type: "quantitative", title: "gap (nats/token)" },
          y2: { field: "upper" },
          color: { field: "lr", type: "nominal", title: null },
        },
      },
      {
        mark: { type: "line", point: true },
        encoding: {
          x: { field: "step", type: "quantitative" },
          y: { field: "gap", type: "quantitative" },
          color: { field: "lr", type: "nominal", title: null },
        },
      },
    ],
  },
  resolve: { scale: { y: "independent" } },
};
// deno-lint-ignore no-explicit-any
const svg = await vegaLiteToSvg(spec as any);
await Deno.writeFile(out, await svgToPng(svg, { scale: 2 }));
console.log(`${out}: ${values_.length} points`);
