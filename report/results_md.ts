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

/** Where a README holds the copied table. */
export const BEGIN_MARKER = "<!-- results.md: begin (copied by `deno task readme-results`) -->";
export const END_MARKER = "<!-- results.md: end -->";

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

/** `text` with what lies between the markers replaced by `inner` (markers kept). */
export function replaceBetweenMarkers(text: string, inner: string): string {
  const begin = text.indexOf(BEGIN_MARKER);
  const end = text.indexOf(END_MARKER);
  if (begin < 0 || end < 0 || end < begin) {
    throw new Error(
      `the README has no "${BEGIN_MARKER}" ... "${END_MARKER}" block to copy results into`,
    );
  }
  return text.slice(0, begin + BEGIN_MARKER.length) + "\n" + inner.trimEnd() + "\n" +
    text.slice(end);
}
