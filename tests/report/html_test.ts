// Tests of report.html and the table renderings: every figure is shown inline with the
// params that made it, text is escaped, and nothing is fetched from the network.
import assert from "node:assert/strict";
import {
  buildReport,
  escapeHtml,
  inlineSvg,
  tableToHtml,
  tableToMarkdown,
} from "../../report/html.ts";
import type { SeriesMeta, TableData } from "../../report/figures/index.ts";

const TABLE: TableData = {
  columns: ["series", "loss"],
  rows: [["LAWA k=5 | ν=2", 2.9171234567], ["original", null]],
  note: "final loss",
};

const SERIES: SeriesMeta = {
  ref: "ev1|tr1/original",
  instance_key: "ev1",
  series_id: "tr1/original",
  label: "original",
  method: "original",
  k: null,
  nu: null,
  lr: 0.006,
  batch_tokens: 16384,
  seed: 0,
  params: {},
  display: "original <raw>",
  group: "g-original",
  groupDisplay: "original <raw>",
  order: 0,
};

Deno.test("tableToMarkdown and tableToHtml format, align and escape cells", () => {
  assert.equal(
    tableToMarkdown(TABLE),
    "| series | loss |\n| --- | ---: |\n| LAWA k=5 \\| ν=2 | 2.91712 |\n| original | – |\n\nfinal loss\n",
  );
  const html = tableToHtml({ columns: ["a<b"], rows: [[1.5], ["<i>"]] });
  assert.match(html, /<th>a&lt;b<\/th>/);
  assert.match(html, /<td class="num">1.5<\/td>/);
  assert.match(html, /<td>&lt;i&gt;<\/td>/);
  assert.equal(escapeHtml(`"&'`), "&quot;&amp;'");
});

Deno.test("buildReport embeds every figure, its params and no network reference", () => {
  const svg = '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" ' +
    'height="10"><text>training step</text></svg>';
  const html = buildReport({
    title: "Report <1>",
    pipeline: "demo",
    figures: ["loss-vs-step", "final-table"].map((id) => ({
      id,
      title: `Figure ${id}`,
      paper: "Fig. 1",
      description: "what it shows",
      svg,
      files: [`${id}.png`, `${id}.svg`],
      table: id === "final-table" ? TABLE : undefined,
      series: [SERIES],
      instanceKeys: ["ev1"],
      note: id === "final-table" ? "left out: nothing" : undefined,
    })),
    skipped: [{ id: "lmc", reason: "no lmc table in the results" }],
    inputs: [
      { key: "ev1", step: "evaluate", node: "eval-main", params: { max_windows: 8 } },
      { key: "av1", step: "average", node: "lawa", params: { method: "lawa", k: 5, nu: 10 } },
      {
        key: "ev2",
        step: "evaluate",
        node: "eval-lawa",
        params: {},
        series: ["LAWA k=5 ν=10 · seed 0", "LAWA k=5 ν=10 · seed 1"],
      },
    ],
  });
  assert.match(html, /^<!DOCTYPE html>/);
  assert.match(html, /<title>Report &lt;1&gt;<\/title>/);
  for (const id of ["loss-vs-step", "final-table"]) {
    assert.ok(html.includes(`<section id="${id}">`));
    assert.ok(html.includes(`<a href="${id}.png">`));
  }
  assert.equal(html.match(/<svg style="max-width:100%;height:auto"/g)?.length, 2);
  assert.ok(!html.includes("<?xml"));
  assert.match(html, /original &lt;raw&gt;/);
  assert.match(html, /eval-main \(evaluate\)/);
  assert.match(html, /&quot;max_windows&quot;: 8/);
  assert.match(html, /left out: nothing/);
  assert.match(html, /<b>lmc<\/b>: no lmc table in the results/);
  assert.match(html, /2.91712/);
  assert.doesNotMatch(html, /<script|<link|(src|href)="https?:/i);
  // Figures open full size; the inputs are folded and say what each instance is.
  assert.match(html, /<a href="final-table\.svg" title="open the figure full size"><svg/);
  assert.match(html, /<details class="inputs"><summary><b>All inputs<\/b> \(3 instances/);
  assert.match(html, /<td>method=lawa k=5 ν=10<\/td>/);
  assert.match(html, /<td>LAWA k=5 ν=10 · seed 0; LAWA k=5 ν=10 · seed 1<\/td>/);
});

Deno.test("tables: a column's decimals are fixed, negatives get a true minus", () => {
  const md = tableToMarkdown({
    columns: ["series", "loss", "Δ"],
    rows: [["a", 3.1, -0.01234], ["b", 3.14159, 0.2]],
    decimals: [null, 4, 3],
  });
  assert.match(md, /\| a \| 3\.1000 \| −0\.012 \|/);
  assert.match(md, /\| b \| 3\.1416 \| 0\.200 \|/);
  const html = tableToHtml({ columns: ["loss"], rows: [["3.1000 ± 0.0100"]] });
  assert.match(html, /<td class="num">3\.1000 ± 0\.0100<\/td>/);
});

Deno.test("inlineSvg prefixes ids and their references with the figure id", () => {
  const svg = '<svg width="1"><defs><clipPath id="clip1"><rect/></clipPath></defs>' +
    '<g clip-path="url(#clip1)"><use href="#clip1"/></g></svg>';
  const out = inlineSvg(svg, "lmc");
  assert.match(out, /<clipPath id="lmc-clip1">/);
  assert.match(out, /clip-path="url\(#lmc-clip1\)"/);
  assert.match(out, /<use href="#lmc-clip1"\/>/);
  assert.doesNotMatch(out, /"clip1"|#clip1\)/);
});
