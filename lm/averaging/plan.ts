// What to average, decided before any file is opened: the options of every method
// (LAWA, EMA, SWA), which checkpoints go into which output (pure functions of the
// step list), the checks that ν and the interval sit on the checkpoint spacing, and
// the labels and params an averaged series is known by.

export interface CheckpointRef {
  step: number;
  path: string;
  tokens?: number;
}

export type AverageMethod = "lawa" | "ema" | "swa";

export interface AverageOptions {
  method: AverageMethod;
  /** LAWA: number of checkpoints per window. */
  k: number;
  /** LAWA: distance between window members, in training steps. */
  nu: number;
  /** LAWA: a window ends at every checkpoint step t with (t - start) % interval == 0. */
  interval: number;
  /** First training step considered: LAWA targets and EMA/SWA members are >= start. */
  start: number;
  /** EMA (Algorithm 2 notation): weight of the newest checkpoint; decay is 1 - alpha. */
  alpha: number;
  /** EMA/SWA: update at list index i only when i % stepSize == 0 (Algorithm 2). */
  stepSize: number;
  /** EMA/SWA: update at list index i only when i > initPoint (Algorithm 2). */
  initPoint: number;
  /** Output dtype of float tensors: that of the newest member, or float32. */
  dtype: "source" | "float32";
  /** Accumulator precision. */
  accumulate: "float64" | "float32";
  /** LAWA: exact recompute after this many incremental windows (default k). */
  recomputeEvery?: number;
}

export const DEFAULT_AVERAGE_OPTIONS: AverageOptions = {
  method: "lawa",
  k: 5,
  nu: 1,
  interval: 1,
  start: 0,
  alpha: 0.1,
  stepSize: 1,
  initPoint: 0,
  dtype: "source",
  accumulate: "float64",
};

// ---------------------------------------------------------------------------------------
// Planning: which checkpoints go into which output. Pure functions of the step list.

/** One output: the step it stands for and the source steps averaged into it (ascending). */
export interface Window {
  step: number;
  members: number[];
}

export interface LawaPlan {
  windows: Window[];
  /** Targets on the interval grid that were skipped because a member was missing. */
  skipped: { step: number; missing: number[] }[];
}

/**
 * LAWA windows (Algorithm 1, sliding): for every available checkpoint step t with
 * t >= start and (t - start) % interval == 0, the window is t, t-ν, ..., t-(k-1)ν.
 * Membership rule: every one of those k steps must exist exactly; a window with a
 * missing member is skipped (reported in `skipped` when at least its first member
 * t-(k-1)ν is not before the first checkpoint), never filled with a neighbour.
 */
export function planLawa(
  steps: number[],
  opts: Pick<AverageOptions, "k" | "nu" | "interval" | "start">,
): LawaPlan {
  checkPositiveInt("k", opts.k);
  checkPositiveInt("nu", opts.nu);
  checkPositiveInt("interval", opts.interval);
  const have = new Set(steps);
  const sorted = [...have].sort((a, b) => a - b);
  const windows: Window[] = [];
  const skipped: { step: number; missing: number[] }[] = [];
  for (const t of sorted) {
    if (t < opts.start || (t - opts.start) % opts.interval !== 0) continue;
    const members: number[] = [];
    for (let j = opts.k - 1; j >= 0; j--) members.push(t - j * opts.nu);
    const missing = members.filter((s) => !have.has(s));
    if (missing.length === 0) windows.push({ step: t, members });
    else if (members[0] >= sorted[0]) skipped.push({ step: t, missing });
  }
  return { windows, skipped };
}

/**
 * How each LAWA window's sum is formed: "fresh" (the sum of its members) or
 * "incremental" (the previous window's sum, plus the members that entered, minus those
 * that left), when that reads fewer checkpoints. After `recomputeEvery` incremental
 * windows in a row the next is fresh, so rounding error cannot build up.
 */
export function planLawaUpdates(
  windows: Window[],
  recomputeEvery: number,
): ("fresh" | "incremental")[] {
  let run = 0;
  return windows.map((w, i) => {
    const prev = windows[i - 1]?.members;
    const changes = prev
      ? w.members.filter((s) => !prev.includes(s)).length +
        prev.filter((s) => !w.members.includes(s)).length
      : Infinity;
    if (changes < w.members.length && run < recomputeEvery) {
      run++;
      return "incremental";
    }
    run = 0;
    return "fresh";
  });
}

/** One EMA/SWA update: acc = keep * acc + take * checkpoint(step), then an output. */
export interface BlendStep {
  step: number;
  keep: number;
  take: number;
  /** Every source step that has contributed so far (ascending). */
  members: number[];
}

/**
 * EMA/SWA per Algorithm 2 over the checkpoints with step >= start, in step order:
 * the series starts with ckpt[0]; at list index i >= 1 with i % stepSize == 0 and
 * i > initPoint it updates, and each update is one output checkpoint.
 * EMA: value = (1 - alpha) * series + alpha * ckpt[i].
 * SWA: the running uniform mean of ckpt[0] and every updated ckpt[i]
 * (value = n/(n+1) * series + 1/(n+1) * ckpt[i]; the paper's pseudocode prints the two
 * factors swapped, which would not be a mean).
 */
export function planEmaSwa(
  steps: number[],
  opts: Pick<AverageOptions, "method" | "alpha" | "stepSize" | "initPoint" | "start">,
): BlendStep[] {
  checkPositiveInt("step_size", opts.stepSize);
  if (!Number.isInteger(opts.initPoint) || opts.initPoint < 0) {
    throw new Error(`init_point must be an integer >= 0, got ${opts.initPoint}`);
  }
  if (opts.method === "ema" && !(opts.alpha > 0 && opts.alpha <= 1)) {
    throw new Error(`alpha must be in (0, 1] for EMA, got ${opts.alpha}`);
  }
  const list = [...new Set(steps)].filter((s) => s >= opts.start).sort((a, b) => a - b);
  if (list.length === 0) return [];
  const plan: BlendStep[] = [{ step: list[0], keep: 0, take: 1, members: [list[0]] }];
  let n = 1;
  for (let i = 1; i < list.length; i++) {
    if (i % opts.stepSize !== 0 || i <= opts.initPoint) continue;
    const members = [...plan[plan.length - 1].members, list[i]];
    if (opts.method === "swa") {
      plan.push({ step: list[i], keep: n / (n + 1), take: 1 / (n + 1), members });
      n++;
    } else {
      plan.push({ step: list[i], keep: 1 - opts.alpha, take: opts.alpha, members });
    }
  }
  return plan;
}

export function checkPositiveInt(name: string, value: number): void {
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`${name} must be a positive integer, got ${value}`);
  }
}

/**
 * ν and the window interval are training steps; a value that is not a multiple of the
 * checkpoint spacing would ask for checkpoints that were never saved.
 */
export function checkOnSpacing(
  opts: Pick<AverageOptions, "nu" | "interval">,
  steps: number[],
): void {
  const spacing = typicalSpacing(steps);
  for (const [name, value] of [["ν (nu)", opts.nu], ["interval", opts.interval]] as const) {
    if (value % spacing !== 0) {
      throw new Error(
        `LAWA ${name} = ${value} training steps is not a multiple of the checkpoint spacing, ` +
          `${spacing} steps: use a multiple of ${spacing} (e.g. ${
            spacing * Math.max(1, Math.round(value / spacing))
          })`,
      );
    }
  }
}

/** The params that define a method's output, for metadata and series.json. */
export function methodParams(opts: AverageOptions): Record<string, unknown> {
  const common = { dtype: opts.dtype, accumulate: opts.accumulate, start: opts.start };
  if (opts.method === "lawa") {
    return { method: "lawa", k: opts.k, nu: opts.nu, interval: opts.interval, ...common };
  }
  const blend = { step_size: opts.stepSize, init_point: opts.initPoint, ...common };
  if (opts.method === "ema") return { method: "ema", alpha: opts.alpha, ...blend };
  return { method: "swa", ...blend };
}

/** The most common gap between consecutive steps (the smallest one on a tie). */
export function typicalSpacing(steps: number[]): number {
  const sorted = [...steps].sort((a, b) => a - b);
  const counts = new Map<number, number>();
  for (let i = 1; i < sorted.length; i++) {
    const gap = sorted[i] - sorted[i - 1];
    if (gap > 0) counts.set(gap, (counts.get(gap) ?? 0) + 1);
  }
  let best = 1;
  let bestCount = 0;
  for (const [gap, count] of [...counts.entries()].sort((a, b) => a[0] - b[0])) {
    if (count > bestCount) [best, bestCount] = [gap, count];
  }
  return best;
}

/**
 * A series label such as "LAWA k=5 ν=2", "LAWA k=5 ν=1000 from step 21000", "EMA α=0.1",
 * "SWA from step 3000". A LAWA start is named so that two grids over the same revisions
 * (Pythia's Fig. 5 setting and its ablation) never share a label.
 */
export function seriesLabel(
  opts: Pick<AverageOptions, "method" | "k" | "nu" | "alpha" | "start">,
): string {
  if (opts.method === "lawa") {
    return `LAWA k=${opts.k} ν=${opts.nu}` + (opts.start > 0 ? ` from step ${opts.start}` : "");
  }
  if (opts.method === "ema") return `EMA α=${opts.alpha}`;
  return opts.start > 0 ? `SWA from step ${opts.start}` : "SWA";
}
