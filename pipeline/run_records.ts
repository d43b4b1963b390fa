// What each `run` reached, so that gc keeps it. A config file reaches only what it says
// as written; a run with `--set`, `--seeds`, `--seed` or `--backend` reaches entries no
// config does, and its user expects them to stay. Each run (not a dry run) writes
// `<artifacts>/runs/<time>-<id>.json`: the pipeline file, the flags that changed what
// it reached, and the cache keys of its instances. The record is written when the run
// starts and rewritten (at most every second) as it learns each instance's key, marked
// `inProgress`, so a gc meanwhile keeps what the run has reached but not yet read, and
// a run killed outright still leaves its record; the last write marks it finished.
// gc keeps the keys of the records it counts: the newest complete run of each command
// line (an older run of the same command line is superseded), minus those the user
// cuts with `--older-than` or `--keep-runs`.
import { onDisk, UserError } from "./errors.ts";

export interface RunRecord {
  format: "run-record/1";
  /** The pipeline file the run read. */
  pipeline: string;
  /** The flags that changed what the run reached (`--set`, `--backend`, `--seed(s)`). */
  args: string[];
  backend: string;
  seeds: number[];
  started: string;
  finished: string;
  /** Whether every instance was built or cached (only such a run supersedes older ones). */
  complete: boolean;
  /** The run had not ended when this was written (`finished`: the time of writing). */
  inProgress?: boolean;
  /** Cache keys of the run's instances (built, cached, or failed with a known key). */
  keys: string[];
  /** Of those, the keys of resumable steps: their work folders hold progress. */
  resumable: string[];
}

export interface StoredRunRecord {
  path: string;
  record: RunRecord;
}

export function runsDir(artifacts: string): string {
  return `${artifacts}/runs`;
}

/**
 * Write a run's record (atomically: a reader never sees half of it), at `path` when
 * given (replacing it), else at a new path named by its start; returns the path.
 */
export async function recordRun(
  artifacts: string,
  record: Omit<RunRecord, "format">,
  path?: string,
): Promise<string> {
  const dir = runsDir(artifacts);
  const to = path ??
    `${dir}/${record.started.replace(/[:.]/g, "-")}-${crypto.randomUUID().slice(0, 8)}.json`;
  const full: RunRecord = { format: "run-record/1", ...record };
  await onDisk(dir, async () => {
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeTextFile(`${to}.tmp`, JSON.stringify(full, null, 2) + "\n");
    await Deno.rename(`${to}.tmp`, to);
  });
  return to;
}

function recordProblem(r: Partial<RunRecord> | null): string | null {
  if (r === null || typeof r !== "object" || r.format !== "run-record/1") {
    return "not a run record";
  }
  if (typeof r.pipeline !== "string" || !Array.isArray(r.args)) return "no pipeline or args";
  if (!Array.isArray(r.keys) || !Array.isArray(r.resumable)) return "no keys";
  if (typeof r.finished !== "string" || Number.isNaN(Date.parse(r.finished))) {
    return "no finishing time";
  }
  return null;
}

/**
 * Every run record, oldest first. One that does not read stops the caller: gc deciding
 * on a partial view could delete what that run reached.
 */
export async function readRunRecords(artifacts: string): Promise<StoredRunRecord[]> {
  const dir = runsDir(artifacts);
  const out: StoredRunRecord[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || !e.name.endsWith(".json")) continue;
      const path = `${dir}/${e.name}`;
      let record: Partial<RunRecord> | null = null;
      try {
        record = JSON.parse(await Deno.readTextFile(path));
      } catch {
        // reported below
      }
      const problem = recordProblem(record);
      if (problem) throw new UserError(`run record ${path}: ${problem} (fix or remove it)`);
      out.push({ path, record: record as RunRecord });
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort((a, b) =>
    Date.parse(a.record.finished) - Date.parse(b.record.finished) ||
    a.path.localeCompare(b.path)
  );
}

/** The command line a record stands for, as a user would type it. */
export function commandLine(record: RunRecord): string {
  const name = record.pipeline.replace(/^.*\//, "").replace(/\.(ya?ml|json)$/, "");
  return ["run", name, ...record.args].join(" ");
}

export interface RunCut {
  /** Records of runs that finished longer ago than this stop counting. */
  olderThanMs?: number;
  /** Only this many of the newest counted records count. */
  keepRuns?: number;
  now?: Date;
}

/** Which records gc counts, and why each other one is dropped. */
export function chooseRuns(
  records: StoredRunRecord[],
  cut: RunCut,
): { counted: StoredRunRecord[]; dropped: { path: string; why: string }[] } {
  const now = (cut.now ?? new Date()).getTime();
  const dropped: { path: string; why: string }[] = [];
  const newestComplete = new Map<string, StoredRunRecord>();
  const identity = (r: RunRecord) => JSON.stringify([r.pipeline, r.args]);
  for (const r of records) if (r.record.complete) newestComplete.set(identity(r.record), r);
  let counted: StoredRunRecord[] = [];
  for (const r of records) {
    const newer = newestComplete.get(identity(r.record));
    const age = now - Date.parse(r.record.finished);
    if (newer && Date.parse(newer.record.finished) > Date.parse(r.record.finished)) {
      dropped.push({ path: r.path, why: `superseded by the run of ${newer.record.finished}` });
    } else if (cut.olderThanMs !== undefined && age > cut.olderThanMs) {
      dropped.push({ path: r.path, why: `finished ${formatAge(age)} ago` });
    } else {
      counted.push(r);
    }
  }
  if (cut.keepRuns !== undefined && counted.length > cut.keepRuns) {
    const cutAt = counted.length - cut.keepRuns;
    for (const r of counted.slice(0, cutAt)) {
      dropped.push({ path: r.path, why: `beyond the newest ${cut.keepRuns} runs` });
    }
    counted = counted.slice(cutAt);
  }
  return { counted, dropped };
}

const UNITS_MS: Record<string, number> = {
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/** `30m`, `12h`, `7d`, `2w` as milliseconds. */
export function parseAge(text: string): number {
  const m = text.match(/^(\d+(?:\.\d+)?)([mhdw])$/);
  if (!m) {
    throw new UserError(`--older-than: expected an age like 30m, 12h, 7d or 2w, got "${text}"`);
  }
  return Number(m[1]) * UNITS_MS[m[2]];
}

function formatAge(ms: number): string {
  for (const unit of ["w", "d", "h"]) {
    if (ms >= UNITS_MS[unit]) return `${Math.floor(ms / UNITS_MS[unit])}${unit}`;
  }
  return `${Math.floor(ms / UNITS_MS.m)}m`;
}

/**
 * A run's record kept current while it runs: `reached(key)` as the runner learns each
 * instance's key; the record is rewritten at most every `everyMs`, and `finish` writes
 * the final one.
 */
export class RunRecorder {
  private readonly keys = new Set<string>();
  private readonly resumable = new Set<string>();
  private path: string | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly artifacts: string,
    private readonly about: Pick<RunRecord, "pipeline" | "args" | "backend" | "seeds" | "started">,
    private readonly everyMs = 1000,
  ) {}

  /** Write the first record (no keys yet). */
  async start(): Promise<void> {
    await this.write({ complete: false, inProgress: true });
  }

  reached(key: string, resumable: boolean): void {
    if (this.keys.has(key)) return;
    this.keys.add(key);
    if (resumable) this.resumable.add(key);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.writing = this.writing.then(() => this.write({ complete: false, inProgress: true }))
        .catch(() => {}); // a missed update is made good by the next one or by finish
    }, this.everyMs);
  }

  async finish(complete: boolean): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.writing;
    await this.write({ complete });
  }

  private async write(state: Pick<RunRecord, "complete" | "inProgress">): Promise<void> {
    this.path = await recordRun(this.artifacts, {
      ...this.about,
      finished: new Date().toISOString(),
      ...state,
      keys: [...this.keys],
      resumable: [...this.resumable],
    }, this.path);
  }
}
