// Benchmarks of the pipeline engine:
// 1. a synthetic 500-instance DAG of no-op steps: the wall time of a rerun where
//    everything is cached (goal: under 1 s), in-process and as a whole command-line
//    process, against the first run that executes every instance;
// 2. hashing a 1 GiB output file with the cache's hasher against coreutils'
//    `sha256sum` on the same file (goal: at least as fast). The file is deleted after.
// With `--cli ...` this script is instead the command line with the no-op step kinds
// (the subprocess it times).
import { z } from "zod";
import { defineStep, type InputRef, type StepKind } from "../pipeline/step.ts";
import { cliMain } from "../pipeline/cli.ts";
import { hashFile } from "../pipeline/hash.ts";

const noopKinds: StepKind[] = [
  defineStep({
    name: "noop-source",
    module: import.meta.url,
    params: z.object({ i: z.number().int() }),
    inputs: [],
    async run(ctx, params) {
      await Deno.writeTextFile(`${ctx.outDir}/out.json`, JSON.stringify(params.i));
    },
  }),
  defineStep({
    name: "noop-map",
    module: import.meta.url,
    params: z.object({ level: z.number().int() }),
    inputs: ["x"],
    async run(ctx, params) {
      await Deno.writeTextFile(`${ctx.outDir}/out.json`, JSON.stringify(params.level));
    },
  }),
  defineStep({
    name: "noop-gather",
    module: import.meta.url,
    params: z.object({}),
    inputs: ["xs"],
    async run(ctx, _params, inputs) {
      await Deno.writeTextFile(
        `${ctx.outDir}/out.json`,
        JSON.stringify((inputs.xs as InputRef[]).length),
      );
    },
  }),
];

if (Deno.args[0] === "--cli") {
  Deno.args.splice(0, 1);
  await cliMain(noopKinds, { backendIdentity: () => "bench" });
}

const WIDTH = 100; // 100 sources, 4 mapped levels of 100 (the last of 99), 1 gather = 500
function dagYaml(): string {
  const lines = [
    "steps:",
    `  l0: { kind: noop-source, params: { i: [${[...Array(WIDTH).keys()]}] } }`,
  ];
  for (let level = 1; level <= 4; level++) {
    lines.push(
      `  l${level}: { kind: noop-map, inputs: { x: l${level - 1} }, params: { level: ${level} } }`,
    );
  }
  lines.push("  all: { kind: noop-gather, inputs: { xs: [l0, l1, l2, l3, l4] } }");
  return lines.join("\n") + "\n";
}

function stats(samples: number[]): { min: number; median: number } {
  const s = [...samples].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)] };
}

async function timeCommand(cmd: string, args: string[]): Promise<number> {
  const t0 = performance.now();
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  const seconds = (performance.now() - t0) / 1000;
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return seconds;
}

const REPEATS = 5;
const dir = await Deno.makeTempDir({ prefix: "bench-pipeline-" });
try {
  // --- 1. no-op rerun of a 500-instance DAG (whole process: startup, expansion, keys) ---
  const config = `${dir}/dag.yaml`;
  await Deno.writeTextFile(config, dagYaml());
  const self = new URL(import.meta.url).pathname;
  const cli = (
    art: string,
  ) => ["run", "--allow-all", self, "--cli", "run", config, "--artifacts", art];
  const firstRuns: number[] = [];
  for (let i = 0; i < 3; i++) {
    firstRuns.push(await timeCommand(Deno.execPath(), cli(`${dir}/art${i}`)));
  }
  await timeCommand(Deno.execPath(), cli(`${dir}/art0`)); // warm-up
  const reruns: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    reruns.push(await timeCommand(Deno.execPath(), cli(`${dir}/art0`)));
  }
  const startup: number[] = [];
  const empty = `${dir}/empty.ts`;
  await Deno.writeTextFile(empty, "");
  for (let i = 0; i < REPEATS; i++) {
    startup.push(await timeCommand(Deno.execPath(), ["run", empty]));
  }
  const first = stats(firstRuns);
  const rerun = stats(reruns);
  const bare = stats(startup);
  console.log("500-instance DAG of no-op steps (whole `run` process):");
  console.log(
    `  first run (executes 500)   min ${first.min.toFixed(2)} s  median ${
      first.median.toFixed(2)
    } s`,
  );
  console.log(
    `  no-op rerun (all cached)   min ${rerun.min.toFixed(3)} s  median ${
      rerun.median.toFixed(3)
    } s  (goal < 1 s: ${rerun.median < 1 ? "met" : "NOT met"})`,
  );
  console.log(
    `  empty deno process         min ${bare.min.toFixed(3)} s  median ${bare.median.toFixed(3)} s`,
  );
  console.log(
    `  ratio rerun / first run: ${
      (rerun.median / first.median).toFixed(3)
    }; rerun minus empty process: ${(rerun.median - bare.median).toFixed(3)} s`,
  );

  // --- 2. hashing a 1 GiB output ---
  const big = `${dir}/big.bin`;
  {
    const file = await Deno.open(big, { write: true, create: true });
    const chunk = new Uint8Array(16 << 20);
    crypto.getRandomValues(chunk.subarray(0, 65536));
    for (let i = 65536; i < chunk.length; i += 65536) chunk.copyWithin(i, 0, 65536);
    for (let i = 0; i < 64; i++) {
      chunk[0] = i; // no two chunks alike
      let written = 0;
      while (written < chunk.length) written += await file.write(chunk.subarray(written));
    }
    file.close();
  }
  const ours: number[] = [];
  const coreutils: number[] = [];
  let digest = "";
  await hashFile(big); // warm-up (page cache)
  await timeCommand("sha256sum", [big]);
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    digest = (await hashFile(big)).sha256;
    ours.push((performance.now() - t0) / 1000);
    coreutils.push(await timeCommand("sha256sum", [big]));
  }
  const check = new TextDecoder().decode(
    (await new Deno.Command("sha256sum", { args: [big] }).output()).stdout,
  ).split(" ")[0];
  const o = stats(ours);
  const c = stats(coreutils);
  const gib = 1;
  console.log("SHA-256 of a 1 GiB file (page-cached):");
  console.log(
    `  pipeline/hash.ts hashFile  min ${o.min.toFixed(3)} s  median ${o.median.toFixed(3)} s  (${
      (gib / o.median).toFixed(2)
    } GiB/s)`,
  );
  console.log(
    `  sha256sum (coreutils)      min ${c.min.toFixed(3)} s  median ${c.median.toFixed(3)} s  (${
      (gib / c.median).toFixed(2)
    } GiB/s)`,
  );
  console.log(
    `  ratio sha256sum / ours: ${(c.median / o.median).toFixed(2)}x (goal >= 1: ${
      c.median >= o.median ? "met" : "NOT met"
    }); digests ${digest === check ? "agree" : "DIFFER"}`,
  );
} finally {
  await Deno.remove(dir, { recursive: true });
}
