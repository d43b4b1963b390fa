// results.md rendering and the README copy: signs, intervals, verdicts, provenance, and
// the marked README block replaced without touching anything around it.
import assert from "node:assert/strict";
import {
  intervalText,
  markedPipelines,
  markers,
  renderResults,
  replaceBetweenMarkers,
  signed,
} from "../../report/results_md.ts";

const doc = {
  pipeline: "ablation-k-nu",
  config: "configs/ablation-k-nu.yaml",
  seeds: [0, 1],
  commit: "0123456789abcdef0123456789abcdef01234567",
  setup: "Setup: model cpu-micro.",
  claims: [{
    claim: "At 10× LR, LAWA lowers held-out loss (Fig. 2a)",
    shows: "below it at 10 of 11 steps | sure at 9",
    interval: { gap: -0.0123, lower: -0.02, upper: -0.004 },
    needs: "upper < 0",
    verdict: "reproduced" as const,
  }],
  series: [{
    label: "LAWA k=5 ν=5",
    lr: 0.02,
    preset: "cpu-micro",
    stepsTotal: 1200,
    seeds: "2 pooled",
    span: "200–1200",
    interval: { gap: 0.001, lower: -0.002, upper: 0.004 },
  }],
};

Deno.test("signed and intervalText give explicit signs and no negative zero", () => {
  assert.equal(signed(0.01234), "+0.0123");
  assert.equal(signed(-0.01234), "-0.0123");
  assert.equal(signed(-0.00001), "+0.0000");
  assert.equal(intervalText({ gap: -0.5, lower: -0.6, upper: -0.4 }), "-0.5000 [-0.6000, -0.4000]");
  assert.equal(intervalText(null), "—");
});

Deno.test("renderResults: provenance, one row per claim, verdicts, escaped cells", () => {
  const md = renderResults(doc);
  assert.match(md, /^# Results: ablation-k-nu\n/);
  assert.match(md, /`configs\/ablation-k-nu\.yaml`, seeds 0, 1, commit `0123456789abcdef/);
  assert.match(
    md,
    /\| At 10× LR, LAWA lowers held-out loss \(Fig\. 2a\) \| below it at 10 of 11 steps \\\| sure at 9 \| -0\.0123 \[-0\.0200, -0\.0040\] \| reproduced \|/,
  );
  assert.match(
    md,
    /\| LAWA k=5 ν=5 \| 0\.02 \| cpu-micro \| 1200 \| 2 pooled \| 200–1200 \| \+0\.0010 \[-0\.0020, \+0\.0040\] \| no \|/,
  );
});

Deno.test("replaceBetweenMarkers swaps only the marked block, title dropped", () => {
  const m = markers("ablation-k-nu");
  const readme = `intro\n${m.begin}\nold numbers\n${m.end}\noutro\n`;
  assert.deepEqual(markedPipelines(readme), ["ablation-k-nu"]);
  const out = replaceBetweenMarkers(readme, "ablation-k-nu", renderResults(doc));
  assert.ok(out.startsWith(`intro\n${m.begin}\n\nWritten by the pipeline`));
  assert.ok(out.endsWith(`\n\n${m.end}\noutro\n`));
  assert.doesNotMatch(out, /old numbers|# Results/);
  // Idempotent: copying the same results twice changes nothing.
  assert.equal(replaceBetweenMarkers(out, "ablation-k-nu", renderResults(doc)), out);
  assert.throws(() => replaceBetweenMarkers("no block", "lr-sweep", "x"), /no .* block/);
});
