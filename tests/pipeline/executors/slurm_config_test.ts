// The `executor:` section (checked against the pipeline's nodes and kinds), the
// resources each instance's job asks for, and the batch script it runs.
import assert from "node:assert/strict";
import { z } from "zod";
import { expandPipeline } from "../../../pipeline/expand.ts";
import { loadConfig, type PipelineConfig } from "../../../pipeline/config.ts";
import { STEP_KINDS } from "../../../steps/registry.ts";
import { defineStep } from "../../../pipeline/step.ts";
import {
  parseExecutorSection,
  resourcesFor,
  sbatchArgs,
} from "../../../pipeline/executors/slurm_config.ts";
import { shellQuote, SlurmExecutor } from "../../../pipeline/executors/slurm.ts";
import { Store } from "../../../pipeline/store.ts";
import { silentReporter } from "../../../pipeline/status.ts";

const noop = () => Promise.resolve();
const train = defineStep({
  name: "train",
  module: import.meta.url,
  params: z.object({ lr: z.number().default(1) }),
  inputs: [],
  run: noop,
});
const evaluate = defineStep({
  name: "evaluate",
  module: import.meta.url,
  params: z.object({ windows: z.number().default(1) }),
  inputs: ["series"],
  run: noop,
});

function pipeline() {
  const config: PipelineConfig = {
    file: "p.yaml",
    defaults: {},
    steps: {
      train: { kind: "train", inputs: {}, params: { lr: [1, 2] } },
      "eval-a": { kind: "evaluate", inputs: { series: "train" }, params: {} },
      "eval-b": { kind: "evaluate", inputs: { series: "train" }, params: { windows: 2 } },
    },
  };
  return expandPipeline(config, [train, evaluate]);
}

Deno.test("node entries win over kind entries, which win over the defaults", () => {
  const p = pipeline();
  const settings = parseExecutorSection({
    type: "slurm",
    retries: 3,
    poll_s: 0.5,
    defaults: { partition: "cpu", time: "01:00:00", cpus: 2 },
    train: { partition: "gpu", gres: "gpu:1", cpus: 8, mem: "64G", extra: ["--exclusive"] },
    evaluate: { mem: "8G" },
    "eval-b": { time: "00:10:00", qos: "short" },
  }, p);
  assert.equal(settings.type, "slurm");
  assert.equal(settings.retries, 3);
  assert.equal(settings.pollMs, 500);
  const of = (node: string) => resourcesFor(settings, p.instances.find((i) => i.node === node)!);
  assert.deepEqual(sbatchArgs(of("train")), [
    "--partition=gpu",
    "--gres=gpu:1",
    "--cpus-per-task=8",
    "--mem=64G",
    "--time=01:00:00",
    "--exclusive",
  ]);
  assert.deepEqual(sbatchArgs(of("eval-a")), [
    "--partition=cpu",
    "--cpus-per-task=2",
    "--mem=8G",
    "--time=01:00:00",
  ]);
  assert.deepEqual(sbatchArgs(of("eval-b")), [
    "--partition=cpu",
    "--qos=short",
    "--cpus-per-task=2",
    "--mem=8G",
    "--time=00:10:00",
  ]);
});

Deno.test("no section: defaults (one retry, 5 s polls, no resources)", () => {
  const s = parseExecutorSection(undefined, pipeline());
  assert.deepEqual(s, { retries: 1, pollMs: 5000, defaults: {}, entries: {} });
});

Deno.test("a misspelt node or field is one line naming what exists", () => {
  assert.throws(
    () => parseExecutorSection({ trian: { cpus: 2 } }, pipeline()),
    /p\.yaml: executor\.trian: no node or step kind named "trian" in the pipeline \(nodes: train, eval-a, eval-b; kinds: train, evaluate\)/,
  );
  assert.throws(
    () => parseExecutorSection({ train: { gpus: 2 } }, pipeline()),
    /p\.yaml: executor\.train: unknown field "gpus"/,
  );
  assert.throws(
    () => parseExecutorSection({ defaults: { cpus: "many" } }, pipeline()),
    /p\.yaml: executor\.defaults\.cpus: expected number/,
  );
  assert.throws(
    () => parseExecutorSection({ type: "kubernetes" }, pipeline()),
    /executor\.type: expected one of "local", "slurm"/,
  );
});

Deno.test("the job script runs run-instance with the coordinator's arguments, quoted", () => {
  const p = pipeline();
  const instance = p.instances.find((i) => i.node === "eval-a")!;
  const executor = new SlurmExecutor({
    store: new Store("/shared/my artifacts"),
    pipelineFile: "/home/u/p.yaml",
    mainModule: "/home/u/lawa/main.ts",
    cwd: "/home/u",
    cliArgs: ["--set", "train.lr=[1, 2]", "--seed", "3"],
    settings: parseExecutorSection({ defaults: { setup: ["module load deno"] } }, p),
  });
  const script = executor.script(
    {
      instance,
      key: "k".repeat(64),
      upstream: {},
      forced: true,
      reporter: silentReporter,
      signal: new AbortController().signal,
    },
    "/shared/my artifacts/slurm/logs/eval-a-kkk",
    "/opt/deno",
    ["module load deno"],
  );
  const lines = script.split("\n");
  assert.equal(lines[0], "#!/bin/bash");
  assert.ok(lines.includes("module load deno"));
  const command = lines.find((l) => l.startsWith("/opt/deno run"))!;
  assert.equal(
    command,
    `/opt/deno run --allow-all /home/u/lawa/main.ts run-instance /home/u/p.yaml --instance ` +
      `${instance.id} --key ${"k".repeat(64)} --inputs '/shared/my artifacts/slurm/jobs/` +
      `${"k".repeat(64)}.inputs.json' --artifacts '/shared/my artifacts' --set ` +
      `'train.lr=[1, 2]' --seed 3 --force eval-a`,
  );
  assert.ok(
    lines.includes(
      `echo "$code" > '/shared/my artifacts/slurm/logs/eval-a-kkk'-"$SLURM_JOB_ID".exit`,
    ),
  );
});

Deno.test("shellQuote survives quotes and spaces", async () => {
  const nasty = `it's a "test" $HOME \`x\``;
  const out = await new Deno.Command("bash", {
    args: ["-c", `printf %s ${shellQuote(nasty)}`],
    stdout: "piped",
  }).output();
  assert.equal(new TextDecoder().decode(out.stdout), nasty);
  assert.equal(shellQuote("plain-path/x.yaml"), "plain-path/x.yaml");
});

Deno.test("configs/examples/slurm-gpu.yaml: GPUs for training and evaluation, CPUs elsewhere", async () => {
  const file = new URL("../../../configs/examples/slurm-gpu.yaml", import.meta.url).pathname;
  const config = await loadConfig(file);
  const p = expandPipeline(config, STEP_KINDS);
  const settings = parseExecutorSection(config.executor, p);
  assert.equal(settings.type, "slurm");
  assert.equal(settings.retries, 2);
  const args = (node: string) =>
    sbatchArgs(resourcesFor(settings, p.instances.find((i) => i.node === node)!));
  assert.ok(args("train").includes("--gres=gpu:1"));
  assert.ok(args("train").includes("--time=48:00:00"));
  assert.ok(args("eval-lawa").includes("--gres=gpu:1"));
  assert.ok(!args("corpus").some((a) => a.startsWith("--gres")));
  assert.ok(args("figures").includes("--time=00:30:00"));
  assert.ok(args("figures").includes("--partition=cpu"));
});
