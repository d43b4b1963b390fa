// Paired bootstrap intervals for a loss gap between two series scored on the same
// held-out windows (an averaged series and its own original run, same seed and step).
//
// Why paired: both series see exactly the same windows, so the window-to-window spread
// of difficulty cancels in the per-window difference; resampling differences (not the
// two losses separately) gives the interval of the gap itself, far narrower than two
// independent intervals. Resampling is stratified by held-out domain (each domain keeps
// its window count, so the domain mix is the evaluation's, not a random one) and, with
// several seeds, two-level: resample seeds, then windows within each drawn seed.
//
// Deterministic: indices come from mulberry32 (lm/data/windows.ts) seeded by `seed`, so
// a rerun gives the same interval bit for bit. tests/fixtures/bootstrap/generate.py
// replays the same draws in numpy as the reference.
import { mulberry32 } from "../data/windows.ts";

/** One seed's paired differences: per window, loss(averaged) − loss(original). */
export interface PairedWindows {
  /** Mean per-token loss difference of each window (equal-length windows). */
  diffs: Float64Array;
  /** Stratum (held-out domain index) of each window. */
  strata: Int32Array;
}

export interface BootstrapOptions {
  /** Bootstrap resamples (default 2000). */
  resamples?: number;
  /** Two-sided confidence level (default 0.95). */
  confidence?: number;
  /** PRNG seed of the resampling (default 0). */
  seed?: number;
}

export interface GapInterval {
  /** Point estimate: mean over seeds of the mean difference over windows. */
  gap: number;
  lower: number;
  upper: number;
  /** Windows per seed (the largest, if they differ). */
  nWindows: number;
  nSeeds: number;
}

/** numpy's default ("linear") percentile of sorted values, q in [0, 100]. */
export function percentileSorted(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) throw new Error("percentile of an empty sample");
  const pos = (q / 100) * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

/** Window indices of each stratum, strata in increasing id order. */
function strataMembers(strata: Int32Array): Int32Array[] {
  const byId = new Map<number, number[]>();
  strata.forEach((s, i) => {
    const list = byId.get(s);
    if (list) list.push(i);
    else byId.set(s, [i]);
  });
  return [...byId.keys()].sort((a, b) => a - b).map((id) => Int32Array.from(byId.get(id)!));
}

function mean(values: Float64Array): number {
  let sum = 0;
  for (const v of values) sum += v;
  return sum / values.length;
}

/**
 * The gap (mean over seeds of the mean per-window difference) with a percentile
 * bootstrap interval: each resample draws seeds with replacement (when there are
 * several), then, within each drawn seed and each stratum, as many windows as the
 * stratum has, with replacement.
 */
export function pairedBootstrap(seeds: PairedWindows[], opts: BootstrapOptions = {}): GapInterval {
  const resamples = opts.resamples ?? 2000;
  const confidence = opts.confidence ?? 0.95;
  if (seeds.length === 0) throw new Error("bootstrap: no seeds to resample");
  if (!(resamples >= 1) || !Number.isInteger(resamples)) {
    throw new Error(`bootstrap: resamples must be a positive integer, got ${resamples}`);
  }
  if (!(confidence > 0 && confidence < 1)) {
    throw new Error(`bootstrap: confidence must be in (0, 1), got ${confidence}`);
  }
  for (const [i, s] of seeds.entries()) {
    if (s.diffs.length === 0) throw new Error(`bootstrap: seed ${i} has no windows`);
    if (s.strata.length !== s.diffs.length) {
      throw new Error(
        `bootstrap: seed ${i} has ${s.diffs.length} differences but ${s.strata.length} strata`,
      );
    }
    if (s.diffs.some((d) => !Number.isFinite(d))) {
      throw new Error(`bootstrap: seed ${i} has a non-finite difference`);
    }
  }
  const members = seeds.map((s) => strataMembers(s.strata));
  const next = mulberry32(opts.seed ?? 0);
  const draw = (n: number) => Math.floor((next() * n) / 4294967296);
  const nSeeds = seeds.length;
  const stats = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    const picked: number[] = [];
    if (nSeeds === 1) picked.push(0);
    else for (let i = 0; i < nSeeds; i++) picked.push(draw(nSeeds));
    let total = 0;
    for (const si of picked) {
      const diffs = seeds[si].diffs;
      let sum = 0;
      for (const group of members[si]) {
        for (let j = 0; j < group.length; j++) sum += diffs[group[draw(group.length)]];
      }
      total += sum / diffs.length;
    }
    stats[r] = total / nSeeds;
  }
  stats.sort();
  const tail = ((1 - confidence) / 2) * 100;
  let gap = 0;
  for (const s of seeds) gap += mean(s.diffs);
  return {
    gap: gap / nSeeds,
    lower: percentileSorted(stats, tail),
    upper: percentileSorted(stats, 100 - tail),
    nWindows: Math.max(...seeds.map((s) => s.diffs.length)),
    nSeeds,
  };
}

/** Whether an interval lies wholly on one side of zero. */
export function excludesZero(i: Pick<GapInterval, "lower" | "upper">): boolean {
  return i.lower > 0 || i.upper < 0;
}
