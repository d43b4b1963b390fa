// The command line: `run`, `status` and `gc`. main.ts hands it the registry of step
// kinds; everything else (artifacts folder, configs folder, flags) is read here.
// Expected errors (bad config, unknown pipeline, bad flag) print one paragraph and
// exit 1, without a stack trace.
import { parseArgs } from "node:util";
import type { StepKind } from "./step.ts";
import { loadConfig, resolvePipelinePath } from "./config.ts";
import { expandPipeline } from "./expand.ts";
import { Store } from "./store.ts";
import { ResultsDb } from "./results.ts";
import { runPipeline, type RunSummary } from "./runner.ts";
import { createReporter, formatDuration, type Reporter } from "./progress.ts";
import { pipelineStatus } from "./status.ts";
import { collectGarbage } from "./gc.ts";
import { UserError } from "./errors.ts";

export interface CliOptions {
  kinds: StepKind[];
  /** Version of a tfjs backend, for cache keys. Default: the pinned tfjs-core version. */
  backendVersion?: (name: string) => string;
  /** Where to print (tests capture it); defaults to stdout / stderr. */
  stdout?: (text: string) => void;
  reporter?: Reporter;
  /** Cancels a run (the CLI wires Ctrl-C to it). */
  signal?: AbortSignal;
}

export const DEFAULT_BACKEND = "wasm";

const USAGE = `usage:
  run <pipeline> [--jobs N] [--dry-run] [--force NODE|KIND]... [--backend NAME] [--seed N]
  status <pipeline> [--backend NAME] [--seed N]
  gc [--dry-run]
common flags: --artifacts DIR (default $LAWA_ARTIFACTS or "artifacts"), --configs DIR (default "configs")
<pipeline> is a file path or a name in the configs folder (name.yaml, .yml or .json)`;

/** The tfjs-core version pinned in the project's deno.json, or "unknown". */
export function pinnedTfjsVersion(): string {
  try {
    const json = JSON.parse(Deno.readTextFileSync(new URL("../deno.json", import.meta.url)));
    const spec: string = json.imports?.["@tensorflow/tfjs-core"] ?? "";
    return spec.match(/@([^@]+)$/)?.[1] ?? "unknown";
  } catch {
    return "unknown";
  }
}

function parseFlags(args: string[]) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: {
        jobs: { type: "string", short: "j" },
        "dry-run": { type: "boolean" },
        force: { type: "string", multiple: true },
        backend: { type: "string" },
        seed: { type: "string" },
        artifacts: { type: "string" },
        configs: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    throw new UserError(`${(e as Error).message.split("\n")[0]}\n${USAGE}`);
  }
}

function intFlag(name: string, value: string | undefined, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new UserError(`--${name}: expected an integer >= ${min}, got "${value}"`);
  }
  return n;
}

function summaryText(summary: RunSummary, seconds: number): string {
  const lines = [
    `${summary.executed} ran, ${summary.cached} cached, ${summary.failed.length} failed, ` +
    `${summary.skipped} skipped${summary.cancelled ? `, ${summary.cancelled} cancelled` : ""} ` +
    `in ${formatDuration(seconds)}`,
  ];
  for (const f of summary.failed) lines.push(`  FAILED ${f.instance.label}: ${f.error}`);
  return lines.join("\n");
}

/** Run the CLI; returns the exit code. */
export async function main(argv: string[], opts: CliOptions): Promise<number> {
  const stdout = opts.stdout ?? ((t: string) => console.log(t));
  const reporter = opts.reporter ?? createReporter();
  try {
    const { values, positionals } = parseFlags(argv);
    const [command, target, ...extra] = positionals;
    if (values.help || !command) {
      stdout(USAGE);
      return command || values.help ? 0 : 1;
    }
    const artifacts = values.artifacts ?? Deno.env.get("LAWA_ARTIFACTS") ?? "artifacts";
    const configsDir = values.configs ?? "configs";
    const store = new Store(artifacts);
    const results = new ResultsDb(artifacts);
    const pinned = pinnedTfjsVersion();
    const backendVersion = opts.backendVersion ?? (() => pinned);

    if (command === "gc") {
      const report = await collectGarbage({
        store,
        results,
        kinds: opts.kinds,
        configsDir,
        backendVersion,
        defaultBackend: DEFAULT_BACKEND,
        dryRun: values["dry-run"] === true,
      });
      stdout(report.text);
      return 0;
    }
    if (command !== "run" && command !== "status") {
      throw new UserError(`unknown command "${command}" (expected run, status or gc)\n${USAGE}`);
    }
    if (!target) throw new UserError(`${command}: missing the pipeline name\n${USAGE}`);
    if (extra.length) throw new UserError(`${command}: unexpected arguments ${extra.join(" ")}`);

    const file = await resolvePipelinePath(target, configsDir);
    const pipeline = expandPipeline(await loadConfig(file), opts.kinds);
    const backend = values.backend ?? pipeline.defaults.backend ?? DEFAULT_BACKEND;
    const seed = intFlag("seed", values.seed, 0) ?? pipeline.defaults.seed ?? 0;
    const signal = opts.signal ?? new AbortController().signal;
    const common = { pipeline, store, results, backend, backendVersion, seed, signal };
    if (command === "status") {
      const status = await pipelineStatus(common);
      stdout(status.text);
      return 0;
    }

    const force = (values.force ?? []).flatMap((f) => f.split(",")).filter((f) => f);
    for (const f of force) {
      const known = pipeline.instances.some((i) => i.node === f || i.kind.name === f);
      if (!known) {
        throw new UserError(`--force ${f}: no node or step kind of that name in ${file}`);
      }
    }
    const jobs = intFlag("jobs", values.jobs, 1) ?? 1;
    const dryRun = values["dry-run"] === true;
    const t0 = performance.now();
    reporter.line(
      `${file}: ${pipeline.instances.length} instances, backend ${backend}, seed ${seed}` +
        (dryRun ? " (dry run)" : `, ${jobs} at a time`),
    );
    const summary = await runPipeline({ ...common, jobs, force, dryRun, reporter });
    reporter.close();
    if (dryRun) {
      const wouldRun = summary.outcomes.filter((o) => o.status === "would-run").length;
      stdout(`${wouldRun} would run, ${summary.cached} cached`);
      return 0;
    }
    stdout(summaryText(summary, (performance.now() - t0) / 1000));
    if (summary.cancelled) return 130;
    return summary.failed.length || summary.skipped ? 1 : 0;
  } catch (e) {
    reporter.close();
    if (e instanceof UserError) {
      console.error(`error: ${e.message}`);
      return 1;
    }
    throw e;
  } finally {
    reporter.close();
  }
}

/** Entry for main.ts: Ctrl-C cancels the run cleanly; a second one exits at once. */
export async function cliMain(kinds: StepKind[], backendVersion?: (name: string) => string) {
  const controller = new AbortController();
  const onInterrupt = () => {
    if (controller.signal.aborted) Deno.exit(130);
    console.error("\ninterrupted: stopping running steps (Ctrl-C again to quit at once)");
    controller.abort();
  };
  Deno.addSignalListener("SIGINT", onInterrupt);
  const code = await main(Deno.args, { kinds, backendVersion, signal: controller.signal });
  Deno.removeSignalListener("SIGINT", onInterrupt);
  Deno.exit(code);
}
