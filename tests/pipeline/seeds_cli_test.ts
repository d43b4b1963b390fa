// Seeds from the command line on the toy pipeline: --seeds N runs every seeded node once
// per seed 0..N-1 (sources seeded, squares inheriting their source's seed, one total over
// all), --seed N runs that seed alone, and giving both is one clear error.
import assert from "node:assert/strict";
import { main } from "../../pipeline/cli.ts";
import { createReporter } from "../../pipeline/progress.ts";
import { TOY_KINDS } from "../fixtures/toy/registry.ts";
import { tempDir, TOY_YAML, writeConfig } from "./toy_helpers.ts";

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  const errors: string[] = [];
  const originalError = console.error;
  console.error = (...parts: unknown[]) => errors.push(parts.join(" "));
  try {
    const code = await main(args, {
      kinds: TOY_KINDS,
      backendIdentity: (name) => `${name} test`,
      reporter: createReporter({ live: false, write: (t) => (out += t), everyS: 3600 }),
      stdout: (t) => (out += t + "\n"),
    });
    return { code, out, err: errors.join("\n") };
  } finally {
    console.error = originalError;
  }
}

Deno.test("--seeds N sweeps the seeded nodes; --seed N picks one; both is an error", async () => {
  const dir = await tempDir();
  try {
    const configs = `${dir}/configs`;
    await Deno.mkdir(configs);
    await writeConfig(configs, "toy.yaml", TOY_YAML);
    const common = ["--artifacts", `${dir}/art`, "--configs", configs];

    const three = await cli(["run", "toy", "--seeds", "3", "--dry-run", ...common]);
    assert.equal(three.code, 0, three.err);
    assert.match(three.out, /seed 0,1,2/);
    const planned = [...three.out.matchAll(/^would run ([^\s:]+(?: [^\s:]+)*?)(?: \(|:)/gm)]
      .map((m) => m[1]);
    // 2 offsets x 3 seeds sources, as many squares, one total.
    assert.equal(planned.filter((p) => p.startsWith("source[")).length, 6, three.out);
    assert.equal(planned.filter((p) => p.startsWith("square[")).length, 6, three.out);
    assert.equal(planned.filter((p) => p.startsWith("total")).length, 1, three.out);
    assert.ok(planned.some((p) => p === "square[offset=10 seed=2]"), planned.join(", "));

    const one = await cli(["run", "toy", "--seed", "2", "--dry-run", ...common]);
    assert.equal(one.code, 0, one.err);
    assert.match(one.out, /seed 2/);
    assert.match(one.out, /5 would run/);

    const both = await cli(["run", "toy", "--seed", "1", "--seeds", "2", ...common]);
    assert.equal(both.code, 1);
    assert.match(both.err, /--seed and --seeds: give one/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
