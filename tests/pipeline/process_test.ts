// Acceptance tests that need real processes: a run killed with SIGKILL mid-step, two
// runs started at once, and what the command line prints for a bad config.
import assert from "node:assert/strict";
import { cacheKeys, queryDb, tempDir, TOY_DIR, TOY_YAML, writeConfig } from "./toy_helpers.ts";

const TOY_MAIN = `${TOY_DIR}main.ts`;

function toyCommand(args: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", TOY_MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
}

async function waitForFile(path: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      await Deno.stat(path);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  throw new Error(`timed out waiting for ${path}`);
}

Deno.test("a run killed with SIGKILL mid-step leaves no entry and no rows; the next run completes", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  const config = await writeConfig(
    dir,
    "sleepy.yaml",
    TOY_YAML +
      `  nap: { kind: sleep, params: { marker: ${dir}/marker, release: ${dir}/release } }\n`,
  );
  const child = toyCommand(["run", config, "--artifacts", art]).spawn();
  await waitForFile(`${dir}/marker`, 30_000);
  child.kill("SIGKILL");
  const status = await child.status;
  assert.equal(status.success, false);
  await child.stdout.cancel();
  await child.stderr.cancel();

  // The interrupted instance has no entry: its work folder is all that is left.
  const tmp = [...Deno.readDirSync(`${art}/cache/.tmp`)].map((e) => e.name);
  assert.equal(tmp.length, 1);
  assert.ok(!(await cacheKeys(art)).includes(tmp[0]));
  const sleepRows = await queryDb(
    art,
    `SELECT count(*)::INTEGER AS n FROM "values" WHERE stage = 'sleep'`,
  )
    .catch(() => [{ n: 0 }]);
  assert.equal(sleepRows[0].n, 0);

  await Deno.writeTextFile(`${dir}/release`, "go");
  const next = await toyCommand(["run", config, "--artifacts", art]).output();
  assert.equal(next.code, 0, new TextDecoder().decode(next.stderr));
  assert.ok((await cacheKeys(art)).includes(tmp[0]));
  assert.deepEqual([...Deno.readDirSync(`${art}/cache/.tmp`)], []);
  const rows = await queryDb(
    art,
    `SELECT count(*)::INTEGER AS n FROM "values" WHERE stage = 'sleep'`,
  );
  assert.equal(rows[0].n, 1);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("two runs started at once both finish and each instance executes once", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  const config = await writeConfig(
    dir,
    "slow.yaml",
    TOY_YAML.replace("offset: [0, 10]", "offset: [0, 10, 20], delay_ms: 150")
      .replace(
        "inputs: { numbers: source } }",
        "inputs: { numbers: source }, params: { delay_ms: 150 } }",
      ),
  );
  const runs = await Promise.all([
    toyCommand(["run", config, "--artifacts", art, "--jobs", "2"]).output(),
    toyCommand(["run", config, "--artifacts", art, "--jobs", "2"]).output(),
  ]);
  for (const r of runs) assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  const executions = await queryDb(
    art,
    "SELECT key, count(*)::INTEGER AS n FROM runs GROUP BY key",
  );
  assert.equal(executions.length, 7); // 3 sources, 3 squares, 1 sum
  for (const e of executions) assert.equal(e.n, 1, `instance ${e.key} ran ${e.n} times`);
  assert.equal((await cacheKeys(art)).length, 7);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("the command line prints one-paragraph errors without a stack and exits 1", async () => {
  const dir = await tempDir();
  const bad = await writeConfig(
    dir,
    "bad.yaml",
    'steps:\n  s: { kind: source, params: { n: "many" } }\n',
  );
  const unknown = await writeConfig(dir, "unknown.yaml", "steps:\n  s: { kind: sauce }\n");
  const cases: [string[], string][] = [
    [["run", bad], `error: ${bad}: steps.s.params.n: expected number, got string "many"\n`],
    [
      ["run", unknown],
      `error: ${unknown}: steps.s.kind: unknown step kind "sauce" ` +
      `(known kinds: fail, sleep, source, square, sum)\n`,
    ],
    [
      ["run", "nope", "--configs", dir],
      `error: no pipeline "nope": not a file, nor a name in ${dir}/ (pipelines there: bad, unknown)\n`,
    ],
  ];
  for (const [args, expected] of cases) {
    const out = await toyCommand([...args, "--artifacts", `${dir}/art`]).output();
    assert.equal(out.code, 1);
    assert.equal(new TextDecoder().decode(out.stderr), expected);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("SIGTERM mid-step cancels like Ctrl-C: exit 130, no entry, the next run completes", async () => {
  const dir = await tempDir();
  const art = `${dir}/art`;
  const config = await writeConfig(
    dir,
    "sleepy.yaml",
    TOY_YAML +
      `  nap: { kind: sleep, params: { marker: ${dir}/marker, release: ${dir}/release } }\n`,
  );
  const child = toyCommand(["run", config, "--artifacts", art]).spawn();
  await waitForFile(`${dir}/marker`, 30_000);
  child.kill("SIGTERM");
  const out = await child.output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 130, stderr);
  assert.match(stderr, /interrupted by SIGTERM/);
  await Deno.writeTextFile(`${dir}/release`, "go");
  const next = await toyCommand(["run", config, "--artifacts", art]).output();
  assert.equal(next.code, 0, new TextDecoder().decode(next.stderr));
});
