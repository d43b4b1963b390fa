// Zero-shot scoring in the style of lm-evaluation-harness, on tasks given as JSONL files
// (one JSON object per line; blank lines are skipped; a malformed line is rejected with
// its file and line number). Three task types:
//
//   multiple_choice   {"context": "Question: ...\nAnswer:", "choices": ["a", "b", ...], "answer": 1}
//                     optional "delimiter" (default " "), put between context and each choice.
//                     Each choice is scored by the log-likelihood of delimiter + choice given
//                     the context. Metrics: acc (highest log-likelihood is the answer) and
//                     acc_norm (log-likelihood divided by the choice's length in characters).
//                     ARC-easy, SciQ, BoolQ (choices ["no", "yes"]) fit this format.
//   lambada           {"text": "... passage ending in its final word"}
//                     The context is the text before the last space-separated word; the
//                     target is " " + that word. Metrics: acc (every target token is the
//                     greedy argmax prediction) and ppl (exp of minus the mean log-likelihood).
//   word_perplexity   {"text": "a whole document"}
//                     Rolling log-likelihood of the document (after an end-of-text token),
//                     in windows of the model's context. Metrics: word_perplexity
//                     (exp(total NLL / words), the WikiText metric), byte_perplexity, bits_per_byte.
//
// Tokenization follows the harness: context and continuation are encoded together and the
// continuation's tokens are those after the context's (so BPE merges across the boundary
// match how the model saw text); trailing whitespace of the context moves to the
// continuation; an empty context becomes the end-of-text token; over-long inputs are
// truncated from the left to the model's context.
//
// The built-in task `heldout_lastword` is a LAMBADA-style task built from held-out text of
// the corpus: passages decoded from each domain's val split, ending in a final word.
import type { BatchScores } from "./loss.ts";

export type TaskType = "multiple_choice" | "lambada" | "word_perplexity";
export const TASK_TYPES: TaskType[] = ["multiple_choice", "lambada", "word_perplexity"];

export interface MultipleChoiceDoc {
  context: string;
  choices: string[];
  answer: number;
  delimiter?: string;
}
export interface TextDoc {
  text: string;
}
export type TaskDoc = MultipleChoiceDoc | TextDoc;

/** What a task needs of a tokenizer (lm/data/tokenizer.ts's Tokenizer fits). */
export interface TextCodec {
  encode(text: string): ArrayLike<number>;
}

/** Scores a (B, T) batch: per-position NLL of y and argmax (lm/eval/loss.ts scoreBatch). */
export type BatchScorer = (
  x: Int32Array,
  y: Int32Array,
  B: number,
  T: number,
) => Promise<BatchScores>;

export interface TaskMetric {
  metric: string;
  value: number;
  n: number;
}

// ---------------------------------------------------------------------------------------
// Reading task files

function describe(v: unknown): string {
  return v === undefined ? "nothing" : JSON.stringify(v);
}

function checkDoc(type: TaskType, obj: unknown): string | null {
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
    return `expected a JSON object, got ${describe(obj)}`;
  }
  const o = obj as Record<string, unknown>;
  if (type === "multiple_choice") {
    if (typeof o.context !== "string") {
      return `"context" must be a string, got ${describe(o.context)}`;
    }
    if (
      !Array.isArray(o.choices) || o.choices.length < 2 ||
      !o.choices.every((c) => typeof c === "string")
    ) {
      return `"choices" must be an array of at least 2 strings, got ${describe(o.choices)}`;
    }
    if (
      typeof o.answer !== "number" || !Number.isInteger(o.answer) || o.answer < 0 ||
      o.answer >= o.choices.length
    ) {
      return `"answer" must be an index into "choices" (0..${o.choices.length - 1}), got ${
        describe(o.answer)
      }`;
    }
    if (o.delimiter !== undefined && typeof o.delimiter !== "string") {
      return `"delimiter" must be a string, got ${describe(o.delimiter)}`;
    }
    return null;
  }
  if (typeof o.text !== "string" || o.text.trim() === "") {
    return `"text" must be a non-empty string, got ${describe(o.text)}`;
  }
  if (type === "lambada" && !/\S\s+\S+\s*$/.test(o.text)) {
    return `"text" must hold at least two words (a context and a final word)`;
  }
  return null;
}

/** Parse JSONL task text of the given type. `source` names the file in error messages. */
export function parseTaskJsonl(text: string, type: TaskType, source: string): TaskDoc[] {
  if (!TASK_TYPES.includes(type)) {
    throw new Error(
      `${source}: unknown task type ${describe(type)}; expected one of ${TASK_TYPES.join(", ")}`,
    );
  }
  const docs: TaskDoc[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "") continue;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      throw new Error(`${source}:${i + 1}: malformed JSON (${(e as Error).message})`);
    }
    const problem = checkDoc(type, obj);
    if (problem) throw new Error(`${source}:${i + 1}: ${problem} for a ${type} task`);
    docs.push(obj as TaskDoc);
  }
  if (docs.length === 0) throw new Error(`${source}: no task lines found`);
  return docs;
}

/** Read a JSONL task file. */
export async function loadTaskFile(path: string, type: TaskType): Promise<TaskDoc[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`task file not found: ${path}`);
    throw e;
  }
  return parseTaskJsonl(text, type, path);
}

// ---------------------------------------------------------------------------------------
// Log-likelihood requests

/** Score `continuation` given `context` (token ids). */
export interface LoglikelihoodRequest {
  context: number[];
  continuation: number[];
}
export interface LoglikelihoodResult {
  /** Sum of log p over the continuation tokens. */
  logprob: number;
  /** Every continuation token is the argmax prediction. */
  greedy: boolean;
}

/**
 * Run log-likelihood requests through the model, at most `maxLen` input tokens each
 * (truncated from the left), batching requests of equal input length.
 */
export async function loglikelihoods(
  requests: LoglikelihoodRequest[],
  scorer: BatchScorer,
  maxLen: number,
  batchSize: number,
): Promise<LoglikelihoodResult[]> {
  interface Prepared {
    index: number;
    x: number[];
    y: number[];
    nCont: number;
  }
  const prepared: Prepared[] = requests.map((r, index) => {
    if (r.continuation.length === 0) throw new Error("zeroshot: empty continuation");
    if (r.context.length === 0) {
      throw new Error("zeroshot: empty context (use the end-of-text token)");
    }
    const whole = [...r.context, ...r.continuation];
    const kept = whole.slice(Math.max(0, whole.length - 1 - maxLen)); // up to maxLen inputs + 1
    const nCont = Math.min(r.continuation.length, kept.length - 1);
    return { index, x: kept.slice(0, -1), y: kept.slice(1), nCont };
  });
  const byLength = new Map<number, Prepared[]>();
  for (const p of prepared) {
    const group = byLength.get(p.x.length) ?? [];
    group.push(p);
    byLength.set(p.x.length, group);
  }
  const results: LoglikelihoodResult[] = new Array(requests.length);
  for (const [T, group] of byLength) {
    for (let start = 0; start < group.length; start += batchSize) {
      const chunk = group.slice(start, start + batchSize);
      const B = chunk.length;
      const x = new Int32Array(B * T);
      const y = new Int32Array(B * T);
      chunk.forEach((p, b) => {
        x.set(p.x, b * T);
        y.set(p.y, b * T);
      });
      const scores = await scorer(x, y, B, T);
      chunk.forEach((p, b) => {
        let logprob = 0;
        let greedy = true;
        for (let t = T - p.nCont; t < T; t++) {
          logprob -= scores.nll[b * T + t];
          if (scores.argmax[b * T + t] !== y[b * T + t]) greedy = false;
        }
        results[p.index] = { logprob, greedy };
      });
    }
  }
  return results;
}

/**
 * Tokenize a (context, continuation) pair as the harness does: the continuation's
 * tokens are those of encode(context + continuation) after encode(context).
 */
export function encodePair(
  codec: TextCodec,
  context: string,
  continuation: string,
  eotId: number,
): LoglikelihoodRequest {
  const trimmed = context.replace(/\s+$/, "");
  const moved = context.slice(trimmed.length);
  const cont = moved + continuation;
  const ctx = Array.from(codec.encode(trimmed));
  const whole = Array.from(codec.encode(trimmed + cont));
  let continuationTokens = whole.slice(ctx.length);
  const samePrefix = ctx.every((t, i) => whole[i] === t);
  if (!samePrefix || continuationTokens.length === 0) {
    continuationTokens = Array.from(codec.encode(cont));
  }
  return { context: ctx.length > 0 ? ctx : [eotId], continuation: continuationTokens };
}

// ---------------------------------------------------------------------------------------
// Tasks

export interface TaskRunOptions {
  codec: TextCodec;
  scorer: BatchScorer;
  /** End-of-text token id (context of documents and empty contexts). */
  eotId: number;
  /** Model context (block_size). */
  maxLen: number;
  batchSize: number;
}

async function runMultipleChoice(
  docs: MultipleChoiceDoc[],
  o: TaskRunOptions,
): Promise<TaskMetric[]> {
  const requests: LoglikelihoodRequest[] = [];
  for (const d of docs) {
    for (const c of d.choices) {
      requests.push(encodePair(o.codec, d.context, (d.delimiter ?? " ") + c, o.eotId));
    }
  }
  const scores = await loglikelihoods(requests, o.scorer, o.maxLen, o.batchSize);
  let correct = 0;
  let correctNorm = 0;
  let r = 0;
  for (const d of docs) {
    const lls = d.choices.map((_, i) => scores[r + i].logprob);
    const norm = d.choices.map((c, i) => lls[i] / Math.max(1, c.length));
    r += d.choices.length;
    if (argmaxIndex(lls) === d.answer) correct++;
    if (argmaxIndex(norm) === d.answer) correctNorm++;
  }
  return [
    { metric: "acc", value: correct / docs.length, n: docs.length },
    { metric: "acc_norm", value: correctNorm / docs.length, n: docs.length },
  ];
}

/** Split a passage into (context, " " + final word) as LAMBADA does. */
export function splitFinalWord(text: string): { context: string; target: string } {
  const m = /^([\s\S]*\S)(\s+)(\S+)\s*$/.exec(text);
  if (!m) {
    throw new Error(`lambada: passage has no final word: ${JSON.stringify(text.slice(0, 60))}`);
  }
  return { context: m[1], target: " " + m[3] };
}

async function runLambada(docs: TextDoc[], o: TaskRunOptions): Promise<TaskMetric[]> {
  const requests = docs.map((d) => {
    const { context, target } = splitFinalWord(d.text);
    return encodePair(o.codec, context, target, o.eotId);
  });
  const scores = await loglikelihoods(requests, o.scorer, o.maxLen, o.batchSize);
  const correct = scores.filter((s) => s.greedy).length;
  const meanLogprob = scores.reduce((a, s) => a + s.logprob, 0) / scores.length;
  return [
    { metric: "acc", value: correct / docs.length, n: docs.length },
    { metric: "ppl", value: Math.exp(-meanLogprob), n: docs.length },
  ];
}

/**
 * Rolling windows over a token list: every token after the first is predicted once, each
 * with as much preceding context as fits in `maxLen`. Returns (input, target, scored) with
 * the scored positions at the end of each window.
 */
export function rollingWindows(
  tokens: number[],
  maxLen: number,
): { x: number[]; y: number[]; nScored: number }[] {
  const windows: { x: number[]; y: number[]; nScored: number }[] = [];
  // predicted positions [a, c) of `tokens`, c - a <= maxLen
  for (let a = 1; a < tokens.length; a += maxLen) {
    const c = Math.min(tokens.length, a + maxLen);
    const s = Math.max(0, c - 1 - maxLen);
    windows.push({ x: tokens.slice(s, c - 1), y: tokens.slice(s + 1, c), nScored: c - a });
  }
  return windows;
}

async function runWordPerplexity(docs: TextDoc[], o: TaskRunOptions): Promise<TaskMetric[]> {
  let totalNll = 0;
  let words = 0;
  let bytes = 0;
  const utf8 = new TextEncoder();
  for (const d of docs) {
    const tokens = [o.eotId, ...Array.from(o.codec.encode(d.text))];
    const requests = rollingWindows(tokens, o.maxLen).map((w) => ({
      context: w.x.slice(0, w.x.length - w.nScored + 1),
      continuation: w.y.slice(w.y.length - w.nScored),
    }));
    for (const s of await loglikelihoods(requests, o.scorer, o.maxLen, o.batchSize)) {
      totalNll -= s.logprob;
    }
    words += d.text.split(/\s+/).filter((p) => p !== "").length;
    bytes += utf8.encode(d.text).length;
  }
  return [
    { metric: "word_perplexity", value: Math.exp(totalNll / words), n: docs.length },
    { metric: "byte_perplexity", value: Math.exp(totalNll / bytes), n: docs.length },
    { metric: "bits_per_byte", value: totalNll / bytes / Math.LN2, n: docs.length },
  ];
}

function argmaxIndex(values: number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

/** Score a task's documents; returns its metrics. */
export function runTask(type: TaskType, docs: TaskDoc[], o: TaskRunOptions): Promise<TaskMetric[]> {
  switch (type) {
    case "multiple_choice":
      return runMultipleChoice(docs as MultipleChoiceDoc[], o);
    case "lambada":
      return runLambada(docs as TextDoc[], o);
    case "word_perplexity":
      return runWordPerplexity(docs as TextDoc[], o);
  }
}

// ---------------------------------------------------------------------------------------
// Built-in task: final-word prediction on held-out passages

export interface LastWordOptions {
  /** Passages to build (fewer if the text runs out). */
  passages: number;
  /** Tokens of held-out text each passage is cut from. */
  passageTokens: number;
  /** End-of-text token id: passages never cross a document boundary. */
  eotId: number;
  /** Words of context a passage needs before its final word. */
  minContextWords?: number;
  /** Accept a candidate final word (e.g. reject words the vocabulary maps to <unk>). */
  acceptWord?: (word: string) => boolean;
}

const FINAL_WORD = /^[A-Za-z][a-z]+$/;

/**
 * LAMBADA-style documents from held-out tokens: `passages` evenly spaced, non-overlapping
 * cuts of the token stream, decoded, with the partial first word dropped and ending at the last whole
 * alphabetic word (at least two letters) that is not the cut's final piece.
 */
export function buildLastWordDocs(
  tokens: ArrayLike<number>,
  decode: (tokens: number[]) => string,
  opts: LastWordOptions,
): TextDoc[] {
  const minWords = opts.minContextWords ?? 8;
  const len = tokens.length;
  const docs: TextDoc[] = [];
  // at most as many cuts as fit without overlapping, so no two passages share text
  const count = Math.min(opts.passages, Math.floor(len / opts.passageTokens));
  if (count <= 0) return docs;
  const stride = count > 1 ? (len - opts.passageTokens) / (count - 1) : 0;
  const seen = new Set<number>();
  for (let i = 0; i < count; i++) {
    const start = Math.floor(i * stride);
    if (seen.has(start)) continue;
    seen.add(start);
    const chunk = Array.from({ length: opts.passageTokens }, (_, j) => tokens[start + j]);
    // longest run without an end-of-text token
    let best: number[] = [];
    let run: number[] = [];
    for (const t of [...chunk, opts.eotId]) {
      if (t === opts.eotId) {
        if (run.length > best.length) best = run;
        run = [];
      } else run.push(t);
    }
    const pieces = decode(best).split(/(\s+)/); // words and the whitespace between them
    // drop the (possibly cut) first word and last word
    const words: { text: string; end: number }[] = [];
    let offset = 0;
    for (const p of pieces) {
      offset += p.length;
      if (p !== "" && !/^\s+$/.test(p)) words.push({ text: p, end: offset });
    }
    const inner = words.slice(1, -1);
    let final = -1;
    for (let k = inner.length - 1; k >= minWords; k--) {
      if (FINAL_WORD.test(inner[k].text) && (opts.acceptWord?.(inner[k].text) ?? true)) {
        final = k;
        break;
      }
    }
    if (final < 0) continue;
    const text = pieces.join("");
    const from = words[0].end;
    const passage = text.slice(from, inner[final].end).trim().replace(/\s+/g, " ");
    docs.push({ text: passage });
  }
  return docs;
}

/** JSONL text of documents (one object per line), e.g. to save a built task. */
export function toJsonl(docs: TaskDoc[]): string {
  return docs.map((d) => JSON.stringify(d)).join("\n") + "\n";
}
