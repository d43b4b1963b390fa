// Compute savings (the paper's Fig. 13): how much earlier a series (LAWA, EMA, ...)
// reaches the perplexity the original run ends with, within a tolerance.
//
// For a tolerance tol, target = baseline's final ppl × (1 + tol). For every series
// (the baseline itself included, as the control "just stop the original earlier"),
// first_step is the first checkpoint whose ppl <= target, and the savings are measured
// against the baseline's final checkpoint (the run one would otherwise train to the end):
//   steps_saved  = baseline_step - first_step
//   tokens_saved = baseline_tokens - tokens at first_step
//   wall_saved_s = wall(baseline_step) - wall(first_step)
// where wall(step) is the training clock at that step (from the training log when there
// is one, else proportional to steps). A series that never reaches the target gets nulls.

/** One evaluated checkpoint of a series. */
export interface CurvePoint {
  step: number;
  tokens: number;
  ppl: number;
}

export interface SavingsRow {
  series_id: string;
  baseline_id: string;
  tolerance: number;
  target_ppl: number;
  first_step: number | null;
  baseline_step: number;
  steps_saved: number | null;
  tokens_saved: number | null;
  wall_saved_s: number | null;
}

/** Training wall-clock seconds elapsed at a step, or null when unknown. */
export type WallClock = (step: number) => number | null;

function sortedByStep(curve: CurvePoint[]): CurvePoint[] {
  return [...curve].sort((a, b) => a.step - b.step);
}

/** The first point (by step) whose ppl is at or below `target`, or null. */
export function firstStepReaching(curve: CurvePoint[], target: number): CurvePoint | null {
  for (const p of sortedByStep(curve)) if (p.ppl <= target) return p;
  return null;
}

/**
 * A wall clock from logged (step, elapsed_s) pairs: linear interpolation between logged
 * steps, proportional (elapsed/step) before the first and after the last one.
 */
export function wallClockFromLog(log: { step: number; elapsed_s: number }[]): WallClock | null {
  const points = [...log].filter((p) => Number.isFinite(p.elapsed_s)).sort((a, b) =>
    a.step - b.step
  );
  if (points.length === 0) return null;
  return (step: number) => {
    const first = points[0];
    const last = points[points.length - 1];
    if (step <= first.step) return first.step > 0 ? first.elapsed_s * step / first.step : 0;
    if (step >= last.step) return last.step > 0 ? last.elapsed_s * step / last.step : null;
    let hi = 1;
    while (points[hi].step < step) hi++;
    const a = points[hi - 1];
    const b = points[hi];
    return a.elapsed_s + (b.elapsed_s - a.elapsed_s) * (step - a.step) / (b.step - a.step);
  };
}

/** A wall clock proportional to steps: `totalSeconds` spent over `totalSteps`. */
export function proportionalWallClock(totalSeconds: number, totalSteps: number): WallClock {
  return (step: number) => totalSteps > 0 ? totalSeconds * step / totalSteps : null;
}

/**
 * Savings rows for every series against one baseline (the original run of the same
 * training). `wall` maps a step of that training run to elapsed seconds (null: unknown).
 */
export function computeSavings(
  baseline: { id: string; curve: CurvePoint[] },
  series: { id: string; curve: CurvePoint[] }[],
  tolerances: number[],
  wall: WallClock | null,
): SavingsRow[] {
  if (baseline.curve.length === 0) {
    throw new Error(`savings: baseline series ${baseline.id} has no evaluated checkpoints`);
  }
  const base = sortedByStep(baseline.curve);
  const final = base[base.length - 1];
  const rows: SavingsRow[] = [];
  for (const tolerance of tolerances) {
    const target = final.ppl * (1 + tolerance);
    for (const s of series) {
      const hit = firstStepReaching(s.curve, target);
      let wallSaved: number | null = null;
      if (hit && wall) {
        const atBase = wall(final.step);
        const atHit = wall(hit.step);
        if (atBase !== null && atHit !== null) wallSaved = atBase - atHit;
      }
      rows.push({
        series_id: s.id,
        baseline_id: baseline.id,
        tolerance,
        target_ppl: target,
        first_step: hit ? hit.step : null,
        baseline_step: final.step,
        steps_saved: hit ? final.step - hit.step : null,
        tokens_saved: hit ? final.tokens - hit.tokens : null,
        wall_saved_s: wallSaved,
      });
    }
  }
  return rows;
}
