// The Slurm commands the executor calls (sbatch, squeue, scontrol, sacct, scancel) and
// the parsing of what they print. Job states come from `squeue --states=all` while
// slurmctld still remembers the job (MinJobAge, 5 minutes by default), then from
// `sacct` where accounting is set up; a cluster without slurmdbd has only the first.
// Commands inherit the environment (SLURM_CONF and the like).
import { UserError } from "../errors.ts";

/** States after which a job never runs again. */
export const TERMINAL_STATES = new Set([
  "COMPLETED",
  "FAILED",
  "CANCELLED",
  "TIMEOUT",
  "OUT_OF_MEMORY",
  "NODE_FAIL",
  "PREEMPTED",
  "BOOT_FAIL",
  "DEADLINE",
  "REVOKED",
  "SPECIAL_EXIT",
]);

/** Terminal states caused by the machine, not the step: worth resubmitting. */
export const RETRYABLE_STATES = new Set(["NODE_FAIL", "BOOT_FAIL", "PREEMPTED"]);

export interface JobStatus {
  id: string;
  /** PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ... */
  state: string;
  /** Node(s) it runs or ran on; "" while pending. */
  node: string;
  /** Why it is pending, or why it ended (e.g. NonZeroExitCode). */
  reason: string;
  /** `code:signal` once ended, when known. */
  exitCode?: string;
}

export interface CommandOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a Slurm command; a missing binary is a user error naming it. */
export async function slurmCommand(
  name: string,
  args: string[],
  stdin?: string,
): Promise<CommandOutput> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(name, {
      args,
      stdin: stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new UserError(
        `${name} not found: --executor slurm runs on a machine with the Slurm client ` +
          `commands (a login node), or with a cluster from scripts/slurm/up.sh`,
      );
    }
    throw e;
  }
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Job id from `sbatch --parsable` output (`123` or `123;cluster`). */
export function parseSbatchId(stdout: string): string {
  const id = stdout.trim().split("\n").pop()?.split(";")[0].trim() ?? "";
  if (!/^\d+$/.test(id)) throw new Error(`sbatch printed no job id: ${stdout.trim()}`);
  return id;
}

/** Submit a batch script (given on stdin); returns the job id. */
export async function sbatch(args: string[], script: string): Promise<string> {
  const out = await slurmCommand("sbatch", ["--parsable", ...args], script);
  if (out.code !== 0) {
    throw new UserError(`sbatch refused the job: ${out.stderr.trim() || out.stdout.trim()}`);
  }
  return parseSbatchId(out.stdout);
}

/** Lines of `squeue -h -o %i|%T|%N|%r`. */
export function parseSqueue(stdout: string): JobStatus[] {
  return stdout.split("\n").filter((l) => l.trim()).map((line) => {
    const [id, state, node, reason] = line.trim().split("|");
    return { id, state: state.replace(/\+$/, ""), node: node ?? "", reason: reason ?? "" };
  });
}

/** `scontrol show job -o ID`: one line of Key=Value fields. */
export function parseScontrolJob(stdout: string): JobStatus | null {
  const line = stdout.trim().split("\n")[0] ?? "";
  const field = (name: string) => line.match(new RegExp(`(?:^|\\s)${name}=(\\S*)`))?.[1] ?? "";
  const id = field("JobId");
  if (!id) return null;
  const node = field("NodeList");
  return {
    id,
    state: field("JobState"),
    node: node === "(null)" ? "" : node,
    reason: field("Reason"),
    exitCode: field("ExitCode") || undefined,
  };
}

/** `sacct -n -P -X -o JobID,State,NodeList,Reason,ExitCode`: one line per job. */
export function parseSacct(stdout: string): JobStatus[] {
  return stdout.split("\n").filter((l) => l.trim()).map((line) => {
    const [id, state, node, reason, exitCode] = line.trim().split("|");
    // sacct writes "CANCELLED by 0": keep the state word.
    return {
      id,
      state: (state ?? "").split(" ")[0].replace(/\+$/, ""),
      node: node === "None assigned" ? "" : node ?? "",
      reason: reason ?? "",
      exitCode: exitCode || undefined,
    };
  });
}

/**
 * States of the given jobs, by id. A job slurmctld has forgotten is looked up in sacct;
 * one neither knows is absent from the map.
 */
export async function queryJobs(ids: string[]): Promise<Map<string, JobStatus>> {
  const found = new Map<string, JobStatus>();
  if (ids.length === 0) return found;
  const out = await slurmCommand("squeue", [
    "-h",
    "--states=all",
    "-j",
    ids.join(","),
    "-o",
    "%i|%T|%N|%r",
  ]);
  if (out.code !== 0 && !/Invalid job id/i.test(out.stderr)) {
    throw new Error(`squeue failed: ${out.stderr.trim() || `exit ${out.code}`}`);
  }
  for (const s of parseSqueue(out.code === 0 ? out.stdout : "")) found.set(s.id, s);
  const forgotten = ids.filter((id) => !found.has(id));
  if (forgotten.length) {
    const acct = await slurmCommand("sacct", [
      "-n",
      "-P",
      "-X",
      "-j",
      forgotten.join(","),
      "-o",
      "JobID,State,NodeList,Reason,ExitCode",
    ]).catch(() => null);
    if (acct && acct.code === 0) {
      for (const s of parseSacct(acct.stdout)) if (forgotten.includes(s.id)) found.set(s.id, s);
    }
  }
  return found;
}

/** The exit code (`code:signal`) and node of a job slurmctld still remembers. */
export async function jobDetails(id: string): Promise<JobStatus | null> {
  const out = await slurmCommand("scontrol", ["show", "job", "-o", id]);
  return out.code === 0 ? parseScontrolJob(out.stdout) : null;
}

/** Cancel jobs (errors for jobs that already ended are ignored). */
export async function scancel(ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await slurmCommand("scancel", ids);
}

/** Whether a job is still queued or running: true, false, or null when it cannot tell. */
export async function slurmJobAlive(id: string): Promise<boolean | null> {
  try {
    const status = (await queryJobs([id])).get(id);
    if (!status) return null;
    return !TERMINAL_STATES.has(status.state);
  } catch {
    return null;
  }
}
