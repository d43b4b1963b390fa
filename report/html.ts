// report.html: one self-contained page with every figure and table of a pipeline and
// the params that made each one. The SVGs are embedded inline (no Vega runtime, no
// script at all), so the page works offline and fetches nothing.
// Also the markdown / HTML renderings of tables, written beside the figures.
import type { Cell, SeriesMeta, TableData } from "./figures/index.ts";

/** One upstream instance the plot read, as shown under each figure. */
export interface ReportInput {
  key: string;
  step: string;
  node: string;
  params: Record<string, unknown>;
  /** The series it evaluated, by label (e.g. "LAWA k=5 ν=4 · seed 0"), when known. */
  series?: string[];
}

export interface ReportFigure {
  id: string;
  title: string;
  paper: string;
  description: string;
  /** SVG text of the chart (embedded inline). */
  svg?: string;
  /** File names beside report.html (spec, svg, png, csv, tables). */
  files: string[];
  table?: TableData;
  series: SeriesMeta[];
  /** Instance keys of the result rows the figure read. */
  instanceKeys: string[];
  /** What the figure leaves out, if anything. */
  note?: string;
}

export interface ReportSpec {
  title: string;
  pipeline: string;
  figures: ReportFigure[];
  skipped: { id: string; reason: string }[];
  inputs: ReportInput[];
}

export function escapeHtml(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}

/** A cell as text: numbers with the column's decimals (else up to 6 significant digits). */
function formatCell(v: Cell, decimals?: number | null): string {
  if (v === null) return "–";
  if (typeof v === "number" && decimals !== undefined && decimals !== null) {
    return v.toFixed(decimals).replace(/^-/, "−");
  }
  if (typeof v === "number" && !Number.isInteger(v)) return String(Number(v.toPrecision(6)));
  return String(v);
}

/** A column is right-aligned when its cells are numbers (or "mean ± sd" text). */
function isNumericColumn(t: TableData, i: number): boolean {
  const first = t.rows.map((r) => r[i]).find((c) => c !== null);
  return typeof first === "number" || (typeof first === "string" && /^[−-]?\d/.test(first));
}

/** A GitHub-flavoured markdown table. */
export function tableToMarkdown(t: TableData): string {
  const esc = (s: string) => s.replaceAll("|", "\\|");
  const lines = [
    `| ${t.columns.map(esc).join(" | ")} |`,
    `|${t.columns.map((_, i) => (isNumericColumn(t, i) ? " ---: " : " --- ")).join("|")}|`,
    ...t.rows.map((r) => `| ${r.map((c, i) => esc(formatCell(c, t.decimals?.[i]))).join(" | ")} |`),
  ];
  return lines.join("\n") + "\n" + (t.note ? `\n${t.note}\n` : "");
}

/** An HTML table (numbers right-aligned). */
export function tableToHtml(t: TableData): string {
  const head = t.columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("");
  const numeric = (c: Cell) =>
    typeof c === "number" || (typeof c === "string" && /^[−-]?\d/.test(c));
  const body = t.rows.map((r) =>
    "<tr>" + r.map((c, i) =>
      `<td${numeric(c) ? ' class="num"' : ""}>${escapeHtml(formatCell(c, t.decimals?.[i]))}</td>`
    ).join("") + "</tr>"
  ).join("\n");
  const note = t.note ? `<p class="note">${escapeHtml(t.note)}</p>` : "";
  return `<table>\n<thead><tr>${head}</tr></thead>\n<tbody>\n${body}\n</tbody>\n</table>${note}`;
}

/**
 * An SVG fit for inlining: no XML prolog, scales with the page, and its element ids
 * (clip paths, gradients) prefixed with the figure id so figures on one page cannot
 * refer to each other's definitions.
 */
export function inlineSvg(svg: string, figureId: string): string {
  return svg.replace(/^<\?xml[^>]*>\s*/, "")
    .replace(/<svg\b/, '<svg style="max-width:100%;height:auto"')
    .replace(/\bid="([^"]+)"/g, `id="${figureId}-$1"`)
    .replace(/url\(#([^)]+)\)/g, `url(#${figureId}-$1)`)
    .replace(/href="#([^"]+)"/g, `href="#${figureId}-$1"`);
}

function seriesTable(series: SeriesMeta[]): string {
  if (series.length === 0) return "";
  return tableToHtml({
    columns: [
      "series",
      "method",
      "k",
      "ν (steps)",
      "lr",
      "batch tokens",
      "seed",
      "series id",
      "evaluated by",
    ],
    rows: series.map((s) => [
      s.display,
      s.method,
      s.k,
      s.nu,
      s.lr,
      s.batch_tokens,
      s.seed,
      s.series_id,
      s.instance_key.slice(0, 12),
    ]),
  });
}

/** What an instance is, in a few words: the series it evaluated (method, k, ν, lr, seed). */
function whatItIs(input: ReportInput | undefined): string {
  if (!input) return "";
  if (input.series?.length) return input.series.join("; ");
  // Otherwise its short params: the k/ν of an average, the lr of a train, ...
  const bits = Object.entries(input.params)
    .map(([k, v]) => [k === "nu" ? "ν" : k, typeof v === "string" ? v : JSON.stringify(v)] as const)
    .filter(([, v]) => v !== undefined && v.length <= 32)
    .map(([k, v]) => `${k}=${v}`);
  return bits.slice(0, 6).join(" ");
}

function inputsFor(keys: string[], inputs: ReportInput[]): string {
  const rows = keys.map((k) => {
    const input = inputs.find((i) => i.key === k);
    const params = input ? JSON.stringify(input.params, null, 1) : "(not a direct input)";
    return `<tr><td><code>${escapeHtml(k.slice(0, 12))}</code></td>` +
      `<td>${escapeHtml(input ? `${input.node} (${input.step})` : "")}</td>` +
      `<td>${escapeHtml(whatItIs(input))}</td>` +
      `<td><details><summary>params</summary><pre>${escapeHtml(params)}</pre></details></td></tr>`;
  });
  return `<table><thead><tr><th>instance</th><th>node (step)</th><th>what it is</th>` +
    `<th>params</th></tr></thead><tbody>${rows.join("\n")}</tbody></table>`;
}

function figureSection(f: ReportFigure, inputs: ReportInput[]): string {
  const files = f.files.map((n) => `<a href="${escapeHtml(n)}">${escapeHtml(n)}</a>`).join(" · ");
  return `<section id="${escapeHtml(f.id)}">
<h2>${escapeHtml(f.title)} <small>${escapeHtml(f.id)} · paper: ${escapeHtml(f.paper)}</small></h2>
<p>${escapeHtml(f.description)}</p>
${
    f.svg
      ? `<figure><a href="${escapeHtml(f.id)}.svg" title="open the figure full size">${
        inlineSvg(f.svg, f.id)
      }</a><figcaption>Click the figure to open it full size.</figcaption></figure>`
      : ""
  }
${f.note ? `<p class="note">${escapeHtml(f.note)}</p>` : ""}
${
    f.table
      ? tableToHtml({ ...f.table, note: f.table.note === f.description ? undefined : f.table.note })
      : ""
  }
<details><summary>What made this figure</summary>
<h3>Series</h3>
${seriesTable(f.series) || "<p>(no series metadata)</p>"}
<h3>Result rows from these instances</h3>
${inputsFor(f.instanceKeys, inputs)}
</details>
<p class="files">${files}</p>
</section>`;
}

const STYLE =
  `body{font-family:"DejaVu Sans",sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;border-top:1px solid #ddd;padding-top:1em}
h2 small{font-weight:normal;color:#777;font-size:.75em}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}
td,th{border:1px solid #ddd;padding:2px 6px;vertical-align:top}td.num{text-align:right}
pre{margin:0;font-size:.9em;white-space:pre-wrap}.note,.files{color:#666;font-size:.85em}
nav a{margin-right:.8em}figure{margin:.5em 0}figcaption{color:#888;font-size:.75em}
figure a{display:block;overflow-x:auto}details.inputs{margin-top:2em;border-top:1px solid #ddd;padding-top:1em}`;

/** The whole report page. */
export function buildReport(spec: ReportSpec): string {
  const nav = spec.figures.map((f) => `<a href="#${escapeHtml(f.id)}">${escapeHtml(f.id)}</a>`)
    .join("\n");
  const skipped = spec.skipped.length === 0 ? "" : `<h2>Figures without data</h2><ul>` +
    spec.skipped.map((s) => `<li><b>${escapeHtml(s.id)}</b>: ${escapeHtml(s.reason)}</li>`)
      .join("") +
    `</ul>`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(spec.title)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>${escapeHtml(spec.title)}</h1>
<p>Pipeline <b>${
    escapeHtml(spec.pipeline)
  }</b>: ${spec.figures.length} figures from ${spec.inputs.length} upstream instances.</p>
<nav>${nav}</nav>
${spec.figures.map((f) => figureSection(f, spec.inputs)).join("\n")}
${skipped}
<details class="inputs"><summary><b>All inputs</b> (${spec.inputs.length} instances; which k/ν each is)</summary>
${inputsFor(spec.inputs.map((i) => i.key), spec.inputs)}
</details>
</body>
</html>
`;
}
