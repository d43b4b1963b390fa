// Shared set-up for the engine's tests: a temp artifacts folder, the toy pipeline run
// in-process, and a look into results.duckdb.
import { withAttached } from "../../pipeline/duckdb.ts";
import { loadConfig } from "../../pipeline/config.ts";
import { expandPipeline } from "../../pipeline/expand.ts";
import { Store } from "../../pipeline/store.ts";
import { ResultsDb } from "../../pipeline/results.ts";
import { runPipeline, type RunSummary } from "../../pipeline/runner.ts";
import { silentReporter } from "../../pipeline/status.ts";
import type { StepKind } from "../../pipeline/step.ts";
import { TOY_KINDS } from "../fixtures/toy/registry.ts";

export const TOY_DIR = new URL("../fixtures/toy/", import.meta.url).pathname;
export const TOY_CONFIG = `${TOY_DIR}configs/toy.yaml`;

/** Write a YAML config into `dir` and return its path. */
export async function writeConfig(dir: string, name: string, yaml: string): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, yaml);
  return path;
}

export const TOY_YAML = await Deno.readTextFile(TOY_CONFIG);

export async function runToy(
  configPath: string,
  artifacts: string,
  opts: {
    kinds?: StepKind[];
    force?: string[];
    dryRun?: boolean;
    jobs?: number;
    backend?: string;
  } = {},
): Promise<RunSummary> {
  const pipeline = expandPipeline(await loadConfig(configPath), opts.kinds ?? TOY_KINDS);
  return await runPipeline({
    pipeline,
    store: new Store(artifacts),
    results: new ResultsDb(artifacts),
    backend: opts.backend ?? "cpu",
    backendVersion: () => "test",
    seed: 0,
    jobs: opts.jobs ?? 2,
    force: opts.force ?? [],
    dryRun: opts.dryRun ?? false,
    reporter: silentReporter,
    signal: new AbortController().signal,
  });
}

/** Labels of the instances that executed (status ok), sorted. */
export function executedLabels(summary: RunSummary): string[] {
  return summary.outcomes.filter((o) => o.status === "ok").map((o) => o.instance.label).sort();
}

export async function queryDb(artifacts: string, sql: string): Promise<Record<string, unknown>[]> {
  return await withAttached(
    `${artifacts}/results.duckdb`,
    async (conn) =>
      (await conn.runAndReadAll(sql)).getRowObjectsJson() as Record<string, unknown>[],
  );
}

/** Cache entry folder names (keys). */
export async function cacheKeys(artifacts: string): Promise<string[]> {
  return await new Store(artifacts).listKeys();
}

export async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "pipeline-test-" });
}

/** An owner file of key's lock, as a build on another node (or a dead process here) leaves it. */
export async function writeOwner(art: string, key: string, host: string, pid: number, ageS = 0) {
  const path = `${art}/cache/.locks/${key}.lock.owner`;
  const owner = { host, pid, pidStart: null, job: null, acquired: new Date().toISOString() };
  await Deno.writeTextFile(path, JSON.stringify(owner) + "\n", { createNew: true });
  const then = new Date(Date.now() - ageS * 1000);
  await Deno.utime(path, then, then);
}

/** A temp project: a configs folder holding toy.yaml, an artifacts path, and the flags naming both. */
export async function toyProject(
  yaml = TOY_YAML,
): Promise<{ dir: string; configs: string; art: string; common: string[] }> {
  const dir = await tempDir();
  const configs = `${dir}/configs`;
  await Deno.mkdir(configs);
  const art = `${dir}/art`;
  await writeConfig(configs, "toy.yaml", yaml);
  return { dir, configs, art, common: ["--artifacts", art, "--configs", configs] };
}
