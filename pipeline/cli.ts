// The command line: `run`, `status` and `gc`. main.ts hands it the registry of step
// kinds and what the engine must not know itself (the backends and their identities);
// everything else (artifacts folder, configs folder, flags, `--set` overrides) is read
// here. Expected errors (bad config, unknown pipeline, bad flag) print one paragraph,
// with a "did you mean" where a name is close to a known one, and exit 1.
import { parseArgs } from "node:util";
import type { StepKind } from "./step.ts";
import { loadConfig, resolvePipelinePath } from "./config.ts";
import { type ExpandedPipeline, expandPipeline } from "./expand.ts";
import { type Manifest, Store } from "./store.ts";
import { ResultsDb } from "./results.ts";
import { runPipeline, type RunSummary } from "./runner.ts";
import { createReporter, formatDuration, type Reporter } from "./progress.ts";
import { pipelineStatus } from "./status.ts";
import { collectGarbage } from "./gc.ts";
import { parseAge, RunRecorder } from "./run_records.ts";
import { UserError } from "./errors.ts";
import { Fingerprinter } from "./fingerprint.ts";
import { didYouMean } from "./suggest.ts";
import { chooseExecutor } from "./executors/select.ts";
import { RUN_INSTANCE_USAGE, runInstance } from "./executors/run_instance.ts";
import {
  applyOverrides,
  type Override,
  overridesByNode,
  parseOverride,
  publishName,
} from "./overrides.ts";

export interface CliOptions {
  kinds: StepKind[];
  /** What a backend's numbers depend on (name, library versions), for cache keys. */
  backendIdentity?: (name: string) => string;
  /** Backends `--backend` may name; absent: any name is taken. */
  backends?: readonly string[];
  /** Backend of a run whose pipeline and flags name none. */
  defaultBackend?: string;
  /** Where to print (tests capture it); defaults to stdout / stderr. */
  stdout?: (text: string) => void;
  reporter?: Reporter;
  /** Cancels a run (the CLI wires Ctrl-C to it). */
  signal?: AbortSignal;
}

const FLAGS = {
  jobs: { type: "string", short: "j" },
  "dry-run": { type: "boolean" },
  verify: { type: "boolean" },
  force: { type: "string", multiple: true },
  set: { type: "string", multiple: true },
  backend: { type: "string" },
  seed: { type: "string" },
  seeds: { type: "string" },
  artifacts: { type: "string" },
  configs: { type: "string" },
  executor: { type: "string" },
  instance: { type: "string" },
  key: { type: "string" },
  inputs: { type: "string" },
  "older-than": { type: "string" },
  "keep-runs": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

const USAGE = `usage:
  run <pipeline> [--jobs N] [--dry-run] [--force NODE|KIND]... [--set NODE.PARAM=VALUE]...
                 [--backend NAME] [--seed N | --seeds N] [--executor local|slurm]
  status <pipeline> [--verify] [--set NODE.PARAM=VALUE]... [--backend NAME] [--seed N | --seeds N]
  gc [--dry-run] [--older-than AGE] [--keep-runs N]
  ${RUN_INSTANCE_USAGE}   (what a cluster job runs)
common flags: --artifacts DIR (default $LAWA_ARTIFACTS or "artifacts"), --configs DIR (default "configs")
<pipeline> is a file path or a name in the configs folder (name.yaml, .yml or .json)
--set takes a YAML value; a list where the step takes one value is a sweep (--set lawa.k=[2,5])
gc keeps what a config in the configs folder reaches and what the newest complete run of each
  command line reached (runs are recorded in <artifacts>/runs/); --older-than AGE (30m, 12h, 7d,
  2w) stops counting runs that finished longer ago, --keep-runs N counts only the N newest
  (0: configs only); by default no run is cut`;

const PIPELINE_EXTENSIONS = /\.(ya?ml|json)$/;

/** Pipeline names in the configs folder, with their descriptions (for --help). */
export async function listPipelines(
  configsDir: string,
): Promise<{ name: string; description: string }[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(configsDir)) {
      if (e.isFile && PIPELINE_EXTENSIONS.test(e.name)) names.push(e.name);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const out = [];
  for (const file of names.sort()) {
    let description: string;
    try {
      description = (await loadConfig(`${configsDir}/${file}`)).description ?? "";
    } catch (e) {
      description = `(does not load: ${(e as Error).message.split("\n")[0]})`;
    }
    out.push({ name: file.replace(PIPELINE_EXTENSIONS, ""), description: description.trim() });
  }
  return out;
}

async function helpText(configsDir: string): Promise<string> {
  const pipelines = await listPipelines(configsDir);
  if (pipelines.length === 0) return USAGE;
  const width = Math.max(...pipelines.map((p) => p.name.length));
  const lines = pipelines.map((p) =>
    `  ${p.name.padEnd(width)}  ${p.description.replace(/\s+/g, " ")}`
  );
  return `${USAGE}\n\npipelines in ${configsDir}/:\n${lines.join("\n")}`;
}

/** Find the pipeline file, or fail naming the closest pipeline in the configs folder. */
async function findPipeline(target: string, configsDir: string): Promise<string> {
  try {
    return await resolvePipelinePath(target, configsDir);
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    const names = (await listPipelines(configsDir)).map((p) => p.name);
    throw new UserError(
      `no pipeline "${target}"${didYouMean(target, names)}: not a file, nor a name in ` +
        `${configsDir.replace(/\/+$/, "")}/ (pipelines there: ${names.join(", ") || "none"})`,
    );
  }
}

function parseFlags(args: string[]) {
  try {
    return parseArgs({ args, allowPositionals: true, options: FLAGS });
  } catch (e) {
    const message = (e as Error).message.split("\n")[0];
    const unknown = message.match(/Unknown option '(-{1,2}[^']+)'/)?.[1];
    if (unknown) {
      const known = Object.keys(FLAGS).map((f) => `--${f}`);
      throw new UserError(`unknown flag ${unknown}${didYouMean(unknown, known)}\n${USAGE}`);
    }
    throw new UserError(`${message}\n${USAGE}`);
  }
}

/** A backend name from a flag or a pipeline's defaults, checked against the known ones. */
function checkBackend(name: string, where: string, known: readonly string[] | undefined): string {
  if (known && !known.includes(name)) {
    throw new UserError(
      `${where}: unknown backend "${name}"${didYouMean(name, known)} ` +
        `(backends: ${known.join(", ")})`,
    );
  }
  return name;
}

/**
 * Backends are process-wide: an instance whose params pick another backend than the
 * run's would switch it under the instances running beside it.
 */
export function checkBackendOverrides(
  pipeline: ExpandedPipeline,
  backend: string,
  jobs: number,
): void {
  if (jobs <= 1) return;
  const other = pipeline.instances.find((i) =>
    typeof i.params.backend === "string" && i.params.backend !== backend
  );
  if (other) {
    throw new UserError(
      `${other.label} runs on backend "${other.params.backend}" while the run uses ` +
        `"${backend}": one process has one backend, so use --jobs 1, or --backend ` +
        `${other.params.backend} if every step may use it`,
    );
  }
}

/** A store that writes the run's `--set` overrides of a node into its manifests. */
class OverridingStore extends Store {
  constructor(root: string, private readonly byNode: Map<string, string[]>) {
    super(root);
  }
  override commit(
    key: string,
    info: Omit<Manifest, "format" | "key" | "outputs" | "digest">,
  ): Promise<Manifest> {
    const overrides = this.byNode.get(info.node);
    return super.commit(key, overrides ? { ...info, overrides } : info);
  }
}

/** The kinds, with `publish` told the run's name and the paths it returns collected. */
function publishingKinds(kinds: StepKind[], name: string, published: Set<string>): StepKind[] {
  return kinds.map((kind) => {
    const publish = kind.publish;
    if (!publish) return kind;
    return {
      ...kind,
      publish: async (entryDir, params, artifactsDir) => {
        const path = await publish(entryDir, params, artifactsDir, { pipeline: name });
        if (typeof path === "string") published.add(path);
      },
    };
  });
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
    const configsDir = values.configs ?? "configs";
    if (values.help || !command) {
      stdout(await helpText(configsDir));
      return command || values.help ? 0 : 1;
    }
    const artifacts = values.artifacts ?? Deno.env.get("LAWA_ARTIFACTS") ?? "artifacts";
    const backendIdentity = opts.backendIdentity ?? ((name: string) => name);
    const defaultBackend = opts.defaultBackend ?? opts.backends?.[0] ?? "default";

    if (command === "gc") {
      const report = await collectGarbage({
        store: new Store(artifacts),
        results: new ResultsDb(artifacts, { kinds: opts.kinds }),
        kinds: opts.kinds,
        configsDir,
        backendVersion: backendIdentity,
        defaultBackend,
        dryRun: values["dry-run"] === true,
        runs: {
          olderThanMs: values["older-than"] === undefined
            ? undefined
            : parseAge(values["older-than"]),
          keepRuns: intFlag("keep-runs", values["keep-runs"], 0),
        },
      });
      stdout(report.text);
      return 0;
    }
    if (command !== "run" && command !== "status" && command !== "run-instance") {
      throw new UserError(
        `unknown command "${command}"${didYouMean(command, ["run", "status", "gc"])} ` +
          `(expected run, status or gc)\n${USAGE}`,
      );
    }
    if (!target) throw new UserError(`${command}: missing the pipeline name\n${USAGE}`);
    if (extra.length) throw new UserError(`${command}: unexpected arguments ${extra.join(" ")}`);
    const flagBackend = values.backend === undefined
      ? undefined
      : checkBackend(values.backend, "--backend", opts.backends);

    const file = await findPipeline(target, configsDir);
    const overrides: Override[] = (values.set ?? []).map(parseOverride);
    const name = publishName(file, overrides);
    const published = new Set<string>();
    const config = applyOverrides(await loadConfig(file), overrides);
    const seedFlag = intFlag("seed", values.seed, 0);
    const seedCount = intFlag("seeds", values.seeds, 1);
    if (seedFlag !== undefined && seedCount !== undefined) {
      throw new UserError("--seed and --seeds: give one (--seeds N runs seeds 0 to N-1)");
    }
    const seeds = seedCount !== undefined
      ? Array.from({ length: seedCount }, (_, i) => i)
      : seedFlag !== undefined
      ? [seedFlag]
      : undefined;
    const pipeline = expandPipeline(config, publishingKinds(opts.kinds, name, published), {
      seeds,
    });
    const backend = flagBackend ??
      (pipeline.defaults.backend === undefined
        ? defaultBackend
        : checkBackend(pipeline.defaults.backend, `${file}: defaults.backend`, opts.backends));
    const seed = seeds?.[0] ?? pipeline.defaults.seed ?? 0;
    const signal = opts.signal ?? new AbortController().signal;
    const store = new OverridingStore(artifacts, overridesByNode(overrides));
    const common = {
      pipeline,
      store,
      results: new ResultsDb(artifacts, { kinds: opts.kinds }),
      backend,
      backendVersion: backendIdentity,
      seed,
      signal,
      fingerprinter: new Fingerprinter({ cacheFile: `${artifacts}/.code-meanings.json` }),
    };
    if (command === "run-instance") {
      const force = values.force ?? [];
      const { instance, key, inputs } = values;
      return await runInstance({ ...common, instance, key, inputs, force });
    }
    if (command === "status") {
      const status = await pipelineStatus({ ...common, verify: values.verify === true });
      stdout(status.text);
      return status.damaged ? 1 : 0;
    }

    const force = (values.force ?? []).flatMap((f) => f.split(",")).filter((f) => f);
    for (const f of force) {
      const names = new Set(pipeline.instances.flatMap((i) => [i.node, i.kind.name]));
      if (!names.has(f)) {
        throw new UserError(
          `--force ${f}: no node or step kind of that name in ${file}${didYouMean(f, names)}`,
        );
      }
    }
    const pipelineArgs = [
      ...(values.set ?? []).flatMap((s) => ["--set", s]),
      ...(values.backend !== undefined ? ["--backend", values.backend] : []),
      ...(values.seed !== undefined ? ["--seed", values.seed] : []),
      ...(values.seeds !== undefined ? ["--seeds", values.seeds] : []),
    ];
    const chosen = chooseExecutor({
      flag: values.executor,
      section: config.executor,
      pipeline,
      store,
      // The jobs read the pipeline as this run did: same file, overrides, backend, seeds.
      cliArgs: pipelineArgs,
    });
    const jobs = intFlag("jobs", values.jobs, 1) ?? chosen.defaultJobs;
    // Each cluster job is its own process, with its own backend.
    checkBackendOverrides(pipeline, backend, chosen.executor ? 1 : jobs);
    const dryRun = values["dry-run"] === true;
    const t0 = performance.now();
    const started = new Date().toISOString();
    reporter.line(
      `${file}: ${pipeline.instances.length} instances, backend ${backend}, seed ${
        pipeline.seeds.length > 1 ? pipeline.seeds.join(",") : seed
      }` +
        (overrides.length ? `, ${overrides.map((o) => `--set ${o.text}`).join(" ")}` : "") +
        (dryRun ? " (dry run)" : `, ${jobs} at a time`) +
        (chosen.executor && !dryRun ? ` on ${chosen.name}` : ""),
    );
    // What this run reaches, kept current while it runs, so that gc keeps it (configs
    // alone miss --set, --seeds).
    const recorder = dryRun ? null : new RunRecorder(artifacts, {
      pipeline: file,
      args: pipelineArgs,
      backend,
      seeds: pipeline.seeds,
      started,
    });
    await recorder?.start();
    const summary = await runPipeline({
      ...common,
      jobs,
      force,
      dryRun,
      reporter,
      executor: chosen.executor,
      onKey: (key, instance) => recorder?.reached(key, instance.kind.resumable === true),
    });
    reporter.close();
    await recorder?.finish(!summary.failed.length && !summary.skipped && !summary.cancelled);
    if (dryRun) {
      const wouldRun = summary.outcomes.filter((o) => o.status === "would-run").length;
      stdout(`${wouldRun} would run, ${summary.cached} cached`);
      return 0;
    }
    stdout(summaryText(summary, (performance.now() - t0) / 1000));
    for (const path of published) stdout(`report: ${path}`);
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

/** What main.ts hands the command line beyond the step kinds. */
export type CliEnvironment = Pick<CliOptions, "backendIdentity" | "backends" | "defaultBackend">;

/**
 * Entry for main.ts: Ctrl-C cancels the run cleanly; a second one exits at once.
 * SIGTERM and SIGHUP (a scheduler ending the coordinator's own job, a closed terminal)
 * cancel the same way, so the Slurm jobs this run submitted are cancelled too.
 */
export async function cliMain(kinds: StepKind[], env: CliEnvironment = {}) {
  const controller = new AbortController();
  const signals: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT"]
    : ["SIGINT", "SIGTERM", "SIGHUP"];
  const listeners = signals.map((signal) => {
    const onSignal = () => {
      if (controller.signal.aborted) Deno.exit(130);
      const again = signal === "SIGINT" ? " (Ctrl-C again to quit at once)" : "";
      console.error(`\ninterrupted by ${signal}: stopping running steps${again}`);
      controller.abort();
    };
    Deno.addSignalListener(signal, onSignal);
    return () => Deno.removeSignalListener(signal, onSignal);
  });
  const code = await main(Deno.args, { kinds, ...env, signal: controller.signal });
  for (const remove of listeners) remove();
  Deno.exit(code);
}
