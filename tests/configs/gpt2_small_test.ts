// configs/gpt2-small.yaml (the main job at the paper's scale) through the real command
// line with --dry-run: the train instance's line carries its disk estimate (gigabytes,
// not a terabyte) and, once a webgpu train run has been measured in the artifacts
// folder, its time; before that it says the time is unknown and why.
import assert from "node:assert/strict";
import { RUN_MANIFEST, type RunManifest } from "../../lm/train/estimate.ts";
import { modelConfig } from "../../lm/model/gpt.ts";

const CONFIG = new URL("../../configs/gpt2-small.yaml", import.meta.url).pathname;
const MAIN = new URL("../../main.ts", import.meta.url).pathname;

async function dryRun(artifacts: string): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, "run", CONFIG, "--dry-run", "--artifacts", artifacts],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  const text = dec.decode(out.stdout) + dec.decode(out.stderr);
  assert.equal(out.code, 0, text);
  return text;
}

Deno.test("gpt2-small --dry-run prints the train instance's disk and time estimates", async () => {
  const artifacts = await Deno.makeTempDir({ prefix: "gpt2-small-" });
  try {
    const before = await dryRun(artifacts);
    const trainLine = (text: string) => text.split("\n").find((l) => /would run train\b/.test(l));
    const first = trainLine(before);
    assert.ok(first, before);
    const disk = /disk ([\d.]+) GB \(peak ([\d.]+) GB, (\d+) checkpoints\)/.exec(first!);
    assert.ok(disk, first);
    assert.ok(Number(disk[1]) > 5 && Number(disk[1]) < 100, `final disk ${disk[1]} GB`);
    assert.match(first!, /time unknown: no finished train run on webgpu/);

    // A measured webgpu run (cpu-micro at 2,000 tok/s) in the cache: the time follows,
    // scaled by FLOPs per token to GPT-2 small.
    const measured: RunManifest = {
      format: "train-run/1",
      backend: "webgpu",
      backend_version: "4.22.0",
      backend_detail: "Test GPU (vendor test)",
      adapter: null,
      preset: "cpu-micro",
      model: modelConfig("cpu-micro", 4096),
      n_params: 0,
      flops_per_token: 1e7,
      batch_tokens: 2048,
      status: "completed",
      steps_done: 6,
      tokens_per_s: 2000,
      finished: new Date().toISOString(),
    };
    await Deno.mkdir(`${artifacts}/cache/measured`, { recursive: true });
    await Deno.writeTextFile(
      `${artifacts}/cache/measured/${RUN_MANIFEST}`,
      JSON.stringify(measured),
    );
    const second = trainLine(await dryRun(artifacts));
    assert.match(second!, /time ≈ [\d.,]+ (years|days|h|min) at [\d.]+k? tok\/s/);
    assert.match(second!, /webgpu on Test GPU/);
    assert.match(second!, /scaled by FLOPs from 2000 tok\/s of cpu-micro/);
  } finally {
    await Deno.remove(artifacts, { recursive: true });
  }
});
