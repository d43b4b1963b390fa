// The Slurm executor against a real scheduler: a one-node cluster (munged, slurmctld,
// slurmd) started by scripts/slurm/up.sh in a private folder with its own ports, used
// by every step below, and stopped at the end. A machine without the Slurm packages or
// root fails here with up.sh's one-line reason: these tests never pass without a
// cluster. Runs go through the real command line, as a user's would.
import assert from "node:assert/strict";
import { ResultsDb } from "../../pipeline/results.ts";
import { type Manifest, Store } from "../../pipeline/store.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const MAIN = `${ROOT}main.ts`;
const TOY_MAIN = `${ROOT}tests/fixtures/toy/main.ts`;
const TINY = `${ROOT}tests/fixtures/e2e/ablation-tiny.yaml`;
const dec = new TextDecoder();

interface Cluster {
  dir: string;
  env: Record<string, string>;
  host: string;
}

async function script(name: string, args: string[]): Promise<{ code: number; text: string }> {
  const root = Deno.uid() === 0;
  const out = await new Deno.Command(root ? `${ROOT}scripts/slurm/${name}` : "sudo", {
    args: root ? args : ["-n", `${ROOT}scripts/slurm/${name}`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, text: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

async function startCluster(): Promise<Cluster> {
  const dir = await Deno.makeTempDir({ prefix: "slurm-test-" });
  const up = await script("up.sh", [dir]).catch((e) => ({ code: -1, text: String(e) }));
  if (up.code !== 0) {
    await script("down.sh", [dir]).catch(() => {});
    throw new Error(
      `could not start the one-node Slurm cluster (scripts/slurm/up.sh, needs root and the ` +
        `Debian packages slurm-wlm and munge): ${up.text.trim()}`,
    );
  }
  const host = (await new Deno.Command("hostname", { args: ["-s"], stdout: "piped" }).output())
    .stdout;
  return { dir, env: { SLURM_CONF: `${dir}/slurm.conf` }, host: dec.decode(host).trim() };
}

async function slurm(cluster: Cluster, cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, {
    args,
    env: cluster.env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return dec.decode(out.stdout) + dec.decode(out.stderr);
}

/** Job ids the cluster still has queued or running. */
async function liveJobs(cluster: Cluster): Promise<string[]> {
  return (await slurm(cluster, "squeue", ["-h", "-o", "%i"])).split("\n").filter((l) => l.trim());
}

function cli(cluster: Cluster, main: string, args: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", main, ...args],
    env: { ...cluster.env, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  });
}

async function run(cluster: Cluster, main: string, args: string[]) {
  const out = await cli(cluster, main, args).output();
  return { code: out.code, text: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

async function manifests(artifacts: string): Promise<Manifest[]> {
  const store = new Store(artifacts);
  const out: Manifest[] = [];
  for (const key of await store.listKeys()) out.push((await store.readManifest(key))!);
  return out;
}

async function waitFor(
  what: string,
  test: () => Promise<boolean>,
  context: () => string = () => "",
  timeoutMs = 60_000,
) {
  const until = Date.now() + timeoutMs;
  while (!(await test())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}\n${context()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Pids of `run-instance` processes (cluster jobs) whose command line has `text` (and job). */
async function processesRunning(text: string, job?: string): Promise<string[]> {
  const pids: string[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const cmd = await Deno.readTextFile(`/proc/${e.name}/cmdline`).catch(() => "");
    if (!cmd.includes("run-instance") || !cmd.includes(text)) continue;
    const env = job ? await Deno.readTextFile(`/proc/${e.name}/environ`).catch(() => "") : "";
    if (!job || env.split("\0").includes(`SLURM_JOB_ID=${job}`)) pids.push(e.name);
  }
  return pids;
}

/** The log of the one job an artifacts folder's runs submitted. */
async function jobLog(artifacts: string): Promise<string> {
  const logs = [...Deno.readDirSync(`${artifacts}/slurm/logs`)].filter((e) =>
    e.name.endsWith(".log")
  );
  assert.equal(logs.length, 1, logs.map((e) => e.name).join(", "));
  return await Promise.resolve(`${artifacts}/slurm/logs/${logs[0].name}`);
}

const exists = (path: string) => () => Deno.stat(path).then(() => true, () => false);

/** Collects a child's output while it runs (so a test can wait for a line). */
function collect(stream: ReadableStream<Uint8Array>): { text: () => string; done: Promise<void> } {
  let text = "";
  const done = stream.pipeTo(
    new WritableStream({ write: (chunk) => void (text += dec.decode(chunk, { stream: true })) }),
  );
  return { text: () => text, done };
}

/** A running command line whose output is collected as it comes. */
interface Child {
  process: Deno.ChildProcess;
  output: () => string;
  /** Exit code, once the output is drained. */
  done: () => Promise<number>;
}

function spawn(cluster: Cluster, main: string, args: string[], children: Child[]): Child {
  const process = cli(cluster, main, args).spawn();
  const err = collect(process.stderr);
  const out = collect(process.stdout);
  const child: Child = {
    process,
    output: () => err.text() + out.text(),
    done: async () => {
      const status = await process.status;
      await Promise.all([err.done, out.done]);
      return status.code;
    },
  };
  children.push(child);
  return child;
}

/** After a step (also a failed one): no command line of it left running, no job queued. */
async function cleanUp(cluster: Cluster, children: Child[]): Promise<void> {
  for (const c of children.splice(0)) {
    try {
      c.process.kill("SIGKILL");
    } catch { /* already exited */ }
    await c.done();
  }
  const left = await liveJobs(cluster);
  if (left.length) await slurm(cluster, "scancel", left);
}

/** At the end, even after a failure: no job process of these tests may outlive them. */
async function killStrays(work: string): Promise<string[]> {
  const pids = await processesRunning(work);
  for (const pid of pids) Deno.kill(Number(pid), "SIGKILL");
  return pids;
}

const runArgs = (config: string, artifacts: string, executor: string) => [
  "run",
  config,
  "--artifacts",
  artifacts,
  "--executor",
  executor,
];

/** Instances by node and params: keys move when code changes, labels do not. */
const byLabel = (ms: Manifest[]) =>
  new Map(ms.map((m) => [`${m.node} ${JSON.stringify(m.params)}`, m]));

Deno.test({
  name: "Slurm executor on a one-node cluster",
  sanitizeOps: false,
  sanitizeResources: false,
}, async (t) => {
  const cluster = await startCluster();
  const work = await Deno.makeTempDir({ prefix: "slurm-runs-" });
  const children: Child[] = [];
  const toy = async (name: string, steps: string, executor = "{ poll_s: 0.3 }") => {
    const path = `${work}/${name}.yaml`;
    await Deno.writeTextFile(path, `executor: ${executor}\nsteps:\n${steps}`);
    return path;
  };
  try {
    await t.step("tiny pipeline: every instance a job, numbers equal to a local run", async () => {
      const config = `${work}/tiny.yaml`;
      await Deno.writeTextFile(
        config,
        `extends: ${TINY}\nexecutor: { poll_s: 0.5, defaults: { cpus: 1, mem: 2G } }\n` +
          `steps:\n  lawa: { params: { k: [2], nu: [4] } }\n`,
      );
      const local = await run(cluster, MAIN, runArgs(config, `${work}/local`, "local"));
      assert.equal(local.code, 0, local.text);
      const n = Number(local.text.match(/(\d+) ran, 0 cached, 0 failed/)?.[1]);
      assert.ok(n >= 7, local.text);
      const remote = await run(cluster, MAIN, runArgs(config, `${work}/slurm`, "slurm"));
      assert.equal(remote.code, 0, remote.text);
      assert.match(remote.text, new RegExp(`${n} ran, 0 cached, 0 failed`));

      const localEntries = byLabel(await manifests(`${work}/local`));
      const slurmEntries = byLabel(await manifests(`${work}/slurm`));
      assert.deepEqual([...slurmEntries.keys()].sort(), [...localEntries.keys()].sort());
      const jobIds = new Set<string>();
      let checkpoints = 0;
      for (const [label, m] of slurmEntries) {
        const twin = localEntries.get(label)!;
        assert.equal(twin.job, undefined, `${label}: a local entry names a job`);
        // Same key (same code, params and inputs): byte-identical checkpoints. (Whole
        // digests differ: training logs carry tokens/s.)
        if (m.key === twin.key) {
          for (const [path, file] of Object.entries(m.outputs)) {
            if (!/\.(safetensors|bin)$/.test(path)) continue;
            assert.equal(file.sha256, twin.outputs[path]?.sha256, `${label}: ${path} differs`);
            checkpoints++;
          }
        }
        assert.equal(m.job?.executor, "slurm", `${label}: no Slurm job in its manifest`);
        assert.match(m.job!.id, /^\d+$/);
        assert.equal(m.job!.node, cluster.host);
        assert.match(
          remote.text,
          new RegExp(`submitted ${m.node}(\\[[^\\]]*\\])?: job ${m.job!.id}\\b`),
        );
        assert.match(
          remote.text,
          new RegExp(`ok +${m.node}(\\[[^\\]]*\\])? .*job ${m.job!.id} COMPLETED`),
        );
        jobIds.add(m.job!.id);
      }
      assert.equal(jobIds.size, n, "one job per instance");
      assert.ok(checkpoints > 0, "no checkpoint compared: every key changed between the runs");

      const evalRows = async (artifacts: string) =>
        await new ResultsDb(artifacts).query(
          `SELECT DISTINCT s.method, s.k, s.nu, e.step, e.domain, e.loss
           FROM eval_loss e JOIN series s USING (series_id) ORDER BY ALL`,
        );
      const localRows = await evalRows(`${work}/local`);
      assert.ok(localRows.length > 0);
      assert.deepEqual(await evalRows(`${work}/slurm`), localRows);

      // A rerun submits nothing cached. (Only an entry whose code changed in between
      // runs again: none in a fixed checkout, but a working tree may be edited meanwhile.)
      const before = new Set((await manifests(`${work}/slurm`)).map((m) => m.key));
      const again = await run(cluster, MAIN, runArgs(config, `${work}/slurm`, "slurm"));
      assert.equal(again.code, 0, again.text);
      const [, ran, cached] = again.text.match(/(\d+) ran, (\d+) cached, 0 failed/)!.map(Number);
      assert.equal(ran + cached, n);
      const fresh = (await manifests(`${work}/slurm`)).filter((m) => !before.has(m.key));
      assert.equal(fresh.length, ran, again.text);
      assert.equal(again.text.match(/^submitted /gm)?.length ?? 0, ran, again.text);
    });

    await t.step("a failing job is reported with its state, exit code and log tail", async () => {
      const config = await toy(
        "failing",
        `  source: { kind: source, params: { n: 2 } }\n` +
          `  broken: { kind: fail, inputs: { numbers: source }, params: { message: "boom in the step" } }\n`,
      );
      const art = `${work}/failing`;
      const out = await run(cluster, TOY_MAIN, runArgs(config, art, "slurm"));
      assert.equal(out.code, 1, out.text);
      assert.match(out.text, /1 ran, 0 cached, 1 failed/);
      assert.match(out.text, /FAILED broken: job \d+ FAILED on \S+ \(exit 1:0\)/);
      assert.match(out.text, /log \S+broken-\w+-\d+\.log:\n(\s+\| .*\n)*\s+\| .*boom in the step/);
      assert.equal((await manifests(art)).length, 1, "the failed instance left no entry");
      assert.deepEqual(await liveJobs(cluster), []);
    });

    await t.step("a node failure is resubmitted; the entry records the second job", async () => {
      const marker = `${work}/nf-marker`;
      const release = `${work}/nf-release`;
      const config = await toy(
        "nodefail",
        `  nap: { kind: sleep, params: { marker: ${marker}, release: ${release} } }\n`,
        "{ poll_s: 0.3, retries: 1 }",
      );
      try {
        const child = spawn(cluster, TOY_MAIN, runArgs(config, `${work}/nf`, "slurm"), children);
        await waitFor("the job to start", exists(marker), child.output);
        await Deno.remove(marker);
        const node = `nodename=${cluster.host}`;
        const down = await slurm(cluster, "scontrol", [
          "update",
          node,
          "state=down",
          "reason=test",
        ]);
        await waitFor(
          "the resubmission",
          () => Promise.resolve(/retry +nap: job \d+ NODE_FAIL/.test(child.output())),
          () => `scontrol: ${down}\n${child.output()}`,
        );
        // A failed node takes its processes with it; here the node lives on, so the
        // first job's process is killed by hand. The second job then takes over its
        // lock (a dead process on this host) and resumes the work.
        const first = child.output().match(/submitted nap: job (\d+)/)![1];
        for (const pid of await processesRunning(config, first)) Deno.kill(Number(pid), "SIGKILL");
        await slurm(cluster, "scontrol", ["update", node, "state=resume"]);
        await waitFor("the second job to start", exists(marker), child.output);
        await Deno.writeTextFile(release, "go");
        assert.equal(await child.done(), 0, child.output());
        const ids = [...child.output().matchAll(/submitted nap: job (\d+)/g)].map((m) => m[1]);
        assert.equal(ids.length, 2, child.output());
        const [entry] = await manifests(`${work}/nf`);
        assert.equal(entry.job?.id, ids[1]);
      } finally {
        await cleanUp(cluster, children);
      }
    });

    await t.step("an instance a local run is building is waited for, not submitted", async () => {
      const marker = `${work}/lw-marker`;
      const release = `${work}/lw-release`;
      const config = await toy(
        "localwait",
        `  nap: { kind: sleep, params: { marker: ${marker}, release: ${release} } }\n`,
      );
      const art = `${work}/localwait`;
      try {
        const local = spawn(cluster, TOY_MAIN, runArgs(config, art, "local"), children);
        await waitFor("the local step to start", exists(marker), local.output);
        const remote = spawn(cluster, TOY_MAIN, runArgs(config, art, "slurm"), children);
        await waitFor(
          "the Slurm run to wait",
          () => Promise.resolve(/waiting +nap: being built by \S+ pid \d+/.test(remote.output())),
          remote.output,
        );
        assert.deepEqual(await liveJobs(cluster), []);
        await Deno.writeTextFile(release, "go");
        assert.equal(await local.done(), 0, local.output());
        assert.equal(await remote.done(), 0, remote.output());
        assert.match(remote.output(), /0 ran, 1 cached, 0 failed/);
        assert.doesNotMatch(remote.output(), /submitted/);
      } finally {
        await cleanUp(cluster, children);
      }
    });

    await t.step(
      "a second run joins the running job; Ctrl-C cancels its jobs, none left",
      async () => {
        const marker = `${work}/cc-marker`;
        const config = await toy(
          "cancel",
          `  nap: { kind: sleep, params: { marker: ${marker}, release: ${work}/never } }\n` +
            `  after: { kind: sum, inputs: { parts: [nap] } }\n`,
        );
        const args = runArgs(config, `${work}/cancel`, "slurm");
        try {
          const first = spawn(cluster, TOY_MAIN, args, children);
          await waitFor("the job to start", exists(marker), first.output);
          const jobs = await liveJobs(cluster);
          assert.equal(jobs.length, 1, `queued: ${jobs.join(", ")}`);

          // A rerun while the job runs joins it rather than submitting the instance again.
          const second = spawn(cluster, TOY_MAIN, args, children);
          await waitFor(
            "the second run to join",
            () => Promise.resolve(/joined +nap: job \d+/.test(second.output())),
            second.output,
          );
          assert.match(second.output(), new RegExp(`joined +nap: job ${jobs[0]}\\b`));
          assert.deepEqual(await liveJobs(cluster), jobs);

          // Ctrl-C on the run that joined leaves the job alone; on its submitter, cancels it.
          second.process.kill("SIGINT");
          assert.equal(await second.done(), 130, second.output());
          assert.deepEqual(await liveJobs(cluster), jobs);
          first.process.kill("SIGINT");
          assert.equal(await first.done(), 130, first.output());
          assert.match(first.output(), /0 ran, 0 cached, 0 failed, 0 skipped, 2 cancelled/);
          assert.deepEqual(await liveJobs(cluster), [], "a cancelled run left jobs behind");
          assert.deepEqual(await manifests(`${work}/cancel`), []);
          // Slurm forgets a cancelled job at once; its process may still be cleaning up.
          await waitFor(
            "the cancelled job's process to exit",
            async () => (await processesRunning(config)).length === 0,
            () => "still running",
            10_000,
          );
          // The job stopped on SIGTERM: it released the key's lock and removed its work folder.
          const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name);
          assert.deepEqual(
            names(`${work}/cancel/cache/.locks`).filter((n) => n.endsWith(".owner")),
            [],
          );
          assert.deepEqual(names(`${work}/cancel/cache/.tmp`), []);
          assert.match(
            await Deno.readTextFile(await jobLog(`${work}/cancel`)),
            /SIGTERM: stopping/,
          );
        } finally {
          await cleanUp(cluster, children);
        }
      },
    );
  } finally {
    await cleanUp(cluster, children);
    const down = await script("down.sh", [cluster.dir]);
    const strays = await killStrays(work);
    await Deno.remove(work, { recursive: true }).catch(() => {});
    assert.equal(down.code, 0, down.text);
    assert.deepEqual(strays, [], "job processes outlived the cluster");
  }
});
