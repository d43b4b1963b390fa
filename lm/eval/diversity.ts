// Diversity between two checkpoints, as the paper defines it:
//   diversity(W1, W2) = (1/N) Σ_i 1[argmax prediction of W1 at i ≠ that of W2 at i]
// over the N positions of the same held-out windows. The argmax predictions come from
// `evaluateWindows` (lm/eval/loss.ts), so a checkpoint's forward pass serves both its loss
// and its diversity against the next checkpoint.

/** Fraction of positions where two prediction arrays (same windows, same order) differ. */
export function diversity(predictionsA: Int32Array, predictionsB: Int32Array): number {
  if (predictionsA.length !== predictionsB.length) {
    throw new Error(
      `diversity: prediction arrays cover different positions (${predictionsA.length} vs ${predictionsB.length}); expected the same held-out windows`,
    );
  }
  if (predictionsA.length === 0) throw new Error("diversity: no held-out positions to compare");
  let differ = 0;
  for (let i = 0; i < predictionsA.length; i++) if (predictionsA[i] !== predictionsB[i]) differ++;
  return differ / predictionsA.length;
}

/** Concatenate per-domain prediction arrays in a fixed domain order into one array. */
export function concatPredictions(parts: Int32Array[]): Int32Array {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Int32Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}
