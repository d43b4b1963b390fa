// Learning-rate schedules of the training runs: linear warmup then cosine decay to a
// minimum (nanoGPT's get_lr), and the SWA schedule that takes over from SWA's start
// step (torch.optim.swa_utils.SWALR with anneal_strategy="cos").
//
// Both are pure functions of the step, so the LR of a resumed run needs no saved state,
// and the train step asks `trainingLrAt` once per step and hands the value to the
// optimizer: nothing overwrites it afterwards (the paper's public code set SWALR and then
// overwrote the LR with the cosine schedule every step, so SWA's schedule never acted).
//
// Steps are 0-based update indices: step s is the (s+1)-th optimizer update.

export interface CosineSchedule {
  /** Peak LR, reached at the end of warmup. */
  lr: number;
  /** LR at the last step. */
  min_lr: number;
  /** Number of warmup steps (0 = start at the peak). */
  warmup: number;
  /** Total number of optimizer steps of the run. */
  steps: number;
}

/**
 * LR of update `step`: lr·(step+1)/warmup during warmup (so the first update is not
 * wasted at LR 0), then a half cosine from lr down to min_lr, reached exactly at the
 * last step (steps - 1).
 */
export function lrAt(step: number, s: CosineSchedule): number {
  if (step < s.warmup) return (s.lr * (step + 1)) / s.warmup;
  const decaySteps = s.steps - 1 - s.warmup;
  if (decaySteps <= 0) return s.lr;
  const ratio = Math.min(1, (step - s.warmup) / decaySteps);
  const coeff = 0.5 * (1 + Math.cos(Math.PI * ratio)); // 1 -> 0
  return s.min_lr + coeff * (s.lr - s.min_lr);
}

export interface SwaSchedule {
  /** First step under the SWA schedule (and of SWA averaging). */
  start_step: number;
  /** LR SWA anneals to and then holds. */
  swa_lr: number;
  /** Steps of the cosine anneal from the LR at start_step down to swa_lr. */
  anneal_steps: number;
}

/**
 * SWALR's closed form: from `start_step` on, the LR moves from L0 (the base schedule's
 * LR at start_step) to swa_lr along alpha(t) = (1 - cos(pi·t))/2, t = (step - start) /
 * anneal_steps clipped to [0, 1], then stays at swa_lr. At start_step the LR is L0, as
 * in torch where SWALR first changes the LR after the first scheduler.step().
 */
export function swaLrAt(step: number, base: CosineSchedule, swa: SwaSchedule): number {
  if (step < swa.start_step) return lrAt(step, base);
  const startLr = lrAt(swa.start_step, base);
  const t = Math.max(0, Math.min(1, (step - swa.start_step) / Math.max(1, swa.anneal_steps)));
  const alpha = (1 - Math.cos(Math.PI * t)) / 2;
  return swa.swa_lr * alpha + startLr * (1 - alpha);
}

/** The LR training uses at `step`: the cosine schedule, or SWA's from its start on. */
export function trainingLrAt(step: number, base: CosineSchedule, swa: SwaSchedule | null): number {
  return swa ? swaLrAt(step, base, swa) : lrAt(step, base);
}
