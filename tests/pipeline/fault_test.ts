// Fault injection (issue "Nothing lost, nothing silently wrong"): runs killed at random
// points, a flipped byte in the cache, a garbled manifest, a database held open by
// another client, damaged or outdated results files, dot-only publish names, gc after
// an entry was removed by hand, bad config values, a read-only folder and a full disk.
// Each test reproduces one of the failures first found, on the toy pipeline.
import assert from "node:assert/strict";
import { MANIFEST, Store } from "../../pipeline/store.ts";
import { ResultsDb } from "../../pipeline/results.ts";
import { PlotParams, publishFigures } from "../../steps/plot.ts";
import { TOY_KINDS } from "../fixtures/toy/registry.ts";
import {
  cacheKeys,
  executedLabels,
  queryDb,
  runToy,
  tempDir,
  TOY_YAML,
  writeConfig,
} from "./toy_helpers.ts";
import {
  cli,
  mulberry32,
  noSpaceError,
  permissionError,
  toyProcess,
  withFailingWrites,
} from "./fault_helpers.ts";
import type { RunSummary } from "../../pipeline/runner.ts";

const HOLD_DB = new URL("./hold_db.ts", import.meta.url).pathname;

function keyOf(summary: RunSummary, label: string): string {
  const o = summary.outcomes.find((o) => o.instance.label === label);
  assert.ok(o?.key, `no key for ${label}`);
  return o.key;
}

/** Everything a run leaves that must not depend on interruptions. */
async function snapshot(art: string) {
  const store = new Store(art);
  const keys = await cacheKeys(art);
  const digests: Record<string, string> = {};
  for (const k of keys) digests[k] = (await store.readManifest(k))!.digest;
  return {
    digests,
    values: await queryDb(art, `SELECT instance_key, stage, value FROM "values" ORDER BY ALL`),
    sums: await queryDb(art, "SELECT instance_key, total, parts FROM sums ORDER BY ALL"),
    runs: await queryDb(
      art,
      `SELECT key, step_kind, node, status, count(*)::INTEGER AS n FROM runs
       GROUP BY ALL ORDER BY ALL`,
    ),
    loaded: await queryDb(art, "SELECT key FROM loaded_instances ORDER BY key"),
  };
}

Deno.test("killed at random points again and again, a run ends as an uninterrupted one", async () => {
  const dir = await tempDir();
  const config = await writeConfig(
    dir,
    "slow.yaml",
    TOY_YAML.replace("offset: [0, 10]", "offset: [0, 10, 20], delay_ms: 120")
      .replace(
        "inputs: { numbers: source } }",
        "inputs: { numbers: source }, params: { delay_ms: 120 } }",
      ),
  );
  const run = (art: string) => toyProcess(["run", config, "--artifacts", art, "--jobs", "2"]);
  const t0 = performance.now();
  const clean = await run(`${dir}/clean`).output();
  assert.equal(clean.code, 0, new TextDecoder().decode(clean.stderr));
  const wallMs = performance.now() - t0;

  const art = `${dir}/killed`;
  const seed = 20261202;
  const random = mulberry32(seed);
  const kills = 6;
  for (let i = 0; i < kills; i++) {
    const child = run(art).spawn();
    const afterMs = random() * wallMs * 1.2;
    await new Promise((r) => setTimeout(r, afterMs));
    try {
      child.kill("SIGKILL");
    } catch {
      // it finished first
    }
    await child.status;
    await child.stdout.cancel();
    await child.stderr.cancel();
  }
  const last = await run(art).output();
  assert.equal(last.code, 0, `seed ${seed}: ${new TextDecoder().decode(last.stderr)}`);

  assert.deepEqual(await snapshot(art), await snapshot(`${dir}/clean`), `seed ${seed}`);
  assert.deepEqual([...Deno.readDirSync(`${art}/cache/.tmp`)], []);
  const strays = [...Deno.readDirSync(art)].filter((e) => e.name.startsWith(".results-"));
  assert.deepEqual(strays.map((e) => e.name), [], "copies of results.duckdb left behind");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a flipped byte in a cached output is found on use and rebuilt, never used", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  const config = await writeConfig(dir, "toy.yaml", TOY_YAML);
  const first = await runToy(config, art);
  const key = keyOf(first, "source[offset=0]");
  const file = `${art}/cache/${key}/values.json`;
  assert.equal(await Deno.readTextFile(file), "[1,2,3]");
  await Deno.writeTextFile(file, "[1,5,3]"); // same size, valid JSON, wrong numbers

  const second = await runToy(config, art);
  assert.deepEqual(executedLabels(second), ["source[offset=0]"]); // same digest again
  assert.equal(await Deno.readTextFile(file), "[1,2,3]");
  assert.deepEqual(await queryDb(art, "SELECT total FROM sums"), [{ total: 448 }]);

  // Bit rot under an unchanged stamp escapes the cheap check; `status --verify` finds
  // it (exit 1), and the next run rebuilds the entry.
  const stamps = `${art}/cache/.stamps/${key}.json`;
  await Deno.writeTextFile(file, "[1,7,3]");
  const info = await Deno.stat(file);
  const stamp = JSON.parse(await Deno.readTextFile(stamps));
  stamp.files["values.json"] = {
    mtime_ms: info.mtime!.getTime(),
    ctime_ms: info.ctime!.getTime(),
    ino: info.ino,
  };
  await Deno.writeTextFile(stamps, JSON.stringify(stamp));
  const common = ["--artifacts", art, "--configs", dir];
  const plain = await cli(["status", config, ...common]);
  assert.equal(plain.code, 0);
  const verify = await cli(["status", config, "--verify", ...common]);
  assert.equal(verify.code, 1);
  assert.match(
    verify.out,
    /^source\[offset=0\] +damaged \(values\.json does not match its recorded sha256\)/m,
  );
  assert.match(verify.out, /every output rehashed; 1 damaged \(the next run rebuilds them\)/);
  assert.deepEqual(executedLabels(await runToy(config, art)), ["source[offset=0]"]);
  assert.equal((await cli(["status", config, "--verify", ...common])).code, 0);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a garbled manifest: status, dry run and gc say so in one line; run rebuilds it", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  const config = await writeConfig(dir, "toy.yaml", TOY_YAML);
  const key = keyOf(await runToy(config, art), "square[offset=0]");
  await Deno.writeTextFile(`${art}/cache/${key}/${MANIFEST}`, '{"format": "cache-en');
  const common = ["--artifacts", art, "--configs", dir];

  const status = await cli(["status", config, ...common]);
  assert.equal(status.code, 1);
  assert.match(status.out, /^square\[offset=0\] +damaged \(manifest\.json is not valid JSON\)/m);
  const dry = await cli(["run", config, "--dry-run", ...common]);
  assert.equal(dry.code, 0, dry.err);
  assert.match(dry.err, /would run square\[offset=0\] .*cache entry damaged \(manifest\.json/);
  assert.equal((await cli(["gc", "--dry-run", ...common])).code, 0);

  const run = await cli(["run", config, ...common]);
  assert.equal(run.code, 0, run.err);
  assert.match(run.out, /^1 ran, 4 cached/m);
  assert.ok((await new Store(art).readManifest(key))?.digest);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a DuckDB client holding results.duckdb open does not block a run", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  await runToy(await writeConfig(dir, "toy.yaml", TOY_YAML), art);
  for (const [mode, offset] of [["read_only", 20], ["read_write", 30]] as const) {
    const holder = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", HOLD_DB, `${art}/results.duckdb`, mode],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = holder.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const { value } = await lines.read();
    assert.match(value ?? "", /^holding /);
    const config = await writeConfig(
      dir,
      `more-${offset}.yaml`,
      TOY_YAML.replace("offset: [0, 10]", `offset: [0, 10, ${offset}]`),
    );
    const summary = await runToy(config, art);
    assert.deepEqual(summary.failed, [], `${mode}: ${summary.failed[0]?.error}`);
    assert.equal(executedLabels(summary).length, 3);
    await holder.stdin.close();
    assert.equal((await holder.status).code, 0);
    await lines.cancel();
  }
  const sums = await new ResultsDb(art).query("SELECT total FROM sums ORDER BY total");
  assert.equal(sums.length, 3);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("results.duckdb is rebuilt from the cache: deleted, truncated, of an older layout", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  const config = await writeConfig(dir, "toy.yaml", TOY_YAML);
  await runToy(config, art);
  const want = await snapshot(art);
  assert.equal(want.runs.length, 5);
  const damage: [string, () => Promise<void>][] = [
    ["deleted", () => Deno.remove(`${art}/results.duckdb`)],
    ["truncated to half", async () => {
      const size = (await Deno.stat(`${art}/results.duckdb`)).size;
      await Deno.truncate(`${art}/results.duckdb`, Math.floor(size / 2));
    }],
    ["of an older layout (runs.step)", async () => {
      await Deno.remove(`${art}/results.duckdb`);
      await queryDb(art, "CREATE TABLE runs (key VARCHAR, step VARCHAR, pid INTEGER)");
    }],
  ];
  for (const [what, harm] of damage) {
    await harm();
    const out = await cli(["run", config, "--artifacts", art, "--configs", dir]);
    assert.equal(out.code, 0, `${what}: ${out.err}`);
    assert.match(out.out, /^0 ran, 5 cached/m, what);
    if (what !== "deleted") assert.match(out.err, /rebuilding it from the cache/, what);
    assert.deepEqual(await snapshot(art), want, what);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a crash between an entry's commit and its rows loses no runs row", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  const config = await writeConfig(dir, "toy.yaml", TOY_YAML);
  const original = ResultsDb.prototype.loadInstance;
  let calls = 0;
  ResultsDb.prototype.loadInstance = function (...args) {
    if (++calls === 1) return Promise.reject(new Error("killed before the rows landed"));
    return original.apply(this, args);
  };
  try {
    const first = await runToy(config, art);
    assert.equal(first.failed.length, 1);
    assert.match(first.failed[0].error!, /results not stored: killed before the rows landed/);
    assert.ok((await cacheKeys(art)).includes(first.failed[0].key!)); // committed
  } finally {
    ResultsDb.prototype.loadInstance = original;
  }
  const second = await runToy(config, art);
  assert.deepEqual(second.failed, []);
  const runs = await queryDb(
    art,
    "SELECT key, count(*)::INTEGER AS n FROM runs WHERE status = 'ok' GROUP BY key",
  );
  assert.equal(runs.length, 5);
  for (const r of runs) assert.equal(r.n, 1);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("plot never publishes to a dot-only or empty name", async () => {
  for (const bad of [".", "..", "...", ".hidden", ""]) {
    assert.equal(PlotParams.safeParse({ pipeline: bad }).success, false, bad);
  }
  assert.equal(PlotParams.safeParse({ pipeline: "ablation-k-nu.v2" }).success, true);
  const root = await tempDir();
  const src = `${root}/entry`;
  await Deno.mkdir(src);
  await Deno.writeTextFile(`${src}/figures.json`, "{}");
  await Deno.mkdir(`${root}/art/figures/keep`, { recursive: true });
  await Deno.writeTextFile(`${root}/art/cache.txt`, "precious");
  for (const name of ["..", ".", ""]) {
    await assert.rejects(
      publishFigures(src, `${root}/art/figures/${name}`),
      /cannot publish figures to .*must be letters/,
    );
  }
  assert.equal(await Deno.readTextFile(`${root}/art/cache.txt`), "precious");
  assert.ok((await Deno.stat(`${root}/art/figures/keep`)).isDirectory);
  await publishFigures(src, `${root}/art/figures/ok`);
  assert.equal(await Deno.readTextFile(`${root}/art/figures/ok/figures.json`), "{}");
  await Deno.remove(root, { recursive: true });
});

Deno.test("gc keeps what run would reuse after an upstream entry is removed by hand", async () => {
  const dir = await tempDir();
  const configs = `${dir}/configs`;
  await Deno.mkdir(configs);
  const art = `${dir}/art`;
  const common = ["--artifacts", art, "--configs", configs];
  // `square` resumable, as training is: its work folder holds progress.
  const kinds = TOY_KINDS.map((k) => k.name === "square" ? { ...k, resumable: true } : k);
  const config = await writeConfig(configs, "toy.yaml", TOY_YAML);
  const first = await runToy(config, art, { kinds });
  const source = keyOf(first, "source[offset=0]");
  await Deno.remove(`${art}/cache/${source}`, { recursive: true });

  // A second config whose resumable instance was interrupted, and a stale work folder.
  const wide = await writeConfig(
    configs,
    "wide.yaml",
    TOY_YAML.replace("offset: [0, 10]", "offset: [0, 10, 20]"),
  );
  const onlySource = "steps:\n  s: { kind: source, params: { offset: 20 } }\n";
  await runToy(await writeConfig(dir, "only-source.yaml", onlySource), art, { kinds });
  const resumeKey = keyOf(await runToy(wide, art, { kinds, dryRun: true }), "square[offset=20]");
  await Deno.mkdir(`${art}/cache/.tmp/${resumeKey}`, { recursive: true });
  await Deno.writeTextFile(`${art}/cache/.tmp/${resumeKey}/progress`, "step 7");
  await Deno.mkdir(`${art}/cache/.tmp/${"0".repeat(64)}`);

  const gc = await cli(["gc", ...common], kinds);
  assert.equal(gc.code, 0, gc.err);
  assert.doesNotMatch(gc.out, /unreachable/);
  assert.match(gc.out, /removed .*0{64} .*stale work folder/);
  assert.equal(
    await Deno.readTextFile(`${art}/cache/.tmp/${resumeKey}/progress`),
    "step 7",
  );
  const rerun = await runToy(config, art, { kinds });
  assert.deepEqual(executedLabels(rerun), ["source[offset=0]"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("bad config values are one-line errors naming the node and param, at plan time", async () => {
  const dir = await tempDir();
  const cases: [string, RegExp][] = [
    [
      "steps:\n  s: { kind: source, params: { offset: .nan } }\n",
      /steps\.s\.params\.offset: expected a finite number, got NaN$/,
    ],
    [
      "steps:\n  s: { kind: source, params: { offset: [1, .inf] } }\n",
      /steps\.s\.params\.offset\[1\]: expected a finite number, got Infinity$/,
    ],
    [
      "steps:\n  s: { kind: source, params: { offset: [] } }\n  q: { kind: square, inputs: { numbers: s } }\n",
      /steps\.s\.params\.offset: an empty list; a sweep needs at least one value$/,
    ],
    [
      "steps:\n  s: { kind: source, params: { n: {} } }\n",
      /steps\.s\.params\.n: expected number, got an object$/,
    ],
    ["steps: {}\n", /: steps: no step nodes: a pipeline needs at least one/],
    [
      "steps:\n  s: { kind: source }\n  t: { kind: sum, inputs: { parts: [] } }\n",
      /steps\.t\.inputs\.parts: an empty list of input nodes/,
    ],
  ];
  for (const [i, [yaml, expected]] of cases.entries()) {
    const file = await writeConfig(dir, `bad-${i}.yaml`, yaml);
    const out = await cli(["run", file, "--dry-run", "--artifacts", `${dir}/art`]);
    assert.equal(out.code, 1, yaml);
    const lines = out.err.trim().split("\n");
    assert.equal(lines.length, 1, out.err);
    assert.match(lines[0], expected);
  }
  // A step kind's check hook runs while planning, for every sweep point.
  const { ParamError } = await import("../../pipeline/errors.ts");
  const kinds = TOY_KINDS.map((k) =>
    k.name === "source"
      ? {
        ...k,
        check(p: { n: number }) {
          if (p.n > 5) throw new ParamError("n", `at most 5, got ${p.n}`);
        },
      }
      : k
  );
  const file = await writeConfig(
    dir,
    "check.yaml",
    "steps:\n  s: { kind: source, params: { n: [2, 7] } }\n",
  );
  const out = await cli(["run", file, "--dry-run", "--artifacts", `${dir}/art`], kinds);
  assert.equal(out.code, 1);
  assert.match(
    out.err,
    /^error: .*check\.yaml: steps\.s\.params\.n: at most 5, got 7 \(at n=7\)$/m,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a read-only artifacts folder and a full disk give one line naming the path", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  const config = await writeConfig(dir, "toy.yaml", TOY_YAML);
  const common = ["--artifacts", art, "--configs", dir];
  assert.equal((await cli(["run", config, ...common])).code, 0);
  const changed = await writeConfig(dir, "changed.yaml", TOY_YAML.replace("[0, 10]", "[0, 30]"));

  // Read-only: nothing under the artifacts folder can be written.
  const readOnly = await withFailingWrites(
    (p) => p.startsWith(art),
    permissionError,
    () => cli(["run", changed, ...common]),
  );
  assert.equal(readOnly.code, 1);
  assert.match(
    readOnly.err,
    new RegExp(`^error: cannot (write|create) ${art}\\S*: permission denied$`, "m"),
  );
  assert.doesNotMatch(readOnly.err, /\n\s+at /); // no stack

  // A full disk while a step writes: the failure names the work folder.
  const stepFull = await withFailingWrites(
    (p) => p.startsWith(`${art}/cache/.tmp/`) && p.endsWith("values.json"),
    () => noSpaceError(),
    () => cli(["run", changed, ...common]),
  );
  assert.equal(stepFull.code, 1);
  assert.match(
    stepFull.out,
    new RegExp(
      `FAILED source\\[offset=30\\]: No space left on device \\(os error 28\\) \\(writing under ${art}/cache/\\.tmp/[0-9a-f]{64}\\)`,
    ),
  );

  // A full disk while the entry is committed, or while results are written.
  for (const where of [`${art}/cache/.tmp/`, `${art}/.results-`]) {
    const full = await withFailingWrites(
      (p) => p.startsWith(where) && !p.endsWith("values.json"),
      () => noSpaceError(),
      () => cli(["run", changed, ...common]),
    );
    assert.equal(full.code, 1, where);
    assert.match(
      full.err,
      new RegExp(`^error: cannot \\w+ ${art}\\S*: no space left on device$`, "m"),
    );
  }
  // Space again: the run completes and nothing was lost.
  const ok = await cli(["run", changed, ...common]);
  assert.equal(ok.code, 0, ok.err);
  assert.deepEqual(await queryDb(art, "SELECT total FROM sums ORDER BY total"), [
    { total: 448 },
    { total: 14 + 961 + 1024 + 1089 },
  ]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("the real step kinds' run-time checks fail a dry run, in one line", async () => {
  const { STEP_KINDS } = await import("../../steps/registry.ts");
  const dir = await tempDir();
  const head = "steps:\n  c: { kind: corpus }\n  t: { kind: tokenize, inputs: { corpus: c }";
  const train = (params: string) =>
    `${head} }\n  tr: { kind: train, inputs: { tokens: t }, params: ${params} }\n`;
  const cases: [string, RegExp][] = [
    [
      `${head}, params: { vocab_size: 0 } }\n`,
      /steps\.t\.params\.vocab_size: expected an integer from 257 to 50257 .*got 0$/,
    ],
    [
      train("{ preset: gpt5 }"),
      /steps\.tr\.params\.preset: unknown model preset "gpt5": expected one of .*cpu-small/,
    ],
    [
      train("{ warmup: 100, steps: [50, 500] }"),
      /steps\.tr\.params\.warmup: warmup 100 must be shorter than steps 50 \(at steps=50\)$/,
    ],
    [
      train("{ batch_tokens: 1.0e12 }"),
      /steps\.tr\.params\.batch_tokens: 1000000000000 tokens a step need 7451 GiB .*at most 134217728/,
    ],
    [
      train("{ batch_tokens: 1000 }"),
      /steps\.tr\.params\.batch_tokens: batch_tokens 1000 is not a multiple of seq_len 128/,
    ],
    [train("{ lr: .nan }"), /steps\.tr\.params\.lr: expected a finite number, got NaN$/],
    [
      train("{ lr: [] }"),
      /steps\.tr\.params\.lr: an empty list; a sweep needs at least one value$/,
    ],
  ];
  for (const [i, [yaml, expected]] of cases.entries()) {
    const file = await writeConfig(dir, `bad-${i}.yaml`, yaml);
    const out = await cli(["run", file, "--dry-run", "--artifacts", `${dir}/art`], STEP_KINDS);
    assert.equal(out.code, 1, yaml);
    assert.equal(out.err.trim().split("\n").length, 1, out.err);
    assert.match(out.err.trim(), expected);
  }
  await Deno.remove(dir, { recursive: true });
});
