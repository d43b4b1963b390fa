// Tests of `deno task average`: checkpoint discovery in series and Hugging Face style
// folders (sharded or not), results against the numpy/torch fixture, and that every bad
// input fails with a one-line message and leaves no output behind.
import assert from "node:assert/strict";
import {
  discoverCheckpoints,
  parseAverageArgs,
  runAverageCli,
  stepFromName,
} from "../../cli/average.ts";
import {
  readSafetensorsF32,
  SafetensorsReader,
  writeSafetensors,
} from "../../lm/checkpoints/safetensors.ts";
import type { DType } from "../../lm/checkpoints/dtypes.ts";
import { readSeriesInfo } from "../../lm/checkpoints/series.ts";

const FIXTURE = new URL("../fixtures/averaging/", import.meta.url).pathname;
const CLI = new URL("../../cli/average.ts", import.meta.url).pathname;
const MIXED = `${FIXTURE}series-mixed`;
const fixtureFile = (step: number) => `${MIXED}/step-${String(step).padStart(6, "0")}.safetensors`;

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "average-cli-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Split a fixture checkpoint into two shards + index inside `folder`. */
async function writeSharded(step: number, folder: string): Promise<void> {
  await Deno.mkdir(folder, { recursive: true });
  const reader = await SafetensorsReader.open(fixtureFile(step));
  const shards: Record<string, { dtype: DType; shape: number[]; data: Uint8Array }>[] = [{}, {}];
  const weightMap: Record<string, string> = {};
  for (const [i, t] of reader.header.tensors.entries()) {
    shards[i % 2][t.name] = {
      dtype: t.dtype,
      shape: t.shape,
      data: await reader.readBytes(t.name),
    };
    weightMap[t.name] = `model-0000${(i % 2) + 1}-of-00002.safetensors`;
  }
  reader.close();
  for (const [i, tensors] of shards.entries()) {
    await writeSafetensors(`${folder}/model-0000${i + 1}-of-00002.safetensors`, tensors);
  }
  await Deno.writeTextFile(
    `${folder}/model.safetensors.index.json`,
    JSON.stringify({ metadata: {}, weight_map: weightMap }),
  );
}

/** An HF-style folder: stepN/model.safetensors, one sharded, one plain file, an unrelated folder. */
async function writeHfFolder(dir: string): Promise<void> {
  for (const step of [100, 200, 400]) {
    await Deno.mkdir(`${dir}/step${step}`, { recursive: true });
    await Deno.copyFile(fixtureFile(step), `${dir}/step${step}/model.safetensors`);
    await Deno.writeTextFile(`${dir}/step${step}/config.json`, "{}");
  }
  await writeSharded(300, `${dir}/step300`);
  await Deno.copyFile(fixtureFile(500), `${dir}/checkpoint-500.safetensors`);
  await Deno.mkdir(`${dir}/logs`);
}

async function expectedF64(name: string): Promise<Float64Array> {
  const reader = await SafetensorsReader.open(`${FIXTURE}expected.safetensors`);
  const bytes = await reader.readBytes(name);
  reader.close();
  return new Float64Array(bytes.buffer, 0, bytes.length / 8);
}

Deno.test("step numbers are the last number in a name", () => {
  assert.equal(stepFromName("step-000200.safetensors"), 200);
  assert.equal(stepFromName("checkpoint-1000"), 1000);
  assert.equal(stepFromName("global_step500"), 500);
  assert.equal(stepFromName("pythia-1b-step143000.safetensors.index.json"), 143000);
  assert.equal(stepFromName("final.safetensors"), null);
});

Deno.test("argument parsing: values, = form, and one-line errors", () => {
  const cli = parseAverageArgs(["--method", "ema", "--alpha=0.2", "--step-size", "2", "in", "out"]);
  assert.deepEqual(cli.average, { method: "ema", alpha: 0.2, stepSize: 2 });
  assert.deepEqual([cli.dir, cli.out], ["in", "out"]);
  assert.ok(parseAverageArgs(["--help"]).help);
  assert.throws(
    () => parseAverageArgs(["--k", "five", "a", "b"]),
    /option --k expects a number, got "five"/,
  );
  assert.throws(
    () => parseAverageArgs(["--method", "mean", "a", "b"]),
    /--method expects lawa, ema or swa/,
  );
  assert.throws(
    () => parseAverageArgs(["--frobnicate", "1", "a", "b"]),
    /unknown option --frobnicate/,
  );
  assert.throws(() => parseAverageArgs(["a"]), /expected <dir> <out>, got 1 arguments/);
  assert.throws(() => parseAverageArgs(["a", "b", "--k"]), /option --k needs a value/);
});

Deno.test("HF-style folder (subfolders, shards, plain files) averages like the fixture", async () => {
  await withTempDir(async (dir) => {
    await writeHfFolder(`${dir}/in`);
    const found = await discoverCheckpoints(`${dir}/in`);
    assert.deepEqual(found.checkpoints.map((c) => c.step), [100, 200, 300, 400, 500]);
    assert.ok(found.checkpoints[2].path.endsWith("step300/model.safetensors.index.json"));
    assert.ok(found.checkpoints[4].path.endsWith("/checkpoint-500.safetensors"));
    const lines: string[] = [];
    await runAverageCli(
      ["--k", "2", "--dtype", "float32", `${dir}/in`, `${dir}/out`],
      (l) => lines.push(l),
    );
    assert.match(lines[0], /LAWA k=2 ν=100 interval=100 over 5 checkpoints \(steps 100\.\.500\)/);
    assert.match(
      lines[lines.length - 1],
      /wrote 4 averaged checkpoints .* \(steps 200\.\.500, first from \[100, 200\]\)/,
    );
    const info = await readSeriesInfo(`${dir}/out`);
    assert.deepEqual(info.checkpoints.map((c) => c.sources), [[100, 200], [200, 300], [300, 400], [
      400,
      500,
    ]]);
    for (const c of info.checkpoints) {
      const got = await readSafetensorsF32(`${dir}/out/${c.file}`);
      for (const [name, t] of Object.entries(got.tensors)) {
        const want = await expectedF64(`lawa_k2_nu100_i100/${c.step}/${name}`);
        t.data.forEach((x, i) =>
          assert.ok(
            Math.abs(x - want[i]) <= 1e-6 * Math.max(1e-3, Math.abs(want[i])),
            `${c.step} ${name}[${i}]`,
          )
        );
      }
    }
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
      ["in", "out"],
      "no temp folder left",
    );
  });
});

Deno.test("series folder input: EMA, training params and model carried over", async () => {
  await withTempDir(async (dir) => {
    await runAverageCli([
      "--method",
      "ema",
      "--alpha",
      "0.3",
      "--step-size",
      "2",
      "--init-point",
      "2",
      "--dtype",
      "float32",
      MIXED,
      `${dir}/out`,
    ], () => {});
    const info = await readSeriesInfo(`${dir}/out`);
    assert.equal(info.method, "ema");
    assert.equal(info.label, "EMA α=0.3");
    assert.deepEqual(info.params.train, { lr: 0.006, batch_tokens: 64 });
    assert.equal(info.model.n_embd, 8);
    const cases = JSON.parse(await Deno.readTextFile(`${FIXTURE}cases.json`));
    const want = cases.find((c: { name: string }) => c.name === "ema_a0.3_s2_i2");
    assert.deepEqual(
      info.checkpoints.map((c) => ({ step: c.step, sources: c.sources })),
      want.outputs,
    );
  });
});

Deno.test("bad inputs: one-line error, nothing written", async () => {
  await withTempDir(async (dir) => {
    const series = async (name: string, steps: number[]) => {
      await Deno.mkdir(`${dir}/${name}`);
      for (const s of steps) {
        await Deno.copyFile(fixtureFile(s), `${dir}/${name}/ckpt-${s}.safetensors`);
      }
      return `${dir}/${name}`;
    };
    const good = await series("good", [100, 200, 300, 400]);
    const shape = await series("shape", [100, 200]);
    await writeSafetensors(`${shape}/ckpt-300.safetensors`, {
      "transformer.wte.weight": { dtype: "F32", shape: [8, 12], data: new Float32Array(96) },
    });
    const truncated = await series("truncated", [100, 200]);
    const bytes = await Deno.readFile(fixtureFile(300));
    await Deno.writeFile(`${truncated}/ckpt-300.safetensors`, bytes.subarray(0, bytes.length - 10));
    const lying = await series("lying", [100, 200]);
    const header = new DataView(bytes.buffer).getUint32(0, true);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + header)).replace(
      '"data_offsets": [0, ',
      '"data_offsets": [4, ',
    );
    const liar = bytes.slice();
    liar.set(new TextEncoder().encode(text), 8);
    await Deno.writeFile(`${lying}/ckpt-300.safetensors`, liar);
    const dup = await series("dup", [100, 200]);
    await Deno.copyFile(fixtureFile(300), `${dup}/step200-copy.safetensors`);
    const nonEmpty = `${dir}/nonempty`;
    await Deno.mkdir(nonEmpty);
    await Deno.writeTextFile(`${nonEmpty}/keep.txt`, "x");

    const cases: [string[], RegExp][] = [
      [["--k", "5", good], /LAWA with k=5 needs at least 5 checkpoints, found 4/],
      [["--k", "0", good], /k must be a positive integer, got 0/],
      [["--nu", "-100", good], /nu must be a positive integer, got -100/],
      [["--k", "2", shape], /mismatched (shapes|tensor names).*step 300/],
      [["--k", "2", truncated], /ckpt-300\.safetensors: truncated file/],
      [["--k", "2", lying], /ckpt-300\.safetensors: header lies about offsets/],
      [
        ["--k", "2", dup],
        /ckpt-200\.safetensors and step200-copy\.safetensors both read as step 200|step200-copy\.safetensors and ckpt-200\.safetensors both read as step 200/,
      ],
      [["--k", "2", `${dir}/missing`], /missing: folder not found/],
    ];
    for (const [args, message] of cases) {
      await assert.rejects(
        () => runAverageCli([...args, `${dir}/out`], () => {}),
        message,
        args.join(" "),
      );
      await assert.rejects(
        () => Deno.stat(`${dir}/out`),
        Deno.errors.NotFound,
        `${args.join(" ")}: nothing written`,
      );
      for (const e of Deno.readDirSync(dir)) {
        assert.ok(!e.name.includes(".tmp-"), `temp left by ${args.join(" ")}`);
      }
    }
    await assert.rejects(
      () => runAverageCli([good, nonEmpty], () => {}),
      /nonempty: output folder exists and is not empty/,
    );
    assert.deepEqual([...Deno.readDirSync(nonEmpty)].map((e) => e.name), ["keep.txt"]);

    // As a command: exit code 1 and the message as the last line, without a stack trace.
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", CLI, "--k", "0", good, `${dir}/out`],
    }).output();
    const stderr = new TextDecoder().decode(out.stderr).trim().split("\n");
    assert.equal(out.code, 1);
    assert.equal(stderr[stderr.length - 1], "average: k must be a positive integer, got 0");
    assert.ok(!stderr.some((l) => /^\s+at /.test(l)), "no stack trace");
  });
});
