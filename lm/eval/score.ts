// Mean next-token loss of a model over every full window of a token sequence: window i
// reads tokens i·T .. i·T+T−1 and predicts i·T+1 .. i·T+T (non-overlapping, the last
// partial window dropped). What `deno task score` prints, for users checking a model.
import type * as tf from "@tensorflow/tfjs-core";
import type { ModelConfig } from "../model/model.ts";
import { evaluateWindows, type Windows } from "./loss.ts";

/** All full consecutive windows of `seqLen` tokens (inputs x, next-token targets y). */
export function consecutiveWindows(tokens: ArrayLike<number>, seqLen: number): Windows {
  if (!Number.isInteger(seqLen) || seqLen < 1) {
    throw new Error(`seq-len must be a positive integer, got ${seqLen}`);
  }
  const count = Math.floor((tokens.length - 1) / seqLen);
  if (count < 1) {
    throw new Error(
      `${tokens.length} tokens are too few for one window of ${seqLen} (need ${seqLen + 1})`,
    );
  }
  const x = new Int32Array(count * seqLen), y = new Int32Array(count * seqLen);
  for (let i = 0; i < count * seqLen; i++) {
    x[i] = tokens[i];
    y[i] = tokens[i + 1];
  }
  return { x, y, count, seqLen };
}

export interface ScoreResult {
  loss: number;
  tokens: number;
  windows: number;
  seq_len: number;
}

/** Mean loss over every full window; ids at or past the model's vocabulary are refused. */
export async function scoreTokens(
  cfg: ModelConfig,
  w: Record<string, tf.Tensor>,
  tokens: ArrayLike<number>,
  seqLen: number,
  batchSize = 8,
): Promise<ScoreResult> {
  if (seqLen > cfg.block_size) {
    throw new Error(`seq-len ${seqLen} exceeds the model's context of ${cfg.block_size} tokens`);
  }
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] >= cfg.vocab_size) {
      throw new Error(
        `token id ${
          tokens[i]
        } at position ${i} is outside the model's vocabulary of ${cfg.vocab_size}`,
      );
    }
  }
  const windows = consecutiveWindows(tokens, seqLen);
  const r = await evaluateWindows(cfg, w, windows, { batchSize });
  return { loss: r.meanLoss, tokens: r.nTokens, windows: windows.count, seq_len: seqLen };
}
