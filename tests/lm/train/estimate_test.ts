// Tests of lm/train/estimate.ts: FLOPs per token, time from a measured run (scaled by
// FLOPs for another model), and the units of the dry-run text. Disk and the train
// manifest are tested through a training run in tests/lm/checkpoints/train_disk_test.ts.
import assert from "node:assert/strict";
import {
  estimateSeconds,
  flopsPerToken,
  formatBytes,
  formatDuration,
  lastMeasured,
  RUN_MANIFEST,
  storedParams,
} from "../../../lm/train/estimate.ts";
import { modelConfig } from "../../../lm/model/gpt.ts";

Deno.test("GPT-2 small: 124M stored numbers, about 0.86 GFLOP per trained token", () => {
  const cfg = modelConfig("gpt2-small", 50257);
  // wte 50257x768 + wpe 1024x768 + 12 blocks of 12·768² + 13·768 + ln_f 2·768.
  assert.equal(
    storedParams(cfg),
    50257 * 768 + 1024 * 768 + 12 * (12 * 768 * 768 + 13 * 768) + 2 * 768,
  );
  const flops = flopsPerToken(cfg, 1024);
  assert.ok(flops > 0.8e9 && flops < 0.9e9, `${flops}`);
});

Deno.test("time from a measured run, scaled by FLOPs per token", () => {
  assert.equal(estimateSeconds(1000, 10, null), null);
  assert.equal(estimateSeconds(1000, 10, { tokens_per_s: null, flops_per_token: 10 }), null);
  assert.equal(estimateSeconds(1000, 10, { tokens_per_s: 100, flops_per_token: 10 }), 10);
  // A model twice as costly per token trains at half the measured rate.
  assert.equal(estimateSeconds(1000, 20, { tokens_per_s: 100, flops_per_token: 10 }), 20);
});

Deno.test("bytes and durations read as people write them", () => {
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(26.1e9), "26 GB");
  assert.equal(formatBytes(3.52e11), "352 GB");
  assert.equal(formatDuration(42), "42 s");
  assert.equal(formatDuration(600), "10 min");
  assert.equal(formatDuration(3 * 3600), "3.0 h");
  assert.equal(formatDuration(10 * 86400), "10.0 days");
  assert.equal(formatDuration(579206 * 86400), "1,586 years");
});

Deno.test("the measured run of the same model is preferred to a newer one of another", async () => {
  const artifacts = await Deno.makeTempDir({ prefix: "estimate-" });
  try {
    const run = (name: string, flops: number, finished: string, backend = "webgpu") =>
      Deno.mkdir(`${artifacts}/cache/${name}`, { recursive: true }).then(() =>
        Deno.writeTextFile(
          `${artifacts}/cache/${name}/${RUN_MANIFEST}`,
          JSON.stringify({
            format: "train-run/1",
            backend,
            flops_per_token: flops,
            tokens_per_s: 100,
            finished,
          }),
        )
      );
    await run("a", 10, "2026-01-01T00:00:00Z");
    await run("b", 20, "2026-02-01T00:00:00Z");
    await run("c", 10, "2026-03-01T00:00:00Z", "wasm");
    assert.equal((await lastMeasured(artifacts, "webgpu"))?.flops_per_token, 20);
    assert.equal((await lastMeasured(artifacts, "webgpu", 10))?.flops_per_token, 10);
    assert.equal((await lastMeasured(artifacts, "webgpu", 30))?.flops_per_token, 20);
    assert.equal(await lastMeasured(`${artifacts}/none`, "webgpu"), null);
  } finally {
    await Deno.remove(artifacts, { recursive: true });
  }
});
