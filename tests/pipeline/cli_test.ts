// The command line in-process on the toy pipeline: `--set` plans exactly the instances
// it changes and lands in their manifests; typos get a "did you mean"; `--help` lists
// the pipelines; backends are checked before anything runs.
import assert from "node:assert/strict";
import { checkBackendOverrides, main } from "../../pipeline/cli.ts";
import { createReporter } from "../../pipeline/progress.ts";
import { loadConfig } from "../../pipeline/config.ts";
import { expandPipeline } from "../../pipeline/expand.ts";
import { Store } from "../../pipeline/store.ts";
import { applyOverrides, parseOverride, publishName } from "../../pipeline/overrides.ts";
import { TOY_KINDS } from "../fixtures/toy/registry.ts";
import { tempDir, TOY_YAML, writeConfig } from "./toy_helpers.ts";
import { UserError } from "../../pipeline/errors.ts";

interface CliResult {
  code: number;
  out: string;
  err: string;
}

async function cli(args: string[], backends?: string[]): Promise<CliResult> {
  let out = "";
  const errors: string[] = [];
  const originalError = console.error;
  console.error = (...parts: unknown[]) => errors.push(parts.join(" "));
  try {
    const code = await main(args, {
      kinds: TOY_KINDS,
      backends,
      backendIdentity: (name) => `${name} test`,
      reporter: createReporter({ live: false, write: (t) => (out += t), everyS: 3600 }),
      stdout: (t) => (out += t + "\n"),
    });
    return { code, out, err: errors.join("\n") };
  } finally {
    console.error = originalError;
  }
}

async function withToy(fn: (common: string[], art: string) => Promise<void>) {
  const dir = await tempDir();
  try {
    const configs = `${dir}/configs`;
    await Deno.mkdir(configs);
    await writeConfig(configs, "toy.yaml", TOY_YAML);
    await fn(["--artifacts", `${dir}/art`, "--configs", configs], `${dir}/art`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const wouldRun = (out: string) =>
  [...out.matchAll(/^would run ([^\s:]+)/gm)].map((m) => m[1]).sort();

Deno.test("--set plans exactly the instances it changes, and the manifests record it", async () => {
  await withToy(async (common, art) => {
    assert.equal((await cli(["run", "toy", ...common])).code, 0);
    const again = await cli(["run", "toy", "--dry-run", ...common]);
    assert.match(again.out, /0 would run, 5 cached/);

    // One sweep value changed: its source, its square and the total; the other branch stays.
    const dry = await cli(["run", "toy", "--dry-run", "--set", "source.offset=[0, 20]", ...common]);
    assert.equal(dry.code, 0, dry.err);
    assert.deepEqual(wouldRun(dry.out), ["source[offset=20]", "square[offset=20]", "total"]);
    assert.match(dry.out, /3 would run, 2 cached/);

    // A param of the last node only: just that node.
    const scaled = await cli(["run", "toy", "--dry-run", "--set", "total.scale=2", ...common]);
    assert.deepEqual(wouldRun(scaled.out), ["total"]);

    const run = await cli(["run", "toy", "--set", "total.scale=2", ...common]);
    assert.equal(run.code, 0, run.err);
    assert.match(run.out, /1 ran, 4 cached/);
    const store = new Store(art);
    const manifests = await Promise.all((await store.listKeys()).map((k) => store.readManifest(k)));
    const total = manifests.filter((m) => m?.node === "total");
    const recorded = total.map((m) => JSON.stringify(m!.overrides ?? null)).sort();
    assert.deepEqual(recorded, ['["total.scale=2"]', "null"]);
    assert.ok(manifests.filter((m) => m?.node !== "total").every((m) => !m?.overrides));
  });
});

Deno.test("--set values are YAML, nested paths reach into mappings, bad ones say how", () => {
  assert.deepEqual(parseOverride("train.lr=3e-3"), {
    text: "train.lr=3e-3",
    node: "train",
    path: ["lr"],
    value: 0.003,
  });
  assert.deepEqual(parseOverride("lawa.k=[2,5]").value, [2, 5]);
  assert.deepEqual(parseOverride("train.ema.decay=0.95").path, ["ema", "decay"]);
  assert.throws(() => parseOverride("train=3"), /expected <node>.<param>=<value>/);
  assert.throws(() => parseOverride("train.lr"), /expected <node>.<param>=<value>/);

  const config = {
    file: "x.yaml",
    defaults: {},
    steps: { train: { kind: "train", inputs: {}, params: { lr: 1, ema: { decay: 0.9 } } } },
  };
  const changed = applyOverrides(config, [parseOverride("train.ema.every=2")]);
  assert.deepEqual(changed.steps.train.params, { lr: 1, ema: { decay: 0.9, every: 2 } });
  assert.deepEqual(config.steps.train.params.ema, { decay: 0.9 }, "the original changed");
  assert.throws(
    () => applyOverrides(config, [parseOverride("trian.lr=2")]),
    /no step node "trian" \(did you mean "train"\?\)/,
  );
  assert.equal(publishName("configs/ablation-k-nu.yaml", []), "ablation-k-nu");
  assert.equal(
    publishName("configs/ablation-k-nu.yaml", [parseOverride("train.lr=3e-3")]),
    "ablation-k-nu--train.lr_3e-3",
  );
});

Deno.test("typos get a did-you-mean; backends are checked before anything runs", async () => {
  await withToy(async (common, art) => {
    const cases: [string[], RegExp][] = [
      [["run", "tyo", ...common], /no pipeline "tyo" \(did you mean "toy"\?\)/],
      [["run", "toy", "--jbos", "2", ...common], /unknown flag --jbos \(did you mean "--jobs"\?\)/],
      [["run", "toy", "--set", "sqare.delay_ms=1", ...common], /did you mean "square"/],
      [
        ["run", "toy", "--set", "square.delay=1", ...common],
        /has no param "delay" \(did you mean "delay_ms"\?\)/,
      ],
      [["run", "toy", "--force", "sqaure", ...common], /did you mean "square"/],
      [
        ["run", "toy", "--backend", "cpuu", ...common],
        /unknown backend "cpuu" \(did you mean "cpu"\?\)/,
      ],
      [["rnu", "toy", ...common], /did you mean "run"/],
    ];
    for (const [args, expected] of cases) {
      const r = await cli(args, ["cpu", "wasm"]);
      assert.equal(r.code, 1, args.join(" "));
      assert.match(r.err, expected);
    }
    // Nothing ran for any of them.
    assert.deepEqual(await new Store(art).listKeys(), []);
  });
});

Deno.test("--help lists the pipelines with their descriptions", async () => {
  await withToy(async (common) => {
    const r = await cli(["run", "--help", ...common]);
    assert.equal(r.code, 0);
    assert.match(r.out, /--set NODE\.PARAM=VALUE/);
    assert.match(
      r.out,
      /^ {2}toy {2}Toy pipeline: two sources, each squared, all squares summed\.$/m,
    );
  });
});

Deno.test("a step param picking another backend is refused with --jobs > 1", async () => {
  const pipeline = expandPipeline(
    await loadConfig(await writeConfig(await tempDir(), "toy.yaml", TOY_YAML)),
    TOY_KINDS,
  );
  checkBackendOverrides(pipeline, "wasm", 4); // no instance picks a backend
  const square = pipeline.instances.find((i) => i.node === "square")!;
  square.params = { ...square.params, backend: "cpu" };
  checkBackendOverrides(pipeline, "cpu", 4);
  checkBackendOverrides(pipeline, "wasm", 1);
  assert.throws(
    () => checkBackendOverrides(pipeline, "wasm", 4),
    (e) =>
      e instanceof UserError && /runs on backend "cpu" while the run uses "wasm"/.test(e.message),
  );
});
