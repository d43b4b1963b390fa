// `--executor slurm`: each instance the runner decides to build becomes one Slurm batch
// job running the project's `run-instance` command on the shared artifacts folder. The
// coordinator (this process) submits an instance once its inputs are committed,
// watches its job with one `squeue` per poll for all jobs, and hands the committed
// entry back to the runner, which loads its rows into DuckDB: jobs never write DuckDB.
//
// Under `<artifacts>/slurm/`: `jobs/<key>.json` records the job last submitted for a
// key (a rerun, or a second coordinator, joins a job still queued or running instead of
// submitting another), `jobs/<key>.inputs.json` the keys of its inputs as built here
// (the job keys only itself), `logs/<node>-<key>-<jobid>.log` is the job's output, and
// `.exit` beside it the command's exit code (what is left when slurmctld has forgotten
// the job and there is no accounting). An instance another process is building under
// its key's lock (a local run) is waited for, not submitted. Machine failures
// (NODE_FAIL, BOOT_FAIL, PREEMPTED) are resubmitted up to `retries` times; other
// failures are reported with the job's state, exit code and the tail of its log.
// Ctrl-C cancels the jobs this run submitted.
import type { ClusterBuild, ClusterExecutor, ClusterResult } from "../executor.ts";
import type { Manifest, ManifestJob, Store } from "../store.ts";
import { lockHolder, withSharedLock } from "../shared_lock.ts";
import {
  jobDetails,
  type JobStatus,
  queryJobs,
  RETRYABLE_STATES,
  sbatch,
  scancel,
  slurmJobAlive,
  TERMINAL_STATES,
} from "./slurm_commands.ts";
import { type ExecutorSettings, resourcesFor, sbatchArgs } from "./slurm_config.ts";

export interface SlurmExecutorOptions {
  store: Store;
  /** Absolute path of the pipeline file, as the jobs read it. */
  pipelineFile: string;
  /** Absolute path of the entry module that has the `run-instance` command (main.ts). */
  mainModule: string;
  /** Working folder of the jobs (the coordinator's: relative paths in params resolve alike). */
  cwd: string;
  /** More arguments for `run-instance`: what makes it read the pipeline as the coordinator did. */
  cliArgs: string[];
  settings: ExecutorSettings;
}

/** What `jobs/<key>.json` holds. */
export interface JobRecord {
  job: string;
  key: string;
  label: string;
  log: string;
  submitted: string;
  by: { host: string; pid: number };
}

const LOG_TAIL_LINES = 20;

/** Quote for a POSIX shell. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replaceAll("'", `'"'"'`)}'`;
}

/** The last `n` lines of a file ("" when it cannot be read). */
export async function logTail(path: string, n = LOG_TAIL_LINES): Promise<string> {
  try {
    const text = await Deno.readTextFile(path);
    return text.trimEnd().split("\n").slice(-n).join("\n");
  } catch {
    return "";
  }
}

function slug(node: string): string {
  return node.replace(/[^A-Za-z0-9_.-]/g, "_");
}

type Watcher = (status: JobStatus) => void;

export class SlurmExecutor implements ClusterExecutor {
  readonly name = "slurm";
  readonly #o: SlurmExecutorOptions;
  /** The artifacts folder, absolute (jobs run elsewhere). */
  readonly #root: string;
  readonly #dir: string;
  readonly #watchers = new Map<string, Watcher>();
  /** Polls in a row that could not find the job anywhere, by job id. */
  readonly #unseen = new Map<string, number>();
  #polling: Promise<void> | null = null;
  #pollError = "";
  #pollFailures = 0;
  /** Where poll problems are told (the reporter of the latest build). */
  #warn: (message: string) => void = () => {};

  constructor(opts: SlurmExecutorOptions) {
    this.#o = opts;
    this.#root = opts.store.root.startsWith("/")
      ? opts.store.root
      : `${Deno.cwd()}/${opts.store.root}`;
    this.#dir = `${this.#root}/slurm`;
  }

  recordPath(key: string): string {
    return `${this.#dir}/jobs/${key}.json`;
  }

  /** The keys of an instance's inputs, as the coordinator built them. */
  inputsPath(key: string): string {
    return `${this.#dir}/jobs/${key}.inputs.json`;
  }

  /** The batch script of an instance's job. */
  script(req: ClusterBuild, logBase: string, deno: string, setup: string[]): string {
    const o = this.#o;
    const command = [
      deno,
      "run",
      "--allow-all",
      o.mainModule,
      "run-instance",
      o.pipelineFile,
      "--instance",
      req.instance.id,
      "--key",
      req.key,
      "--inputs",
      this.inputsPath(req.key),
      "--artifacts",
      this.#root,
      ...o.cliArgs,
      ...(req.forced ? ["--force", req.instance.node] : []),
    ].map(shellQuote).join(" ");
    return [
      "#!/bin/bash",
      `# lawa-lab: build ${req.instance.label.replaceAll("\n", " ")} (key ${req.key})`,
      "export NO_COLOR=1",
      ...setup,
      command,
      "code=$?",
      `echo "$code" > ${shellQuote(logBase)}-"$SLURM_JOB_ID".exit`,
      'exit "$code"',
      "",
    ].join("\n");
  }

  async #readRecord(key: string): Promise<JobRecord | null> {
    try {
      return JSON.parse(await Deno.readTextFile(this.recordPath(key)));
    } catch {
      return null;
    }
  }

  /** Join a live job recorded for the key, or submit a new one. */
  async #submitOrJoin(req: ClusterBuild): Promise<{ record: JobRecord; owned: boolean }> {
    await Deno.mkdir(`${this.#dir}/jobs`, { recursive: true });
    await Deno.mkdir(`${this.#dir}/logs`, { recursive: true });
    return await withSharedLock(`${this.#dir}/jobs/${req.key}.submit.lock`, async () => {
      const previous = await this.#readRecord(req.key);
      if (previous && (await slurmJobAlive(previous.job)) === true) {
        return { record: previous, owned: false };
      }
      await Deno.writeTextFile(this.inputsPath(req.key), JSON.stringify(req.upstream) + "\n");
      const resources = resourcesFor(this.#o.settings, req.instance);
      const logBase = `${this.#dir}/logs/${slug(req.instance.node)}-${req.key.slice(0, 12)}`;
      const script = this.script(
        req,
        logBase,
        resources.deno ?? Deno.execPath(),
        resources.setup ?? [],
      );
      const job = await sbatch([
        `--job-name=lawa:${slug(req.instance.node)}`,
        `--output=${logBase}-%j.log`,
        `--chdir=${this.#o.cwd}`,
        "--no-requeue",
        ...sbatchArgs(resources),
      ], script);
      const record: JobRecord = {
        job,
        key: req.key,
        label: req.instance.label,
        log: `${logBase}-${job}.log`,
        submitted: new Date().toISOString(),
        by: { host: Deno.hostname(), pid: Deno.pid },
      };
      const tmp = `${this.recordPath(req.key)}.tmp-${crypto.randomUUID().slice(0, 8)}`;
      await Deno.writeTextFile(tmp, JSON.stringify(record, null, 2) + "\n");
      await Deno.rename(tmp, this.recordPath(req.key));
      return { record, owned: true };
    });
  }

  /**
   * When another process (a local run, or a job not recorded here) holds the key's
   * lock, wait for it instead of queueing a job that would only wait for the lock too;
   * its entry, once committed, is this instance's (`cached`).
   */
  async #otherBuilder(req: ClusterBuild): Promise<ClusterResult | null> {
    const lock = this.#o.store.lockPath(req.key);
    const opts = { jobAlive: slurmJobAlive };
    let holder = await lockHolder(lock, opts);
    if (!holder) return null;
    const record = await this.#readRecord(req.key);
    if (record && holder.job === record.job) return null; // joined, with its job id
    req.reporter.line(
      `waiting   ${req.instance.label}: being built by ${holder.host} pid ${holder.pid}` +
        (holder.job ? ` (job ${holder.job})` : ""),
    );
    while (holder) {
      if (req.signal.aborted) {
        return { status: "cancelled", error: "cancelled (interrupted)", job: null };
      }
      await new Promise((r) => setTimeout(r, this.#o.settings.pollMs));
      holder = await lockHolder(lock, opts);
    }
    const manifest = await this.#o.store.readManifest(req.key);
    if (!manifest) return null; // it failed there: build it here
    return {
      status: "cached",
      manifest,
      job: manifest.job ?? null,
      detail: "built by another run",
    };
  }

  /** One squeue (then sacct) for every watched job; tells each watcher its state. */
  async #pollOnce(): Promise<void> {
    const ids = [...this.#watchers.keys()];
    let found: Map<string, JobStatus>;
    try {
      found = await queryJobs(ids);
      if (this.#pollFailures >= 3) this.#warn("squeue answers again");
      this.#pollError = "";
      this.#pollFailures = 0;
    } catch (e) {
      this.#pollError = (e as Error).message;
      // Say so once per outage (slurmctld restarting is common); keep asking.
      if (++this.#pollFailures === 3) {
        this.#warn(`cannot ask Slurm about ${ids.length} jobs (retrying): ${this.#pollError}`);
      }
      return;
    }
    for (const id of ids) {
      const status = found.get(id);
      if (status) {
        this.#unseen.delete(id);
        this.#watchers.get(id)?.(status);
        continue;
      }
      // Forgotten by slurmctld and no accounting: the job script's exit file tells.
      const n = (this.#unseen.get(id) ?? 0) + 1;
      this.#unseen.set(id, n);
      if (n >= 2) {
        this.#watchers.get(id)?.({ id, state: "UNKNOWN", node: "", reason: "left the queue" });
      }
    }
  }

  #ensurePolling(): void {
    if (this.#polling) return;
    this.#polling = (async () => {
      while (this.#watchers.size) {
        await this.#pollOnce();
        if (!this.#watchers.size) break;
        await new Promise((r) => setTimeout(r, this.#o.settings.pollMs));
      }
      this.#polling = null;
    })();
  }

  /** Wait until the job ends; `onState` hears every new state on the way. */
  #watch(id: string, onState: (s: JobStatus) => void): Promise<JobStatus> {
    return new Promise((resolve) => {
      let last = "";
      this.#watchers.set(id, (s) => {
        if (s.state !== last) {
          last = s.state;
          onState(s);
        }
        if (TERMINAL_STATES.has(s.state) || s.state === "UNKNOWN") {
          this.#watchers.delete(id);
          this.#unseen.delete(id);
          resolve(s);
        }
      });
      this.#ensurePolling();
    });
  }

  /** The exit code the job script wrote, or null. */
  async #exitFile(record: JobRecord): Promise<string | null> {
    try {
      return (await Deno.readTextFile(record.log.replace(/\.log$/, ".exit"))).trim();
    } catch {
      return null;
    }
  }

  /** The committed entry (a shared filesystem may show it a little late). */
  async #manifestAfterJob(key: string): Promise<Manifest | null> {
    for (let wait = 100; wait < 20_000; wait *= 2) {
      const m = await this.#o.store.readManifest(key);
      if (m) return m;
      await new Promise((r) => setTimeout(r, wait));
    }
    return null;
  }

  /**
   * Submit (or join) the instance's job and wait for its end. A refused submission
   * (a bad partition, no sbatch) fails this instance with sbatch's own words; the
   * run's other instances go on.
   */
  async build(req: ClusterBuild): Promise<ClusterResult> {
    try {
      return await this.#build(req);
    } catch (e) {
      return { status: "failed", error: (e as Error).message, job: null };
    }
  }

  async #build(req: ClusterBuild): Promise<ClusterResult> {
    const { reporter, signal, instance } = req;
    const retries = this.#o.settings.retries;
    this.#warn = (message) => reporter.line(`warning: ${message}`);
    for (let attempt = 0;; attempt++) {
      if (signal.aborted) {
        return { status: "cancelled", error: "cancelled (interrupted)", job: null };
      }
      const other = attempt === 0 && !req.forced ? await this.#otherBuilder(req) : null;
      if (other) return other;
      const { record, owned } = await this.#submitOrJoin(req);
      const id = record.job;
      reporter.line(
        owned
          ? `submitted ${instance.label}: job ${id}`
          : `joined    ${instance.label}: job ${id}, submitted by ${record.by.host} pid ${record.by.pid}`,
      );
      const onAbort = () => {
        if (owned) scancel([id]).catch(() => {});
      };
      signal.addEventListener("abort", onAbort, { once: true });
      if (signal.aborted) onAbort(); // aborted while submitting: the event has fired already
      let final: JobStatus;
      try {
        const ended = this.#watch(id, (s) => {
          if (s.state === "RUNNING") {
            reporter.event(instance.label, "running", `job ${id} on ${s.node}`);
          } else if (s.state === "PENDING" && s.reason && s.reason !== "None") {
            reporter.line(`pending   ${instance.label}: job ${id} (${s.reason})`);
          }
        });
        if (!owned) {
          // Someone else's job: on Ctrl-C stop waiting for it, leave it running.
          const stop = new Promise<null>((r) => {
            if (signal.aborted) r(null);
            else signal.addEventListener("abort", () => r(null), { once: true });
          });
          const s = await Promise.race([ended, stop]);
          if (s === null) {
            this.#watchers.delete(id);
            return { status: "cancelled", error: "cancelled (interrupted)", job: null };
          }
          final = s;
        } else {
          final = await ended;
        }
      } finally {
        signal.removeEventListener("abort", onAbort);
      }
      if (final.state === "UNKNOWN") {
        const code = await this.#exitFile(record);
        final = code === null
          ? { ...final, reason: "left the queue: no accounting and no exit file" }
          : { ...final, state: code === "0" ? "COMPLETED" : "FAILED", exitCode: `${code}:0` };
      }
      const details = final.state === "COMPLETED" ? null : await jobDetails(id).catch(() => null);
      const node = final.node || details?.node || "";
      const job: ManifestJob = { executor: "slurm", id, node };
      const where = `job ${id} ${final.state}${node ? ` on ${node}` : ""}`;

      if (final.state === "COMPLETED") {
        const manifest = await this.#manifestAfterJob(req.key);
        if (manifest) {
          const ours = manifest.job?.executor === "slurm" && manifest.job.id === id;
          return { status: ours ? "ok" : "cached", manifest, job, detail: where };
        }
        return {
          status: "failed",
          error: `${where} but left no cache entry; log ${record.log}:\n${await logTail(
            record.log,
          )}`,
          job,
        };
      }
      if (signal.aborted || final.state === "CANCELLED") {
        return {
          status: signal.aborted ? "cancelled" : "failed",
          error: signal.aborted
            ? "cancelled (interrupted)"
            : `${where} (cancelled outside this run)`,
          job,
        };
      }
      if (RETRYABLE_STATES.has(final.state) && attempt < retries) {
        reporter.line(
          `retry     ${instance.label}: ${where}: resubmitting (${attempt + 1} of ${retries})`,
        );
        continue;
      }
      const exit = final.exitCode ?? details?.exitCode;
      const tail = await logTail(record.log);
      return {
        status: "failed",
        error: `${where}${exit ? ` (exit ${exit})` : ""}${
          final.reason && final.reason !== "None" ? `, ${final.reason}` : ""
        }; log ${record.log}${tail ? `:\n${tail.replace(/^/gm, "    | ")}` : " (empty)"}`,
        job,
      };
    }
  }

  /** The last poll's error, if the scheduler could not be asked (for messages). */
  get pollError(): string {
    return this.#pollError;
  }
}
