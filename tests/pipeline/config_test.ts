import assert from "node:assert/strict";
import { loadConfig, resolvePipelinePath } from "../../pipeline/config.ts";
import { expandPipeline } from "../../pipeline/expand.ts";
import { UserError } from "../../pipeline/errors.ts";
import { TOY_KINDS } from "../fixtures/toy/registry.ts";
import { tempDir, writeConfig } from "./toy_helpers.ts";

async function errorOf(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (e) {
    assert.ok(e instanceof UserError, `expected a UserError, got ${e}`);
    assert.ok(!e.message.includes("\n"), `one paragraph expected: ${e.message}`);
    return e.message;
  }
  throw new Error("expected an error");
}

Deno.test("extends merges steps per node and params per key; null removes a node", async () => {
  const dir = await tempDir();
  await writeConfig(
    dir,
    "base.yaml",
    `defaults: { seed: 1, backend: cpu }
steps:
  a: { kind: source, params: { n: 2, offset: 5 } }
  b: { kind: square, inputs: { numbers: a } }
  c: { kind: sum, inputs: { parts: [b] } }
`,
  );
  const child = await writeConfig(
    dir,
    "child.json",
    JSON.stringify({
      extends: "base.yaml",
      defaults: { seed: 7 },
      steps: { a: { params: { n: 4 } }, c: null },
    }),
  );
  const config = await loadConfig(child);
  assert.deepEqual(config.defaults, { seed: 7, backend: "cpu" });
  assert.deepEqual(config.steps.a.params, { n: 4, offset: 5 });
  assert.equal(config.steps.a.kind, "source");
  assert.deepEqual(Object.keys(config.steps).sort(), ["a", "b"]);
  assert.equal(await resolvePipelinePath("child", dir), `${dir}/child.json`);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("extends takes a list: parents merge left to right, a shared grandparent once", async () => {
  const dir = await tempDir();
  await writeConfig(dir, "base.yaml", `steps:\n  a: { kind: source, params: { n: 2 } }\n`);
  await writeConfig(
    dir,
    "left.yaml",
    `extends: base.yaml\nsteps:\n  b: { kind: square, inputs: { numbers: a } }\n`,
  );
  await writeConfig(
    dir,
    "right.yaml",
    `extends: base.yaml\nsteps:\n  a: { params: { n: 3 } }\n  c: { kind: sum, inputs: { parts: [a] } }\n`,
  );
  const both = await writeConfig(dir, "both.yaml", `extends: [left.yaml, right.yaml]\nsteps: {}\n`);
  const config = await loadConfig(both);
  assert.deepEqual(Object.keys(config.steps).sort(), ["a", "b", "c"]);
  assert.equal(config.steps.a.params.n, 3);
  assert.deepEqual(config.steps.b.inputs, { numbers: "a" });
});

Deno.test("a misspelt param is an error naming the params the kind takes", async () => {
  const dir = await tempDir();
  const file = await writeConfig(
    dir,
    "typo.yaml",
    `steps:\n  a: { kind: source, params: { nn: 2 } }\n`,
  );
  const message = await errorOf(async () => expandPipeline(await loadConfig(file), TOY_KINDS));
  assert.match(
    message,
    /steps\.a\.params\.nn: step kind "source" has no param "nn" \(did you mean "n"\?\) \(it takes: .*n/,
  );
});

Deno.test("a param of the wrong type names the file, the field path and what was expected", async () => {
  const dir = await tempDir();
  const file = await writeConfig(
    dir,
    "bad.yaml",
    `steps:\n  src: { kind: source, params: { n: "fast" } }\n`,
  );
  const message = await errorOf(async () => expandPipeline(await loadConfig(file), TOY_KINDS));
  assert.equal(message, `${file}: steps.src.params.n: expected number, got string "fast"`);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("an unknown step kind lists the known kinds", async () => {
  const dir = await tempDir();
  const file = await writeConfig(dir, "k.yaml", `steps:\n  t: { kind: train }\n`);
  const message = await errorOf(async () => expandPipeline(await loadConfig(file), TOY_KINDS));
  assert.equal(
    message,
    `${file}: steps.t.kind: unknown step kind "train" (known kinds: fail, sleep, source, square, sum)`,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("malformed files: YAML syntax, wrong shape, unknown field, bad input, cycle", async () => {
  const dir = await tempDir();
  const cases: [string, string, RegExp][] = [
    ["syntax.yaml", "steps: { a: [\n", /syntax\.yaml: not valid YAML: /],
    ["list.yaml", "- a\n- b\n", /list\.yaml: expected a mapping with a "steps" field/],
    ["nosteps.yaml", "description: x\n", /nosteps\.yaml: steps: expected record, got nothing/],
    [
      "typo.yaml",
      "steps:\n  a: { kind: source, parms: {} }\n",
      /typo\.yaml: steps\.a: unknown field "parms"/,
    ],
    [
      "input.yaml",
      "steps:\n  b: { kind: square, inputs: { numbers: nope } }\n",
      /input\.yaml: steps\.b\.inputs\.numbers: no step node named "nope" \(nodes: b\)/,
    ],
    [
      "missing.yaml",
      "steps:\n  b: { kind: square }\n",
      /missing\.yaml: steps\.b\.inputs: missing input "numbers" of step kind "square"/,
    ],
    [
      "cycle.yaml",
      "steps:\n  a: { kind: square, inputs: { numbers: b } }\n  b: { kind: square, inputs: { numbers: a } }\n",
      /cycle\.yaml: steps: the inputs form a cycle: a -> b -> a/,
    ],
  ];
  for (const [name, text, pattern] of cases) {
    const file = await writeConfig(dir, name, text);
    const message = await errorOf(async () => expandPipeline(await loadConfig(file), TOY_KINDS));
    assert.match(message, pattern);
  }
  await Deno.remove(dir, { recursive: true });
});
