// Acceptance tests of the runner on the toy pipeline (in-process).
import assert from "node:assert/strict";
import {
  cacheKeys,
  executedLabels,
  queryDb,
  runToy,
  tempDir,
  TOY_YAML,
  writeConfig,
} from "./toy_helpers.ts";
import { copyToyWithKinds } from "./toy_copy.ts";
import { TOY_KINDS } from "../fixtures/toy/registry.ts";
import { linesStep } from "../fixtures/toy/steps/lines.ts";

const ALL = [
  "source[offset=0]",
  "source[offset=10]",
  "square[offset=0]",
  "square[offset=10]",
  "total",
];

Deno.test("first run executes all, a rerun with nothing changed executes none", async () => {
  const dir = await tempDir();
  const config = await writeConfig(dir, "toy.yaml", TOY_YAML);
  const art = `${dir}/art`;
  const first = await runToy(config, art);
  assert.deepEqual(executedLabels(first), ALL);
  const second = await runToy(config, art);
  assert.deepEqual(executedLabels(second), []);
  assert.equal(second.cached, 5);
  // sum of squares of 1..3 and 11..13 = 14 + 434
  const sums = await queryDb(art, "SELECT total, parts FROM sums");
  assert.deepEqual(sums, [{ total: 448, parts: 2 }]);
  const runs = await queryDb(art, "SELECT count(*)::INTEGER AS n FROM runs WHERE status = 'ok'");
  assert.equal(runs[0].n, 5);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("changing one param reruns exactly that instance and its descendants", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  await runToy(await writeConfig(dir, "toy.yaml", TOY_YAML), art);
  const changed = await writeConfig(
    dir,
    "changed.yaml",
    TOY_YAML.replace("offset: [0, 10]", "offset: [0, 20]"),
  );
  const dry = await runToy(changed, art, { dryRun: true });
  const reasons = Object.fromEntries(
    dry.outcomes.filter((o) => o.status === "would-run").map((o) => [o.instance.label, o.reasons]),
  );
  assert.deepEqual(reasons, {
    "source[offset=20]": ["params changed"],
    "square[offset=20]": ["input changed"],
    total: ["input changed"],
  });
  const run = await runToy(changed, art);
  assert.deepEqual(executedLabels(run), ["source[offset=20]", "square[offset=20]", "total"]);
  const sums = await queryDb(art, "SELECT total FROM sums ORDER BY total");
  assert.deepEqual(sums.map((r) => r.total), [448, 14 + 441 + 484 + 529]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("editing a step's module reruns its instances and descendants only", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  const config = await writeConfig(dir, "toy.yaml", TOY_YAML);
  const { dir: code, kinds } = await copyToyWithKinds();
  try {
    await runToy(config, art, { kinds });
    await Deno.writeTextFile(`${code}/steps/unrelated.ts`, "export const UNRELATED = 3;\n");
    assert.deepEqual(executedLabels(await runToy(config, art, { kinds })), []);

    const square = await Deno.readTextFile(`${code}/steps/square.ts`);
    // A comment changes nothing; a statement that runs does.
    await Deno.writeTextFile(`${code}/steps/square.ts`, square + "\n// edited\n");
    assert.deepEqual(executedLabels(await runToy(config, art, { kinds })), []);
    await Deno.writeTextFile(`${code}/steps/square.ts`, square + "\nexport const EDITED = 1;\n");
    const dry = await runToy(config, art, { kinds, dryRun: true });
    const wouldRun = dry.outcomes.filter((o) => o.status === "would-run");
    assert.deepEqual(wouldRun.map((o) => o.reasons![0]), [
      "code changed: steps/square.ts (EDITED)",
      "code changed: steps/square.ts (EDITED)",
      "input changed",
    ]);
    assert.deepEqual(executedLabels(await runToy(config, art, { kinds })), [
      "square[offset=0]",
      "square[offset=10]",
      "total",
    ]);
  } finally {
    await Deno.remove(code, { recursive: true });
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a throwing step leaves no entry and no rows, fails only its descendants", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  const config = await writeConfig(
    dir,
    "fail.yaml",
    TOY_YAML + `  broken: { kind: fail, inputs: { numbers: source } }
  after-broken: { kind: sum, inputs: { parts: [broken] } }
`,
  );
  const summary = await runToy(config, art);
  assert.deepEqual(executedLabels(summary), ALL);
  assert.deepEqual(summary.failed.map((f) => [f.instance.label, f.error]), [
    ["broken[offset=0]", "toy failure"],
    ["broken[offset=10]", "toy failure"],
  ]);
  const skipped = summary.outcomes.filter((o) => o.status === "skipped");
  assert.deepEqual(skipped.map((o) => o.instance.label), ["after-broken"]);
  const failedKeys = summary.failed.map((f) => f.key!);
  const keys = await cacheKeys(art);
  assert.equal(keys.length, 5);
  for (const k of failedKeys) assert.ok(!keys.includes(k));
  assert.deepEqual(await queryDb(art, "SELECT * FROM \"values\" WHERE stage = 'fail'"), []);
  const tmp = [...Deno.readDirSync(`${art}/cache/.tmp`)];
  assert.deepEqual(tmp, []);
  const runs = await queryDb(art, "SELECT error FROM runs WHERE status = 'failed'");
  assert.deepEqual(runs.map((r) => r.error), ["toy failure", "toy failure"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("results.duckdb deleted: a cached rerun reloads every entry's rows", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  const config = await writeConfig(dir, "toy.yaml", TOY_YAML);
  await runToy(config, art);
  const before = await queryDb(art, 'SELECT stage, value FROM "values" ORDER BY ALL');
  await Deno.remove(`${art}/results.duckdb`);
  assert.deepEqual(executedLabels(await runToy(config, art)), []);
  const after = await queryDb(art, 'SELECT stage, value FROM "values" ORDER BY ALL');
  assert.equal(after.length, 12);
  assert.deepEqual(after, before);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("--force reruns the named node; same outputs keep descendants cached", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  const config = await writeConfig(dir, "toy.yaml", TOY_YAML);
  await runToy(config, art);
  const forced = await runToy(config, art, { force: ["square"] });
  // square is deterministic: its digest is unchanged, so `total` stays cached.
  assert.deepEqual(executedLabels(forced), ["square[offset=0]", "square[offset=10]"]);
  const rows = await queryDb(art, 'SELECT count(*)::INTEGER AS n FROM "values"');
  assert.equal(rows[0].n, 12); // reloaded, not duplicated
  await Deno.remove(dir, { recursive: true });
});

Deno.test("the backend is in the key unless the step does not use it", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  const config = await writeConfig(dir, "toy.yaml", TOY_YAML);
  await runToy(config, art, { backend: "cpu" });
  // source declares uses.backend = false: only square and sum rerun.
  const other = await runToy(config, art, { backend: "wasm" });
  assert.deepEqual(executedLabels(other), ["square[offset=0]", "square[offset=10]", "total"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("editing a file a step reads by path reruns it; untouched, it stays cached", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  const text = `${dir}/notes.txt`;
  await Deno.writeTextFile(text, "ab\ncde");
  const config = await writeConfig(
    dir,
    "lines.yaml",
    `steps:\n  lines: { kind: lines, params: { path: "${text}" } }\n  double: { kind: square, inputs: { numbers: lines } }\n`,
  );
  const kinds = [...TOY_KINDS, linesStep];
  assert.deepEqual(executedLabels(await runToy(config, art, { kinds })), ["double", "lines"]);
  assert.deepEqual(executedLabels(await runToy(config, art, { kinds })), []);
  await Deno.writeTextFile(text, "ab\ncdef");
  const dry = await runToy(config, art, { kinds, dryRun: true });
  const lines = dry.outcomes.find((o) => o.instance.label === "lines")!;
  assert.deepEqual(lines.reasons, ["files changed"]);
  assert.deepEqual(executedLabels(await runToy(config, art, { kinds })), ["double", "lines"]);
  await Deno.remove(dir, { recursive: true });
});
