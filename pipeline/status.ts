// `status <pipeline>`: one line per instance, whether it is in the cache (or being built
// now, here or by a job on another node: whoever holds its lock), its size and how long
// it took. Computed like a dry run (keys from the digests of built inputs).
// `--verify` rehashes every output of every cached instance; a damaged entry is marked
// so that the next run rebuilds it.
import { type RunOptions, runPipeline } from "./runner.ts";
import { formatDuration, type Reporter } from "./progress.ts";
import { describeOwner, whoHolds } from "./shared_lock.ts";
import { slurmJobAlive } from "./executors/slurm_commands.ts";

export const silentReporter: Reporter = {
  event() {},
  line() {},
  progressFor: () => ({ start() {}, update() {}, log() {} }),
  close() {},
};

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

export interface StatusRow {
  label: string;
  /**
   * "cached", "missing", "missing (inputs not built)", "damaged (<why>)" or
   * "running (<who>, <how long>)".
   */
  state: string;
  key: string;
  bytes: number;
  duration_s: number | null;
}

/** Rows of the status table, and the text to print. */
export async function pipelineStatus(
  opts: Omit<RunOptions, "dryRun" | "reporter" | "force" | "jobs"> & { verify?: boolean },
): Promise<{ rows: StatusRow[]; damaged: number; text: string }> {
  const { verify, ...runOpts } = opts;
  const summary = await runPipeline({
    ...runOpts,
    dryRun: true,
    force: [],
    jobs: 1,
    reporter: silentReporter,
  });
  const rows: StatusRow[] = [];
  for (const o of summary.outcomes) {
    const m = o.manifest;
    let state = o.status === "cached" ? "cached" : o.key ? "missing" : "missing (inputs not built)";
    const damage = o.reasons?.find((r) => r.startsWith("cache entry damaged"));
    if (damage) state = `damaged (${damage.replace(/^cache entry damaged \((.*)\).*$/, "$1")})`;
    if (o.status !== "cached" && o.key) {
      const held = await whoHolds(opts.store.lockPath(o.key), { jobAlive: slurmJobAlive });
      if (held) {
        const since = held.owner ? Date.parse(held.owner.acquired) : NaN;
        const age = Number.isFinite(since)
          ? `, ${formatDuration((Date.now() - since) / 1000)}`
          : "";
        state = `running (${describeOwner(held.owner)}${age})`;
      }
    }
    if (verify && o.status === "cached" && o.key) {
      const found = await opts.store.inspect(o.key, { full: true });
      if (found.state === "damaged") {
        state = `damaged (${found.reason})`;
        await opts.store.markDamaged(o.key, found.reason);
      }
    }
    rows.push({
      label: o.instance.label,
      state,
      key: o.key ? o.key.slice(0, 12) : "-",
      bytes: m ? Object.values(m.outputs).reduce((s, f) => s + f.bytes, 0) : 0,
      duration_s: m ? m.duration_s : null,
    });
  }
  const header = ["instance", "state", "key", "size", "duration"];
  const table = [
    header,
    ...rows.map((r) => [
      r.label,
      r.state,
      r.key,
      r.state === "cached" ? formatBytes(r.bytes) : "-",
      r.duration_s === null ? "-" : formatDuration(r.duration_s),
    ]),
  ];
  const widths = header.map((_, c) => Math.max(...table.map((row) => row[c].length)));
  const lines = table.map((row) =>
    row.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd()
  );
  const cached = rows.filter((r) => r.state === "cached").length;
  const damaged = rows.filter((r) => r.state.startsWith("damaged")).length;
  const running = rows.filter((r) => r.state.startsWith("running")).length;
  lines.push(
    `${cached} of ${rows.length} instances cached` + (running ? `, ${running} running` : "") +
      (verify ? `, every output rehashed` : "") +
      (damaged ? `; ${damaged} damaged (the next run rebuilds them)` : ""),
  );
  return { rows, damaged, text: lines.join("\n") };
}
