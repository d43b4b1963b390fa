// The smoke pipeline on a fresh copy of the project (its tracked and unignored files),
// run through the real command line with stdout piped, as in a cluster log or `| tee`:
// - the whole chain runs, and the training step (lengthened with --set) prints progress
//   lines while it runs (the interval shortened with LAWA_PROGRESS_EVERY_S);
// - appending a comment to every source file leaves `--dry-run` with nothing to run:
//   cache keys follow what the code means, not its bytes.
import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url).pathname;

async function freshCopy(): Promise<string> {
  const list = await new Deno.Command("git", {
    args: ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    cwd: ROOT,
    stdout: "piped",
  }).output();
  assert.ok(list.success, "git ls-files failed: the test needs the project's git checkout");
  const dir = await Deno.makeTempDir({ prefix: "smoke-copy-" });
  for (const rel of new TextDecoder().decode(list.stdout).split("\0").filter((p) => p)) {
    const from = `${ROOT}${rel}`;
    try {
      if (!(await Deno.lstat(from)).isFile) continue;
    } catch {
      continue; // deleted in the working tree, not yet committed
    }
    await Deno.mkdir(`${dir}/${rel}`.replace(/\/[^/]*$/, ""), { recursive: true });
    await Deno.copyFile(from, `${dir}/${rel}`);
  }
  return dir;
}

async function cli(dir: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "main.ts", ...args],
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory && !e.name.startsWith(".") && e.name !== "artifacts") {
      out.push(...await sourceFiles(path));
    } else if (e.isFile && e.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

Deno.test("smoke: piped progress during training; comments everywhere leave nothing to run", async (t) => {
  const dir = await freshCopy();
  const artifacts = `${dir}/artifacts`;
  try {
    await t.step("a piped run prints progress lines while training", async () => {
      const run = await cli(dir, [
        "run",
        "smoke",
        "--artifacts",
        artifacts,
        "--set",
        "train.steps=64",
      ], { LAWA_PROGRESS_EVERY_S: "0.5" });
      const text = run.stdout + run.stderr;
      assert.equal(run.code, 0, text);
      assert.match(run.stdout, /7 ran, 0 cached, 0 failed/);
      const lines = run.stdout.split("\n");
      const from = lines.findIndex((l) => /^running\s+train$/.test(l));
      const to = lines.findIndex((l) => /^ok\s+train /.test(l));
      assert.ok(from >= 0 && to > from, text);
      const progress = lines.slice(from + 1, to).filter((l) =>
        /^\s+train: \d+\/64 step · .*step\/s · ETA \S+ · loss \d+\.\d+ · \S+ tok\/s · \S+ elapsed$/
          .test(l)
      );
      assert.ok(progress.length >= 2, `expected >= 2 progress lines, got:\n${text}`);
      // The ok line keeps the final loss; no label is said twice.
      assert.match(lines[to], /^ok\s+train \(\S+\) · 64\/64 step · loss \d+\.\d+/);
      assert.doesNotMatch(text, /train train|corpus: corpus:/);
      assert.match(run.stdout, /report: .*figures\/smoke--train\.steps_64\/report\.html/);
    });

    await t.step("appending a comment to every source file leaves nothing to run", async () => {
      const files = await sourceFiles(dir);
      assert.ok(files.length > 50, `only ${files.length} source files copied`);
      for (const f of files) {
        await Deno.writeTextFile(f, "\n// A comment appended by the test.\n", { append: true });
      }
      const dry = await cli(dir, [
        "run",
        "smoke",
        "--artifacts",
        artifacts,
        "--set",
        "train.steps=64",
        "--dry-run",
      ]);
      assert.equal(dry.code, 0, dry.stdout + dry.stderr);
      assert.match(dry.stdout, /^0 would run, 7 cached$/m, dry.stdout + dry.stderr);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
