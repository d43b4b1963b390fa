import assert from "node:assert/strict";
import { z } from "zod";
import { expandPipeline } from "../../pipeline/expand.ts";
import type { PipelineConfig } from "../../pipeline/config.ts";
import { defineStep, type StepKind } from "../../pipeline/step.ts";

const noop = async () => {};
const kinds: StepKind[] = [
  defineStep({
    name: "tok",
    module: import.meta.url,
    params: z.object({ vocab: z.number().default(256) }),
    inputs: [],
    run: noop,
  }),
  defineStep({
    name: "train",
    module: import.meta.url,
    params: z.object({ lr: z.number(), sizes: z.array(z.number()).default([1]) }),
    inputs: ["tokens"],
    run: noop,
  }),
  defineStep({
    name: "avg",
    module: import.meta.url,
    params: z.object({ k: z.number().int().default(2) }),
    inputs: ["series"],
    run: noop,
  }),
  defineStep({
    name: "eval",
    module: import.meta.url,
    params: z.object({}),
    inputs: ["series", "tokens"],
    run: noop,
  }),
  defineStep({
    name: "plot",
    module: import.meta.url,
    params: z.object({}),
    inputs: ["evals"],
    run: noop,
  }),
];

function config(steps: PipelineConfig["steps"]): PipelineConfig {
  return { file: "test.yaml", defaults: {}, steps };
}

function node(kind: string, inputs: Record<string, string | string[]> = {}, params = {}) {
  return { kind, inputs, params };
}

Deno.test("sweeps expand as a grid; a list the schema takes as a value is no sweep", () => {
  const p = expandPipeline(
    config({
      tok: node("tok", {}, { vocab: [256, 512] }),
      train: node("train", { tokens: "tok" }, { lr: [0.1, 0.01], sizes: [4, 8] }),
    }),
    kinds,
  );
  const trains = p.instances.filter((i) => i.node === "train");
  assert.equal(trains.length, 4);
  for (const t of trains) assert.deepEqual(t.params.sizes, [4, 8]);
  assert.deepEqual(
    trains.map((t) => t.label).sort(),
    [
      "train[vocab=256 lr=0.01]",
      "train[vocab=256 lr=0.1]",
      "train[vocab=512 lr=0.01]",
      "train[vocab=512 lr=0.1]",
    ],
  );
  // Inputs come before their users.
  const position = new Map(p.instances.map((inst, i) => [inst.id, i]));
  for (const t of trains) assert.ok(position.get(t.inputs.tokens as string)! < position.get(t.id)!);
});

Deno.test("mapped inputs pair instances of the same lineage; a list gathers all", () => {
  const p = expandPipeline(
    config({
      tok: node("tok", {}, { vocab: [256, 512] }),
      train: node("train", { tokens: "tok" }, { lr: [0.1, 0.01] }),
      lawa: node("avg", { series: "train" }, { k: [2, 5] }),
      "eval-lawa": node("eval", { series: "lawa", tokens: "tok" }),
      report: node("plot", { evals: ["eval-lawa"] }),
    }),
    kinds,
  );
  const byNode = (n: string) => p.instances.filter((i) => i.node === n);
  // 2 vocabs x 2 lrs x 2 ks, each evaluated on its own tokenization only (not 16).
  assert.equal(byNode("eval-lawa").length, 8);
  for (const e of byNode("eval-lawa")) {
    const lawa = p.byId.get(e.inputs.series as string)!;
    const train = p.byId.get(lawa.inputs.series as string)!;
    assert.equal(train.inputs.tokens, e.inputs.tokens);
  }
  const [report] = byNode("report");
  assert.equal((report.inputs.evals as string[]).length, 8);
});

Deno.test("equal instances are one: defaults applied, nodes merged", () => {
  const p = expandPipeline(
    config({
      a: node("tok", {}, {}),
      b: node("tok", {}, { vocab: 256 }),
      t: node("train", { tokens: "b" }, { lr: 0.1 }),
    }),
    kinds,
  );
  assert.equal(p.instances.filter((i) => i.kind.name === "tok").length, 1);
  assert.equal(p.instances.length, 2);
});
