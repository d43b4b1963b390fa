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

// ---------------------------------------------------------------------------------------
// Seeds as a sweep

const seeded: StepKind[] = kinds.map((k) =>
  k.name === "tok" || k.name === "plot" ? { ...k, uses: { backend: false, seed: false } } : k
);

function seedPipeline(seed: number | number[] | undefined, opts = {}) {
  const defaults = seed === undefined ? {} : { seed };
  return expandPipeline(
    {
      file: "test.yaml",
      defaults,
      steps: {
        tok: node("tok"),
        train: node("train", { tokens: "tok" }, { lr: [0.1, 0.01] }),
        avg: node("avg", { series: "train" }),
        eval: node("eval", { series: "avg", tokens: "tok" }),
        plot: node("plot", { evals: ["eval"] }),
      },
    },
    seeded,
    opts,
  );
}

Deno.test("seed: [0, 1, 2] runs each seeded node per seed; unseeded ones stay shared", () => {
  const p = seedPipeline([0, 1, 2]);
  const of = (n: string) => p.instances.filter((i) => i.node === n);
  assert.equal(of("tok").length, 1);
  assert.equal(of("tok")[0].seed, undefined);
  assert.equal(of("train").length, 6); // 2 lr x 3 seeds
  assert.deepEqual(of("train").map((i) => i.seed).sort(), [0, 0, 1, 1, 2, 2]);
  assert.ok(of("train").some((i) => i.label === "train[lr=0.1 seed=1]"), of("train")[0].label);
  // Downstream nodes inherit their run's seed instead of crossing it again.
  assert.equal(of("avg").length, 6);
  assert.equal(of("eval").length, 6);
  for (const e of of("eval")) {
    const avg = p.byId.get(e.inputs.series as string)!;
    const train = p.byId.get(avg.inputs.series as string)!;
    assert.equal(e.seed, train.seed);
    assert.equal(e.coords.seed, train.seed);
  }
  // A gathering node sees every seed, once.
  assert.equal(of("plot").length, 1);
  assert.equal((of("plot")[0].inputs.evals as string[]).length, 6);
  assert.deepEqual(p.seeds, [0, 1, 2]);
});

Deno.test("one seed adds no coordinate; --seeds overrides the file's", () => {
  const one = seedPipeline(0);
  assert.equal(one.instances.filter((i) => i.node === "train").length, 2);
  assert.ok(one.instances.every((i) => !("seed" in i.coords)));
  assert.equal(one.instances.find((i) => i.node === "train")!.seed, 0);
  const three = seedPipeline(0, { seeds: [0, 1, 2] });
  assert.equal(three.instances.filter((i) => i.node === "train").length, 6);
  // Seed 0 of the sweep is the same instance as the single-seed run.
  const ids = (p: ReturnType<typeof seedPipeline>) =>
    new Set(p.instances.filter((i) => i.node === "train" && i.seed === 0).map((i) => i.id));
  assert.deepEqual(ids(three), ids(one));
  const none = seedPipeline(undefined);
  assert.ok(none.instances.every((i) => i.seed === undefined), "no seed fixed: the run's");
  assert.throws(() => seedPipeline(0, { seeds: [] }), /empty/);
});

Deno.test("a node's own seed list overrides defaults.seed", () => {
  const p = expandPipeline(
    {
      file: "test.yaml",
      defaults: { seed: 0 },
      steps: {
        tok: node("tok"),
        a: node("train", { tokens: "tok" }, { lr: 0.1 }),
        b: { ...node("train", { tokens: "tok" }, { lr: 0.2 }), seed: [3, 4] },
      },
    },
    seeded,
  );
  assert.deepEqual(p.instances.filter((i) => i.node === "a").map((i) => i.seed), [0]);
  assert.deepEqual(p.instances.filter((i) => i.node === "b").map((i) => i.seed), [3, 4]);
});
