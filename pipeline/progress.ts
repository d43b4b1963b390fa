// What the user sees while a pipeline runs. On a terminal: a live block on stderr, one
// line per running instance (label, elapsed, the step's own bar: done/total, rate, ETA,
// info), redrawn a few times a second, with events scrolling above it. Elsewhere (a pipe
// to `tee`, a cluster log, CI): plain lines on stdout, one per event, and for each
// running instance a progress line at least every 15 s (env LAWA_PROGRESS_EVERY_S), so
// a long training step shows its step/total, loss, tokens/s and ETA in the log.
// An instance's final bar info (e.g. its last loss) stays on its "ok" line.
import type { Progress } from "./step.ts";

export type InstanceStatus = "cached" | "running" | "ok" | "failed" | "skipped";

interface Bar {
  label: string;
  total: number;
  unit: string;
  done: number;
  info: string;
  startedMs: number;
  /** `done` at the first update (a resumed step starts past 0), for the rate. */
  firstDone: number | null;
  firstMs: number;
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

export interface ReporterOptions {
  /** Redraw a live block (default: when stdout is a terminal). */
  live?: boolean;
  /** Where text goes (default: stderr when live, stdout otherwise). */
  write?: (text: string) => void;
  /** Seconds between progress lines when not live (default: env LAWA_PROGRESS_EVERY_S or 15). */
  everyS?: number;
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
  if (n >= 100) return String(Math.round(n));
  return String(Math.round(n * 100) / 100);
}

/** Units per second since the first update, and the seconds left at that rate. */
function pace(bar: Bar, nowMs: number): { rate: number | null; etaS: number | null } {
  if (bar.firstDone === null || bar.done <= bar.firstDone) return { rate: null, etaS: null };
  const rate = (bar.done - bar.firstDone) / Math.max(1e-3, (nowMs - bar.firstMs) / 1000);
  const left = Math.max(0, bar.total - bar.done);
  return { rate, etaS: bar.total > 0 ? left / rate : null };
}

/** The bar's label without words the instance label already shows ("train train"). */
function ownLabel(barLabel: string, instanceLabel: string): string {
  return barLabel.split(/\s+/).filter((w) => w && !instanceLabel.includes(w)).join(" ");
}

/** `step 120/240 · 0.8 step/s · ETA 2m30s · loss 3.210 · 1.2k tok/s`. */
function progressText(bar: Bar, instanceLabel: string, nowMs: number): string {
  const { rate, etaS } = pace(bar, nowMs);
  const parts = [
    [
      ownLabel(bar.label, instanceLabel),
      `${formatCount(bar.done)}/${formatCount(bar.total)}`,
      bar.unit,
    ].filter((s) => s).join(" "),
  ];
  if (rate !== null) parts.push(`${formatCount(rate)} ${bar.unit}/s`.trim());
  if (etaS !== null && bar.done < bar.total) parts.push(`ETA ${formatDuration(etaS)}`);
  if (bar.info) parts.push(bar.info);
  return parts.join(" · ");
}

function barGraphic(bar: Bar): string {
  const frac = bar.total > 0 ? Math.min(1, bar.done / bar.total) : 0;
  const width = 20;
  const filled = Math.round(frac * width);
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}]`;
}

/** The message without a leading `<label>: ` the line already shows ("corpus: corpus:"). */
function ownMessage(message: string, instanceLabel: string, bar: Bar | null): string {
  const m = message.match(/^([\w.-]+):\s+/);
  if (!m) return message;
  const prefix = m[1];
  const node = instanceLabel.replace(/\[.*$/, "");
  return prefix === node || prefix === bar?.label.split(/\s+/)[0]
    ? message.slice(m[0].length)
    : message;
}

const encoder = new TextEncoder();

function defaultEverySeconds(): number {
  let text: string | undefined;
  try {
    text = Deno.env.get("LAWA_PROGRESS_EVERY_S");
  } catch { /* no env permission: the default */ }
  const n = Number(text);
  return text !== undefined && Number.isFinite(n) && n > 0 ? n : 15;
}

/** A reporter: a live block on a terminal, plain periodic lines elsewhere. */
export function createReporter(opts: ReporterOptions = {}): Reporter {
  const live = opts.live ?? Deno.stdout.isTerminal();
  const stream = live ? Deno.stderr : Deno.stdout;
  const write = opts.write ?? ((t: string) => stream.writeSync(encoder.encode(t)));
  const everyMs = (opts.everyS ?? defaultEverySeconds()) * 1000;
  const running = new Map<string, Live>();
  let drawnLines = 0;

  const clear = () => {
    if (drawnLines > 0) write(`\x1b[${drawnLines}A\x1b[J`);
    drawnLines = 0;
  };
  const draw = () => {
    clear();
    const now = Date.now();
    let cols = 120;
    try {
      cols = Deno.consoleSize().columns || 120;
    } catch { /* not a terminal: keep 120 */ }
    const lines = [...running.values()].map((r) => {
      const head = `  ▸ ${r.label} ${formatDuration((now - r.startedMs) / 1000)}`;
      const text = r.bar
        ? `${head}  ${barGraphic(r.bar)} ${progressText(r.bar, r.label, now)}`
        : head;
      return text.slice(0, cols - 1);
    });
    if (lines.length) write(lines.join("\n") + "\n");
    drawnLines = lines.length;
  };
  /** Not live: one line per running instance, each at most every `everyMs`. */
  const lastLine = new Map<string, number>();
  const tick = () => {
    const now = Date.now();
    for (const r of running.values()) {
      if (now - (lastLine.get(r.label) ?? r.startedMs) < everyMs) continue;
      lastLine.set(r.label, now);
      const elapsed = formatDuration((now - r.startedMs) / 1000);
      const what = r.bar ? progressText(r.bar, r.label, now) : "running";
      write(`        ${r.label}: ${what} · ${elapsed} elapsed\n`);
    }
  };
  const timer = live
    ? setInterval(draw, 200)
    : setInterval(tick, Math.max(50, Math.min(1000, everyMs / 4)));
  Deno.unrefTimer(timer);

  const above = (text: string) => {
    if (live) clear();
    write(text + "\n");
    if (live) draw();
  };

  return {
    event(label, status, detail) {
      if (status === "running") running.set(label, { label, startedMs: Date.now(), bar: null });
      let tail = "";
      const r = running.get(label);
      if (status !== "running" && r) {
        tail = ` (${formatDuration((Date.now() - r.startedMs) / 1000)})`;
        if (status === "ok" && r.bar) {
          const last = [
            [
              ownLabel(r.bar.label, label),
              `${formatCount(r.bar.done)}/${formatCount(r.bar.total)}`,
              r.bar.unit,
            ].filter((s) => s).join(" "),
            r.bar.info,
          ].filter((s) => s).join(" · ");
          tail += ` · ${last}`;
        }
        running.delete(label);
        lastLine.delete(label);
      }
      above(`${status.padEnd(7)} ${label}${tail}${detail ? `: ${detail}` : ""}`);
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
              firstDone: null,
              firstMs: Date.now(),
            };
          }
        },
        update(done, info) {
          const bar = running.get(label)?.bar;
          if (bar) {
            if (bar.firstDone === null) {
              bar.firstDone = done;
              bar.firstMs = Date.now();
            }
            bar.done = done;
            if (info !== undefined) bar.info = info;
          }
        },
        log(message) {
          above(`        ${label}: ${ownMessage(message, label, running.get(label)?.bar ?? null)}`);
        },
      };
    },
    close() {
      clearInterval(timer);
      if (live) clear();
    },
  };
}
