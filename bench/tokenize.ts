// Tokenization throughput of the `tokenize` step on the default corpus, against the raw
// `gpt-tokenizer` r50k encoder on the same documents in the same run. The step also reads
// the corpus files, adds end-of-text ids, remaps (compact, with its byte fallback) and
// writes the .bin files: the goal is that all of it costs under 1.5x the raw encoder.
// Throughput is in GPT-2 tokens of the same text for every case; "ids" is what each case
// writes (the compact byte fallback writes more ids than GPT-2 tokens).
//
//   deno run --allow-all bench/tokenize.ts [--reps N] [--max-docs N]
import { encode } from "gpt-tokenizer/encoding/r50k_base";
import { corpusStep } from "../steps/corpus.ts";
import { tokenizeStep } from "../steps/tokenize.ts";
import { readCorpusSummary, readDocuments, type SplitName } from "../lm/data/corpus.ts";
import type { StepContext } from "../pipeline/step.ts";

function flag(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Number(Deno.args[i + 1]) : fallback;
}
const reps = flag("reps", 3);
const maxDocs = flag("max-docs", 0);

function quietContext(outDir: string): StepContext {
  return {
    key: "bench",
    node: "bench",
    outDir,
    backend: "cpu",
    seed: 0,
    signal: new AbortController().signal,
    progress: { start() {}, update() {}, log() {} },
    results: {
      append() {
        throw new Error("bench: no results expected");
      },
      query() {
        return Promise.reject(new Error("bench: no results expected"));
      },
    },
  };
}

const corpusDir = await Deno.makeTempDir({ prefix: "bench-corpus-" });
const corpusParams = corpusStep.params.parse(maxDocs > 0 ? { max_docs_per_domain: maxDocs } : {});
await corpusStep.run(quietContext(corpusDir), corpusParams, {});

// The same documents the step reads, in its order.
const summary = await readCorpusSummary(corpusDir);
const texts: string[] = [];
for (const split of ["train", "val"] as SplitName[]) {
  for (const domain of Object.keys(summary.splits[split])) {
    for (const doc of await readDocuments(corpusDir, split, domain)) texts.push(doc.text);
  }
}
const chars = texts.reduce((n, t) => n + t.length, 0);

function rawEncode(): number {
  let tokens = 0;
  for (const t of texts) tokens += encode(t).length + 1; // + end-of-text, as the step counts
  return tokens;
}

async function runStep(tokenizer: "gpt2" | "compact", vocabSize?: number): Promise<number> {
  const outDir = await Deno.makeTempDir({ prefix: "bench-tokens-" });
  try {
    const params = tokenizeStep.params.parse({ tokenizer, vocab_size: vocabSize });
    const input = { key: "c", step: "corpus", node: "corpus", params: {}, dir: corpusDir };
    await tokenizeStep.run(quietContext(outDir), params, { corpus: input });
    const meta = JSON.parse(await Deno.readTextFile(`${outDir}/meta.json`));
    return Object.values(meta.counts as Record<string, number>).reduce((a, b) => a + b, 0);
  } finally {
    await Deno.remove(outDir, { recursive: true });
  }
}

const cases: Array<{ name: string; run: () => number | Promise<number> }> = [
  { name: "raw gpt-tokenizer r50k encode", run: rawEncode },
  { name: "tokenize step, gpt2", run: () => runStep("gpt2") },
  { name: "tokenize step, compact 8192", run: () => runStep("compact", 8192) },
  { name: "tokenize step, compact 4096", run: () => runStep("compact", 4096) },
];
const times: number[][] = cases.map(() => []);
const tokenCounts: number[] = cases.map(() => 0);

console.log(
  `default corpus${maxDocs > 0 ? ` (<= ${maxDocs} docs per domain)` : ""}: ` +
    `${texts.length} documents, ${(chars / 1e6).toFixed(2)} M characters; 1 warm-up + ${reps} runs`,
);
for (let rep = 0; rep <= reps; rep++) {
  // Interleave the cases so that drift on a shared machine hits all of them alike.
  for (const [i, c] of cases.entries()) {
    const t0 = performance.now();
    tokenCounts[i] = await c.run();
    const seconds = (performance.now() - t0) / 1000;
    if (rep > 0) times[i].push(seconds);
  }
}
await Deno.remove(corpusDir, { recursive: true });

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const baseMin = Math.min(...times[0]);
const baseMedian = median(times[0]);
for (const [i, c] of cases.entries()) {
  const min = Math.min(...times[i]);
  const med = median(times[i]);
  console.log(
    `${c.name.padEnd(32)} ${tokenCounts[i]} ids (${
      (tokenCounts[i] / tokenCounts[0]).toFixed(2)
    }x GPT-2)  min ${min.toFixed(3)} s  median ${med.toFixed(3)} s  ${
      (tokenCounts[0] / med / 1e6).toFixed(3)
    } M GPT-2 tok/s (median)  ` +
      `time ratio vs raw: min ${(min / baseMin).toFixed(2)}x, median ${
        (med / baseMedian).toFixed(2)
      }x`,
  );
}
console.log("goal: the step's time ratio vs raw encode under 1.5x");
