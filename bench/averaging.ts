// Benchmark of checkpoint averaging (lm/averaging/averaging.ts), measured against plain file I/O
// on the same bytes in the same run:
//   1. throughput: one LAWA window of k=5 checkpoints of N float32 parameters (default
//      100M, in 4 tensors), in GB/s read, against copying the same 5 files (goal >= 0.5x).
//      Measured twice: as the pipeline's average step runs (no fsync of its own: the
//      cache fsyncs each output when it commits, as it would a copy) against a plain
//      copy, and durable (`deno task average`: fsync before the rename) against a copy
//      whose files are fsynced too;
//   2. peak RSS of `deno task average` for k=2 vs k=10 in subprocesses (goal: equal
//      within 10%, since memory must not grow with k).
// Usage: deno run --allow-all bench/averaging.ts [--params N] [--repeats R]
import { averageCheckpoints } from "../lm/averaging/averaging.ts";
import { type CheckpointRef } from "../lm/averaging/plan.ts";
import { SafetensorsWriter } from "../lm/checkpoints/safetensors.ts";

const args = Deno.args;
const flag = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const PARAMS = flag("params", 100_000_000);
const REPEATS = Math.max(3, flag("repeats", 3));
const N_TENSORS = 4;
const N_CHECKPOINTS = 10;
const CLI = new URL("../cli/average.ts", import.meta.url).pathname;
const GB = 1e9;

function stats(xs: number[]): { min: number; median: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)] };
}

async function freeBytes(dir: string): Promise<number> {
  const out = await new Deno.Command("df", { args: ["-k", "--output=avail", dir] }).output();
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return Number(lines[lines.length - 1]) * 1024;
}

/** Checkpoint `step`: N_TENSORS float32 tensors, values varying with the step. */
async function writeCheckpoint(path: string, step: number): Promise<void> {
  const per = Math.ceil(PARAMS / N_TENSORS);
  const specs: [string, { dtype: "F32"; shape: number[] }][] = [];
  for (let t = 0; t < N_TENSORS; t++) {
    specs.push([`transformer.h.${t}.mlp.c_fc.weight`, { dtype: "F32", shape: [per] }]);
  }
  const writer = await SafetensorsWriter.create(path, specs, { step: String(step) });
  const data = new Float32Array(per); // (per,)
  for (const [t, [name]] of specs.entries()) {
    const shift = (t * 97 + step * 31) & 1023;
    for (let i = 0; i < per; i++) data[i] = (((i + shift) & 1023) - 512) / 1024;
    await writer.write(name, new Uint8Array(data.buffer));
  }
  await writer.close();
}

async function timeIt(
  label: string,
  run: () => Promise<void>,
  after: () => Promise<void>,
): Promise<number[]> {
  await run(); // warm-up (also warms the page cache)
  await after();
  const times: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    const t0 = performance.now();
    await run();
    times.push((performance.now() - t0) / 1000);
    await after();
  }
  const { min, median } = stats(times);
  console.log(`  ${label.padEnd(34)} min ${min.toFixed(3)} s  median ${median.toFixed(3)} s`);
  return times;
}

/** Peak RSS (KiB) of the average command under /usr/bin/time. */
async function peakRssKiB(dir: string, out: string, k: number): Promise<number> {
  const cmd = new Deno.Command("/usr/bin/time", {
    args: [
      "-f",
      "PEAK_RSS_KIB %M",
      Deno.execPath(),
      "run",
      "--allow-all",
      CLI,
      "--k",
      String(k),
      "--nu",
      "1",
      "--interval",
      "100",
      "--start",
      String(N_CHECKPOINTS),
      dir,
      out,
    ],
  });
  const res = await cmd.output();
  const err = new TextDecoder().decode(res.stderr);
  if (res.code !== 0) {
    throw new Error(`average command failed for k=${k}: ${err.trim().split("\n").pop()}`);
  }
  const m = err.match(/PEAK_RSS_KIB (\d+)/);
  if (!m) throw new Error(`no peak RSS in /usr/bin/time output: ${err}`);
  await Deno.remove(out, { recursive: true });
  return Number(m[1]);
}

const root = await Deno.makeTempDir({ prefix: "bench-averaging-" });
try {
  const ckptBytes = PARAMS * 4;
  const need = ckptBytes * (N_CHECKPOINTS + 5 + 2) + 1e9;
  const free = await freeBytes(root);
  console.log(
    `averaging bench: ${PARAMS.toLocaleString()} float32 params per checkpoint (${
      (ckptBytes / GB).toFixed(2)
    } GB), ` +
      `${N_CHECKPOINTS} checkpoints, ${REPEATS} repeats after a warm-up; ${
        (free / GB).toFixed(1)
      } GB free`,
  );
  if (free < need) {
    console.log(`skipped: needs about ${(need / GB).toFixed(1)} GB free disk in ${root}`);
    Deno.exit(0);
  }
  const inDir = `${root}/in`;
  await Deno.mkdir(inDir);
  const refs: CheckpointRef[] = [];
  const t0 = performance.now();
  for (let s = 1; s <= N_CHECKPOINTS; s++) {
    const path = `${inDir}/ckpt-${String(s).padStart(3, "0")}.safetensors`;
    await writeCheckpoint(path, s);
    refs.push({ step: s, path });
  }
  console.log(`  wrote inputs in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  // 1. Throughput: one LAWA window over checkpoints 1..5 vs copying those 5 files.
  const k = 5;
  const members = refs.slice(0, k);
  const readBytes = ckptBytes * k;
  const outDir = `${root}/out`;
  const copyDir = `${root}/copy`;
  console.log(`throughput (k=${k}, ${(readBytes / GB).toFixed(2)} GB read per run):`);
  const runAverage = (durable: boolean) => async () => {
    const r = await averageCheckpoints(
      members,
      {
        method: "lawa",
        k,
        nu: 1,
        interval: 100,
        start: k,
      },
      outDir,
      { durable },
    );
    if (r.outputs.length !== 1 || r.bytesRead !== readBytes) throw new Error("unexpected plan");
  };
  const runCopy = (durable: boolean) => async () => {
    await Deno.mkdir(copyDir);
    for (const m of members) {
      const to = `${copyDir}/${m.step}`;
      await Deno.copyFile(m.path, to);
      if (durable) {
        using f = await Deno.open(to, { write: true });
        await f.sync();
      }
    }
  };
  const clearOut = () => Deno.remove(outDir, { recursive: true });
  const clearCopy = () => Deno.remove(copyDir, { recursive: true });
  const compare = async (what: string, durable: boolean) => {
    console.log(`${what}:`);
    const avg = stats(await timeIt("LAWA window (average + write)", runAverage(durable), clearOut));
    const copy = stats(
      await timeIt("baseline: copy the same 5 files", runCopy(durable), clearCopy),
    );
    console.log(
      `  averaging ${(readBytes / GB / avg.median).toFixed(2)} GB/s (best ${
        (readBytes / GB / avg.min).toFixed(2)
      }), copy ${(readBytes / GB / copy.median).toFixed(2)} GB/s (best ${
        (readBytes / GB / copy.min).toFixed(2)
      })`,
    );
    console.log(
      `  ratio averaging / copy speed (medians): ${
        (copy.median / avg.median).toFixed(2)
      }x (goal >= 0.5x)`,
    );
  };
  await compare("as the average step runs (the cache fsyncs afterwards), against a copy", false);
  await compare("durable (fsync before rename), against a copy fsynced too", true);

  // 2. Peak RSS in subprocesses: k=2 vs k=10, one window each ending at the last checkpoint.
  try {
    await Deno.stat("/usr/bin/time");
    console.log("peak RSS of `deno task average`, one window at the last checkpoint:");
    const rss: Record<number, number[]> = { 2: [], 10: [] };
    for (let r = 0; r < 2; r++) {
      for (const kk of [2, 10]) rss[kk].push(await peakRssKiB(inDir, `${root}/rss-out`, kk));
    }
    const [r2, r10] = [Math.min(...rss[2]), Math.min(...rss[10])];
    console.log(
      `  k=2:  ${(r2 / 1024).toFixed(0)} MiB (runs: ${
        rss[2].map((x) => (x / 1024).toFixed(0)).join(", ")
      })`,
    );
    console.log(
      `  k=10: ${(r10 / 1024).toFixed(0)} MiB (runs: ${
        rss[10].map((x) => (x / 1024).toFixed(0)).join(", ")
      })`,
    );
    console.log(`  ratio k=10 / k=2: ${(r10 / r2).toFixed(3)} (goal within 1.10)`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    console.log("peak RSS skipped: /usr/bin/time not found");
  }
} finally {
  await Deno.remove(root, { recursive: true });
}
