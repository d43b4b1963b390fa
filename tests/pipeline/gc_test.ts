import assert from "node:assert/strict";
import { main } from "../../pipeline/cli.ts";
import { silentReporter } from "../../pipeline/status.ts";
import { TOY_KINDS } from "../fixtures/toy/registry.ts";
import { cacheKeys, queryDb, tempDir, TOY_YAML, writeConfig } from "./toy_helpers.ts";

async function cli(args: string[]): Promise<{ code: number; out: string }> {
  let out = "";
  const code = await main(args, {
    kinds: TOY_KINDS,
    reporter: silentReporter,
    stdout: (t) => (out += t + "\n"),
  });
  return { code, out };
}

Deno.test("status lists instances; gc drops only entries no config reaches", async () => {
  const dir = await tempDir();
  const configs = `${dir}/configs`;
  await Deno.mkdir(configs);
  const art = `${dir}/art`;
  const common = ["--artifacts", art, "--configs", configs];
  await writeConfig(configs, "toy.yaml", TOY_YAML);
  assert.equal((await cli(["run", "toy", ...common])).code, 0);

  const status = await cli(["status", "toy", ...common]);
  assert.match(status.out, /^source\[offset=0\] +cached +[0-9a-f]{12} +\d+ B/m);
  assert.match(status.out, /5 of 5 instances cached/);

  // Change the sweep: the offset=10 branch and the old total become unreachable.
  await writeConfig(configs, "toy.yaml", TOY_YAML.replace("offset: [0, 10]", "offset: [0]"));
  assert.equal((await cli(["run", "toy", ...common])).code, 0);
  assert.equal((await cacheKeys(art)).length, 6);

  const dry = await cli(["gc", "--dry-run", ...common]);
  assert.equal((dry.out.match(/^would remove .*unreachable\)$/gm) ?? []).length, 3);
  assert.equal((await cacheKeys(art)).length, 6);

  const real = await cli(["gc", ...common]);
  assert.match(real.out, /removed 3 folders, .*; kept 3 entries/);
  assert.equal((await cacheKeys(art)).length, 3);
  const rerun = await cli(["run", "toy", ...common]);
  assert.match(rerun.out, /^0 ran, 3 cached/);
  const values = await queryDb(art, `SELECT count(*)::INTEGER AS n FROM "values"`);
  assert.equal(values[0].n, 6); // the removed entries' rows are gone too
  await Deno.remove(dir, { recursive: true });
});
