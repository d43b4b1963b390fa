// results.md: the claim-by-claim verdict of one pipeline run, as Markdown, so that what a
// README or a closing note quotes is what the pipeline wrote, never numbers typed by
// hand. Pure rendering: steps/results.ts computes the claims and intervals; this module
// only lays them out (and `replaceBetweenMarkers` copies the table into a README).

/** A gap with its interval (nats/token). */
export interface IntervalText {
  gap: number;
  lower: number;
  upper: number;
}

export type Verdict = "reproduced" | "not reproduced";

export interface ClaimRow {
  /** The paper's claim, short, with its figure. */
  claim: string;
  /** What this run shows, in words. */
  shows: string;
  /** The statistic the verdict rests on, with its interval (null: not measurable here). */
  interval: IntervalText | null;
  /** What the interval must do for the claim to count as reproduced. */
  needs: string;
  verdict: Verdict | null;
}

export interface SeriesRow {
  label: string;
  lr: number | null;
  preset: string | null;
  stepsTotal: number | null;
  seeds: string;
  span: string;
  interval: IntervalText;
}

export interface ResultsDoc {
  pipeline: string;
  /** The config file, as a user names it (`configs/ablation-k-nu.yaml`). */
  config: string;
  seeds: number[];
  commit: string;
  /** One-line setup: model, run length, batch, LRs, held-out tokens. */
  setup: string;
  claims: ClaimRow[];
  series: SeriesRow[];
}

/** The markers around a README's copy of one pipeline's results.md. */
export function markers(pipeline: string): { begin: string; end: string } {
  return {
    begin: `<!-- results.md of ${pipeline}: begin (copied by \`deno task readme-results\`) -->`,
    end: `<!-- results.md of ${pipeline}: end -->`,
  };
}

/** Pipelines whose results.md a text has a marked block for, in order. */
export function markedPipelines(text: string): string[] {
  return [...text.matchAll(/<!-- results\.md of ([A-Za-z0-9._-]+): begin/g)].map((m) => m[1]);
}

/** A loss difference with a fixed number of decimals and an explicit sign. */
export function signed(x: number, digits = 4): string {
  const text = x.toFixed(digits);
  if (!text.startsWith("-")) return `+${text}`;
  return Number(text) === 0 ? `+${text.slice(1)}` : text;
}

export function intervalText(i: IntervalText | null): string {
  if (!i) return "—";
  return `${signed(i.gap)} [${signed(i.lower)}, ${signed(i.upper)}]`;
}

function cell(text: string): string {
  return text.replaceAll("|", "\\|").replaceAll("\n", " ");
}

/** The Markdown document. */
export function renderResults(doc: ResultsDoc): string {
  const lines = [
    `# Results: ${doc.pipeline}`,
    "",
    `Written by the pipeline, not by hand: \`${doc.config}\`, seed${
      doc.seeds.length === 1 ? "" : "s"
    } ${doc.seeds.join(", ") || "unknown"}, commit \`${doc.commit}\`.`,
    "",
    doc.setup,
    "",
    "Gaps are held-out loss (nats/token) of the first series minus the second, on the same " +
    "windows at the same steps, with a 95% paired-bootstrap interval over evaluation " +
    "windows (and over seeds when there are several). A claim counts as reproduced only " +
    "when its interval excludes 0 on the claimed side.",
    "",
    "| paper's claim | what this run shows | gap [95% interval] | verdict |",
    "|---|---|---|---|",
    ...doc.claims.map((c) =>
      `| ${cell(c.claim)} | ${cell(c.shows)} | ${intervalText(c.interval)} | ${
        c.verdict ?? "not measured"
      } |`
    ),
  ];
  if (doc.series.length) {
    lines.push(
      "",
      "Every averaged series against its own original run (mean over the evaluated steps " +
        "in the span):",
      "",
      "| series | LR | model | steps | seeds | span | gap [95% interval] | interval excludes 0 |",
      "|---|---|---|---|---|---|---|---|",
      ...doc.series.map((s) =>
        `| ${cell(s.label)} | ${s.lr ?? "—"} | ${s.preset ?? "—"} | ${s.stepsTotal ?? "—"} | ${
          cell(s.seeds)
        } | ${s.span} | ${intervalText(s.interval)} | ${
          s.interval.upper < 0 ? "yes (lower)" : s.interval.lower > 0 ? "yes (higher)" : "no"
        } |`
      ),
    );
  }
  return lines.join("\n") + "\n";
}

/** `text` with the block of `pipeline` replaced by `results` (its title line dropped). */
export function replaceBetweenMarkers(text: string, pipeline: string, results: string): string {
  const { begin, end } = markers(pipeline);
  const from = text.indexOf(begin);
  const to = text.indexOf(end);
  if (from < 0 || to < 0 || to < from) {
    throw new Error(`the README has no "${begin}" ... "${end}" block`);
  }
  const body = results.replace(/^# [^\n]*\n+/, "").trimEnd();
  return text.slice(0, from + begin.length) + "\n\n" + body + "\n\n" + text.slice(to);
}
