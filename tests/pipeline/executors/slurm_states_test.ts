// How the Slurm executor reads a job's end, with stand-ins for Slurm's commands on
// PATH (the real cluster in tests/pipeline/slurm_test.ts cannot time a job out, run it
// out of memory or forget it quickly): TIMEOUT and OUT_OF_MEMORY are reported with the
// log's tail and not retried; a job slurmctld has forgotten, on a cluster without
// accounting, is read from the exit code its script left beside the log.
import assert from "node:assert/strict";
import { z } from "zod";
import { expandPipeline } from "../../../pipeline/expand.ts";
import { defineStep } from "../../../pipeline/step.ts";
import { Store } from "../../../pipeline/store.ts";
import { SlurmExecutor } from "../../../pipeline/executors/slurm.ts";
import { parseExecutorSection } from "../../../pipeline/executors/slurm_config.ts";
import type { Reporter } from "../../../pipeline/progress.ts";

const step = defineStep({
  name: "work",
  module: import.meta.url,
  params: z.object({}),
  inputs: [],
  run: () => Promise.resolve(),
});
const KEY = "ab".repeat(32);

/** Fake sbatch/squeue/sacct/scontrol/scancel reading the job's fate from `$FAKE/state`. */
async function fakeSlurm(dir: string): Promise<void> {
  const bin = `${dir}/bin`;
  await Deno.mkdir(bin, { recursive: true });
  const scripts: Record<string, string> = {
    // Job 101; writes its log (the --output path with %j) like a job that ran.
    sbatch: `[ -f "$FAKE/sbatch-error" ] && { cat "$FAKE/sbatch-error" >&2; exit 1; }
for a in "$@"; do case "$a" in --output=*) out="\${a#--output=}";; esac; done
cat > "$FAKE/script"; log="\${out//%j/101}"
printf 'start\\nstep 2 of 9\\nslurmstepd: error: *** JOB 101 CANCELLED DUE TO TIME LIMIT ***\\n' > "$log"
echo 101`,
    squeue:
      `[ -s "$FAKE/state" ] && cat "$FAKE/state" || { echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; }`,
    sacct: `echo "Slurm accounting storage is disabled" >&2; exit 1`,
    scontrol: `[ -s "$FAKE/state" ] || exit 1
IFS='|' read -r id st node reason < "$FAKE/state"
echo "JobId=$id JobState=$st Reason=$reason ExitCode=0:9 NodeList=$node"`,
    scancel: `echo "$@" >> "$FAKE/cancelled"`,
  };
  for (const [name, body] of Object.entries(scripts)) {
    await Deno.writeTextFile(`${bin}/${name}`, `#!/bin/bash\n${body}\n`, { mode: 0o755 });
  }
}

async function build(
  state: string | null,
  exitCode: string | null,
  manifestJob?: string,
  sbatchError?: string,
) {
  const dir = await Deno.makeTempDir({ prefix: "slurm-states-" });
  await fakeSlurm(dir);
  if (sbatchError) await Deno.writeTextFile(`${dir}/sbatch-error`, sbatchError);
  if (state !== null) await Deno.writeTextFile(`${dir}/state`, state);
  const store = new Store(`${dir}/art`);
  await store.init();
  if (manifestJob) {
    // The entry the job committed.
    await store.prepareWorkDir(KEY, false);
    await store.commit(KEY, {
      step: "work",
      node: "w",
      params: {},
      inputs: {},
      keyParts: { step: "work", code: "c", params: {}, inputs: {}, backend: null, seed: null },
      started: new Date().toISOString(),
      finished: new Date().toISOString(),
      duration_s: 0,
      backend: "cpu",
      seed: 0,
      host: "n7",
      job: { executor: "slurm", id: manifestJob, node: "n7" },
      rows: {},
    });
  }
  const pipeline = expandPipeline({
    file: "p.yaml",
    defaults: {},
    steps: { w: { kind: "work", inputs: {}, params: {} } },
  }, [step]);
  const executor = new SlurmExecutor({
    store,
    pipelineFile: `${dir}/p.yaml`,
    mainModule: "/project/main.ts",
    cwd: dir,
    cliArgs: [],
    settings: parseExecutorSection({ poll_s: 0.05, retries: 0 }, pipeline),
  });
  const lines: string[] = [];
  const reporter: Reporter = {
    event: (label, status, detail) => lines.push(`${status} ${label} ${detail ?? ""}`),
    line: (text) => lines.push(text),
    progressFor: () => ({ start() {}, update() {}, log() {} }),
    close() {},
  };
  const logBase = `${dir}/art/slurm/logs/w-${KEY.slice(0, 12)}`;
  // What the job script leaves once it has run: its exit code beside its log.
  if (exitCode !== null) {
    await Deno.mkdir(`${dir}/art/slurm/logs`, { recursive: true });
    await Deno.writeTextFile(`${logBase}-101.exit`, `${exitCode}\n`);
  }
  const path = Deno.env.get("PATH");
  Deno.env.set("PATH", `${dir}/bin:${path}`);
  Deno.env.set("FAKE", dir);
  try {
    const pending = executor.build({
      instance: pipeline.instances[0],
      key: KEY,
      upstream: {},
      forced: false,
      reporter,
      signal: new AbortController().signal,
    });
    const result = await pending;
    const script = await Deno.readTextFile(`${dir}/script`).catch(() => "");
    return { result, lines, script };
  } finally {
    Deno.env.set("PATH", path!);
    Deno.env.delete("FAKE");
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("TIMEOUT: the state, exit code, reason and the log's tail; no retry", async () => {
  const { result, lines, script } = await build("101|TIMEOUT|n7|TimeLimit\n", null);
  assert.equal(result.status, "failed");
  assert.ok("error" in result);
  assert.match(
    result.error,
    /^job 101 TIMEOUT on n7 \(exit 0:9\), TimeLimit; log \S+w-abababababab-101\.log:\n/,
  );
  assert.match(
    result.error,
    / {4}\| slurmstepd: error: \*\*\* JOB 101 CANCELLED DUE TO TIME LIMIT \*\*\*$/,
  );
  assert.deepEqual(lines, ["submitted w: job 101"]);
  assert.match(script, /run-instance .*--key ababab/);
});

Deno.test("OUT_OF_MEMORY is reported as such", async () => {
  const { result } = await build("101|OUT_OF_MEMORY|n2|OutOfMemory\n", null);
  assert.ok("error" in result);
  assert.match(result.error, /^job 101 OUT_OF_MEMORY on n2 \(exit 0:9\), OutOfMemory; log /);
});

Deno.test("a forgotten job without accounting: its exit file says 0, the entry is its", async () => {
  const { result } = await build(null, "0", "101");
  assert.equal(result.status, "ok");
  assert.equal(result.job?.id, "101");
});

Deno.test("a forgotten job without accounting: exit file 1 is FAILED with the log's tail", async () => {
  const { result } = await build(null, "1");
  assert.ok("error" in result);
  assert.match(
    result.error,
    /^job 101 FAILED \(exit 1:0\), left the queue; log .*\n {4}\| start\n/,
  );
});

Deno.test("a forgotten job with no exit file at all is UNKNOWN, not a success", async () => {
  const { result } = await build(null, null);
  assert.equal(result.status, "failed");
  assert.ok("error" in result);
  assert.match(
    result.error,
    /^job 101 UNKNOWN, left the queue: no accounting and no exit file; log /,
  );
});

Deno.test("a refused submission fails the instance with sbatch's words", async () => {
  const { result, lines } = await build(
    null,
    null,
    undefined,
    "sbatch: error: invalid partition specified: gpux\n",
  );
  assert.equal(result.status, "failed");
  assert.ok("error" in result);
  assert.equal(
    result.error,
    "sbatch refused the job: sbatch: error: invalid partition specified: gpux",
  );
  assert.deepEqual(lines, []);
});
