// Zero-shot scoring: task file parsing (with line-numbered errors), the tokenization and
// scoring arithmetic against a scripted scorer, the built-in final-word task, and the
// multiple-choice scorer on a tiny GPT trained on the correct answers.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { setBackend } from "../../../lm/backend/backend.ts";
import { type GPTConfig, initWeights, meanLoss } from "../../../lm/model/gpt.ts";
import { scoreBatch } from "../../../lm/eval/loss.ts";
import {
  type BatchScorer,
  buildLastWordDocs,
  encodePair,
  loadTaskFile,
  loglikelihoods,
  type MultipleChoiceDoc,
  parseTaskJsonl,
  rollingWindows,
  runTask,
  splitFinalWord,
  type TextDoc,
} from "../../../lm/eval/zeroshot.ts";

const fixtureDir = new URL("../../fixtures/zeroshot/", import.meta.url).pathname;

/** Character-level codec: id 0 is end-of-text, then one id per character of `alphabet`. */
function charCodec(alphabet: string): {
  encode(text: string): number[];
  decode(ids: number[]): string;
  vocab: number;
} {
  const chars = [...new Set(alphabet)].sort();
  const id = new Map(chars.map((c, i) => [c, i + 1]));
  return {
    vocab: chars.length + 1,
    encode: (text: string) =>
      [...text].map((c) => {
        const v = id.get(c);
        if (v === undefined) throw new Error(`char ${JSON.stringify(c)} not in the alphabet`);
        return v;
      }),
    decode: (ids: number[]) => ids.map((i) => chars[i - 1] ?? "").join(""),
  };
}

Deno.test("task files of each format parse", async () => {
  const mc = await loadTaskFile(
    `${fixtureDir}multiple_choice.jsonl`,
    "multiple_choice",
  ) as MultipleChoiceDoc[];
  assert.equal(mc.length, 3);
  assert.deepEqual(mc[1].choices, ["seven", "green"]);
  assert.equal(mc[2].delimiter, "\nAnswer: ");
  const lam = await loadTaskFile(`${fixtureDir}lambada.jsonl`, "lambada") as TextDoc[];
  assert.equal(lam.length, 2);
  assert.deepEqual(splitFinalWord(lam[0].text), {
    context:
      "She opened the old wooden box and inside, wrapped in cloth, was her grandmother's silver",
    target: " ring",
  });
  const wiki = await loadTaskFile(`${fixtureDir}word_perplexity.jsonl`, "word_perplexity");
  assert.equal(wiki.length, 2);
});

Deno.test("a malformed JSONL line is rejected with its line number", async () => {
  await assert.rejects(
    () => loadTaskFile(`${fixtureDir}malformed.jsonl`, "multiple_choice"),
    /malformed\.jsonl:3: malformed JSON/,
  );
  await assert.rejects(
    () => loadTaskFile(`${fixtureDir}bad_answer.jsonl`, "multiple_choice"),
    /bad_answer\.jsonl:3: "answer" must be an index into "choices" \(0\.\.1\), got 5/,
  );
  assert.throws(
    () => parseTaskJsonl('{"text": "x y"}\n{"txt": "a b"}', "lambada", "t.jsonl"),
    /t\.jsonl:2: "text" must be/,
  );
  assert.throws(
    () => parseTaskJsonl('{"text": "single"}', "lambada", "t.jsonl"),
    /t\.jsonl:1: .*at least two words/,
  );
  await assert.rejects(
    () => loadTaskFile(`${fixtureDir}nope.jsonl`, "lambada"),
    /task file not found: .*nope\.jsonl/,
  );
});

Deno.test("encodePair moves the context's trailing space into the continuation", () => {
  const codec = charCodec("ab c");
  const r = encodePair(codec, "ab ", "c", 0);
  assert.deepEqual(r.context, codec.encode("ab"));
  assert.deepEqual(r.continuation, codec.encode(" c"));
  assert.deepEqual(encodePair(codec, "", "ab", 0).context, [0]); // empty context -> end-of-text
});

/** A scripted scorer: nll of target y is y/10; the argmax is y when y is even, else 0. */
const scripted: BatchScorer = (x, y, B, T) => {
  assert.equal(x.length, B * T);
  return Promise.resolve({
    nll: Float32Array.from(y, (v) => v / 10),
    argmax: Int32Array.from(y, (v) => (v % 2 === 0 ? v : 0)),
  });
};

Deno.test("loglikelihoods sum the continuation's log-probs, truncate left, batch by length", async () => {
  const results = await loglikelihoods(
    [
      { context: [1, 2, 3], continuation: [4, 6] },
      { context: [5], continuation: [7] },
      { context: [9, 9, 9, 9, 9, 9], continuation: [2, 8] }, // longer than maxLen: left-truncated
      { context: [1, 1, 1], continuation: [3, 4] },
    ],
    scripted,
    4,
    2,
  );
  assert.ok(Math.abs(results[0].logprob + 1.0) < 1e-6);
  assert.equal(results[0].greedy, true);
  assert.ok(Math.abs(results[1].logprob + 0.7) < 1e-6);
  assert.equal(results[1].greedy, false);
  assert.ok(Math.abs(results[2].logprob + 1.0) < 1e-6);
  assert.equal(results[3].greedy, false);
});

Deno.test("rolling windows predict every token once with context up to maxLen", () => {
  const tokens = Array.from({ length: 11 }, (_, i) => 100 + i);
  const windows = rollingWindows(tokens, 4);
  const predicted: number[] = [];
  for (const w of windows) {
    assert.ok(w.x.length <= 4 && w.x.length === w.y.length);
    // y is x shifted by one in the token list
    w.y.forEach((t, i) => assert.equal(t, tokens[tokens.indexOf(w.x[i]) + 1]));
    predicted.push(...w.y.slice(w.y.length - w.nScored));
  }
  assert.deepEqual(predicted, tokens.slice(1));
});

Deno.test("metrics of each task type from a scripted scorer", async () => {
  const codec = charCodec("abcdefghijklmnopqrstuvwxyz .");
  const o = { codec, scorer: scripted, eotId: 0, maxLen: 16, batchSize: 4 };
  // word perplexity: total NLL = Σ id/10 over the document's characters
  const text = "ab cd. efg";
  const [wp, bp, bpb] = await runTask("word_perplexity", [{ text }], o);
  const nll = codec.encode(text).reduce((a: number, v) => a + v / 10, 0);
  assert.equal(wp.metric, "word_perplexity");
  assert.ok(Math.abs(wp.value - Math.exp(nll / 3)) < 1e-4 * wp.value);
  assert.ok(Math.abs(bp.value - Math.exp(nll / text.length)) < 1e-4 * bp.value);
  assert.ok(Math.abs(bpb.value - nll / text.length / Math.LN2) < 1e-4);
  // multiple choice: lower ids are likelier; acc_norm divides by the choice's length
  const [acc, accNorm] = await runTask("multiple_choice", [
    { context: "q", choices: ["b", "zz"], answer: 0 },
    // "m" is likelier in total, the ten a's per character: acc right, acc_norm wrong
    { context: "q", choices: ["aaaaaaaaaa", "m"], answer: 1 },
  ], o);
  assert.equal(acc.value, 1);
  assert.equal(accNorm.value, 0.5);
  assert.equal(acc.n, 2);
});

Deno.test("the built-in final-word task cuts passages at word boundaries inside documents", () => {
  const words = [
    "<eot>",
    ...("the cat sat on a mat while one dog ran past it and then Rex barked at 3 birds".split(" ")),
  ];
  const ids: number[] = [];
  for (let i = 0; i < 400; i++) ids.push(i % 97 === 50 ? 0 : 1 + (i * 7) % (words.length - 1));
  const decode = (t: number[]) => t.map((i) => (i === 0 ? "" : " " + words[i])).join("");
  const docs = buildLastWordDocs(ids, decode, {
    passages: 5,
    passageTokens: 30,
    eotId: 0,
    minContextWords: 4,
  });
  assert.ok(docs.length >= 4);
  for (const d of docs) {
    const { context, target } = splitFinalWord(d.text);
    assert.match(target, /^ [A-Za-z][a-z]+$/);
    assert.ok(!target.includes("Rex") && !target.includes("3"));
    assert.ok(context.split(" ").length >= 4);
    assert.ok(!d.text.includes("<eot>"));
  }
  // never more passages than non-overlapping cuts fit: 400 tokens / 30 = 13
  const many = buildLastWordDocs(ids, decode, {
    passages: 50,
    passageTokens: 30,
    eotId: 0,
    minContextWords: 4,
  });
  assert.ok(many.length > docs.length && many.length <= 13);
  assert.deepEqual(
    buildLastWordDocs(ids.slice(0, 10), decode, { passages: 5, passageTokens: 30, eotId: 0 }),
    [],
  );
  const rejected = buildLastWordDocs(ids, decode, {
    passages: 5,
    passageTokens: 30,
    eotId: 0,
    acceptWord: () => false,
  });
  assert.equal(rejected.length, 0);
});

Deno.test("multiple choice picks the answer a tiny GPT was trained on", async () => {
  await setBackend("wasm");
  const docs = parseTaskJsonl(
    await Deno.readTextFile(`${fixtureDir}memorized_mc.jsonl`),
    "multiple_choice",
    "memorized_mc.jsonl",
  ) as MultipleChoiceDoc[];
  const alphabet = docs.flatMap((d) => [d.context, ...d.choices].map((s) => s + " ")).join("");
  const codec = charCodec(alphabet);
  // training stream: each question with its correct answer, between end-of-text tokens
  const stream = [0];
  for (const d of docs) stream.push(...codec.encode(`${d.context} ${d.choices[d.answer]}`), 0);
  const cfg: GPTConfig = {
    n_layer: 2,
    n_head: 2,
    n_embd: 32,
    vocab_size: codec.vocab,
    block_size: 32,
    bias: false,
  };
  const w = initWeights(cfg, 7);
  const optimizer = tf.train.adam(1e-2);
  const T = 24;
  const B = 8;
  let rngState = 1;
  const rand = () => (rngState = (rngState * 1103515245 + 12345) % 2147483648) / 2147483648;
  let last = Infinity;
  for (let step = 0; step < 60; step++) {
    const x = new Int32Array(B * T);
    const y = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const o = Math.floor(rand() * (stream.length - T - 1));
      for (let t = 0; t < T; t++) {
        x[b * T + t] = stream[o + t];
        y[b * T + t] = stream[o + t + 1];
      }
    }
    const loss = optimizer.minimize(
      () =>
        tf.tidy(() =>
          meanLoss(cfg, w, tf.tensor2d(x, [B, T], "int32"), tf.tensor2d(y, [B, T], "int32"))
        ),
      true,
    )!;
    last = (await loss.data())[0];
    loss.dispose();
  }
  assert.ok(last < 0.5, `training loss ${last} should be small after memorizing`);
  const [acc, accNorm] = await runTask("multiple_choice", docs, {
    codec,
    scorer: (x, y, b, t) => scoreBatch(cfg, w, x, y, b, t),
    eotId: 0,
    maxLen: cfg.block_size,
    batchSize: 4,
  });
  assert.equal(acc.value, 1);
  assert.equal(accNorm.value, 1);
  // a LAMBADA-style passage from the training text: the final word is predicted greedily
  const [lamAcc] = await runTask(
    "lambada",
    [{ text: `${docs[0].context} ${docs[0].choices[0]}` }],
    {
      codec,
      scorer: (x, y, b, t) => scoreBatch(cfg, w, x, y, b, t),
      eotId: 0,
      maxLen: cfg.block_size,
      batchSize: 4,
    },
  );
  assert.equal(lamAcc.value, 1);
  optimizer.dispose();
  for (const v of Object.values(w)) v.dispose();
});
