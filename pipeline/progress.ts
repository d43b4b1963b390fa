// What the user sees while a pipeline runs, on stderr. On a terminal: a live block,
// one line per running instance (label, elapsed, the step's own bar: label, done/total,
// rate, info), redrawn a few times a second, with events scrolling above it. Elsewhere
// (CI, tests, a log file): one plain line per event, no redraws.
import type { Progress } from "./step.ts";

export type InstanceStatus = "cached" | "running" | "ok" | "failed" | "skipped";

interface Bar {
  label: string;
  total: number;
  unit: string;
  done: number;
  info: string;
  startedMs: number;
}

interface Live {
  label: string;
  startedMs: number;
  bar: Bar | null;
}

export interface Reporter {
  /** An instance changed status; `detail` is a reason or an error message. */
  event(label: string, status: InstanceStatus, detail?: string): void;
  /** A free line (warnings, summaries). */
  line(text: string): void;
  /** The Progress handed to a running instance's step. */
  progressFor(label: string): Progress;
  /** Stop redrawing and clear the live block. */
  close(): void;
}

export function formatDuration(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m${String(Math.floor(seconds % 60)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(Math.round(n * 100) / 100);
}

function barText(bar: Bar, nowMs: number): string {
  const frac = bar.total > 0 ? Math.min(1, bar.done / bar.total) : 0;
  const width = 20;
  const filled = Math.round(frac * width);
  const rate = bar.done / Math.max(1e-3, (nowMs - bar.startedMs) / 1000);
  return `${bar.label} [${"#".repeat(filled)}${".".repeat(width - filled)}] ` +
    `${formatCount(bar.done)}/${formatCount(bar.total)} ${bar.unit} ` +
    `${formatCount(rate)} ${bar.unit}/s${bar.info ? ` · ${bar.info}` : ""}`;
}

const encoder = new TextEncoder();

/** A reporter writing to `out` (stderr by default); live redraws when `live` is true. */
export function createReporter(
  opts: { live?: boolean; write?: (text: string) => void } = {},
): Reporter {
  const write = opts.write ?? ((t: string) => Deno.stderr.writeSync(encoder.encode(t)));
  const live = opts.live ?? Deno.stderr.isTerminal();
  const running = new Map<string, Live>();
  let drawnLines = 0;

  const clear = () => {
    if (drawnLines > 0) write(`\x1b[${drawnLines}A\x1b[J`);
    drawnLines = 0;
  };
  const draw = () => {
    if (!live) return;
    clear();
    const now = Date.now();
    let cols = 120;
    try {
      cols = Deno.consoleSize().columns || 120;
    } catch { /* not a terminal: keep 120 */ }
    const lines = [...running.values()].map((r) => {
      const head = `  ▸ ${r.label} ${formatDuration((now - r.startedMs) / 1000)}`;
      const text = r.bar ? `${head}  ${barText(r.bar, now)}` : head;
      return text.slice(0, cols - 1);
    });
    if (lines.length) write(lines.join("\n") + "\n");
    drawnLines = lines.length;
  };
  const timer = live ? setInterval(draw, 200) : undefined;
  if (timer !== undefined) Deno.unrefTimer(timer);

  const above = (text: string) => {
    if (live) clear();
    write(text + "\n");
    if (live) draw();
  };

  return {
    event(label, status, detail) {
      if (status === "running") running.set(label, { label, startedMs: Date.now(), bar: null });
      let elapsed = "";
      const r = running.get(label);
      if (status !== "running" && r) {
        elapsed = ` (${formatDuration((Date.now() - r.startedMs) / 1000)})`;
        running.delete(label);
      }
      above(`${status.padEnd(7)} ${label}${elapsed}${detail ? `: ${detail}` : ""}`);
    },
    line: above,
    progressFor(label) {
      return {
        start(barLabel, total, unit) {
          const r = running.get(label);
          if (r) {
            r.bar = {
              label: barLabel,
              total,
              unit: unit ?? "",
              done: 0,
              info: "",
              startedMs: Date.now(),
            };
          }
        },
        update(done, info) {
          const bar = running.get(label)?.bar;
          if (bar) {
            bar.done = done;
            if (info !== undefined) bar.info = info;
          }
        },
        log(message) {
          above(`        ${label}: ${message}`);
        },
      };
    },
    close() {
      if (timer !== undefined) clearInterval(timer);
      if (live) clear();
    },
  };
}
