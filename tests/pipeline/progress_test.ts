import assert from "node:assert/strict";
import { createReporter, formatDuration } from "../../pipeline/progress.ts";

function capture(everyS: number) {
  let text = "";
  const reporter = createReporter({ live: false, write: (t) => (text += t), everyS });
  return { reporter, text: () => text };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("off a terminal, a running instance prints progress lines with rate and ETA", async () => {
  const { reporter, text } = capture(0.05);
  try {
    reporter.event("train", "running");
    const progress = reporter.progressFor("train");
    progress.start("train train", 100, "step");
    progress.update(10, "loss 4.000 · 1.0k tok/s");
    await sleep(60);
    progress.update(40, "loss 3.500 · 1.1k tok/s");
    await sleep(200);
    reporter.event("train", "ok");
  } finally {
    reporter.close();
  }
  const lines = text().split("\n");
  const progressLines = lines.filter((l) => /^ {8}train: /.test(l));
  assert.ok(progressLines.length >= 2, text());
  assert.match(
    progressLines.at(-1)!,
    /^ {8}train: 40\/100 step · [\d.]+ step\/s · ETA \S+ · loss 3\.500 · 1\.1k tok\/s · \S+ elapsed$/,
  );
  // The final info stays on the ok line; the bar's label does not repeat the node's.
  assert.match(
    lines.find((l) => l.startsWith("ok"))!,
    /^ok {6}train \(\S+\) · 40\/100 step · loss 3\.500/,
  );
  assert.doesNotMatch(text(), /train train/);
});

Deno.test("no progress line before the interval; a step's own prefix is not repeated", async () => {
  const { reporter, text } = capture(3600);
  try {
    reporter.event("corpus", "running");
    const progress = reporter.progressFor("corpus");
    progress.start("corpus", 3, "source");
    progress.update(1);
    progress.log("corpus: 68 documents");
    progress.log("note: kept as is");
    await sleep(50);
    reporter.event("corpus", "failed", "boom");
  } finally {
    reporter.close();
  }
  assert.deepEqual(text().split("\n").filter((l) => l), [
    "running corpus",
    "        corpus: 68 documents",
    "        corpus: note: kept as is",
    text().split("\n").find((l) => l.startsWith("failed"))!,
  ]);
  assert.match(text(), /^failed {2}corpus \(\S+\): boom$/m);
});

Deno.test("durations read as seconds, minutes or hours", () => {
  assert.equal(formatDuration(4.25), "4.3s");
  assert.equal(formatDuration(125), "2m05s");
  assert.equal(formatDuration(3 * 3600 + 7 * 60), "3h07m");
});
