// A lock that holds across machines sharing one artifacts folder (NFS, Lustre, ...),
// where flock may be per-node or missing. The lock is a file created with O_EXCL
// (`<path>.owner`) holding its owner: host, pid, the process's start time, and the
// scheduler's job id when there is one. The owner touches it every few seconds. A
// waiter takes over a lock whose owner is gone: a dead process on this host, a job the
// scheduler no longer runs, or an owner silent for longer than `staleMs` (a crashed
// node). Taking over is itself serialized by a short O_EXCL "break" file, so two
// waiters never both remove a lock and one of them removes the other's fresh one.
// The flock on `<path>` is still taken too: within one machine it costs nothing and
// keeps tools that test it (gc) working.
import { tryFileLock, withFileLock } from "./lock.ts";

export interface LockOwner {
  host: string;
  pid: number;
  /** Start time of the process (Linux: /proc/<pid>/stat field 22), to tell a reused pid. */
  pidStart: string | null;
  /** Scheduler job id (Slurm's SLURM_JOB_ID) when the owner runs inside a job. */
  job: string | null;
  acquired: string;
}

export interface SharedLockOptions {
  /** An owner silent (no heartbeat) for this long is presumed dead. Default 60 s. */
  staleMs?: number;
  /** How often the owner touches its lock file. Default 5 s. */
  heartbeatMs?: number;
  /** Longest wait between two tries. Default 1 s. */
  maxPollMs?: number;
  /**
   * Whether a scheduler job is still alive: true, false, or null when unknown. Lets a
   * waiter take over at once from a cancelled or timed-out job.
   */
  jobAlive?: (job: string) => Promise<boolean | null>;
  signal?: AbortSignal;
}

const DEFAULTS = { staleMs: 60_000, heartbeatMs: 5_000, maxPollMs: 1_000 };

function processStart(pid: number): string | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // Field 2 (comm) may hold spaces: count fields after its closing parenthesis.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

/** Whether this system has a /proc to look processes up in (Linux); else heartbeats decide. */
const HAS_PROC = (() => {
  try {
    Deno.statSync("/proc/self");
    return true;
  } catch {
    return false;
  }
})();

function processAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

export function currentOwner(): LockOwner {
  return {
    host: Deno.hostname(),
    pid: Deno.pid,
    pidStart: processStart(Deno.pid),
    job: Deno.env.get("SLURM_JOB_ID") ?? null,
    acquired: new Date().toISOString(),
  };
}

export function ownerPath(path: string): string {
  return `${path}.owner`;
}

/** The owner recorded in a lock file, or null when there is none (or it is unreadable). */
export async function readOwner(path: string): Promise<LockOwner | null> {
  try {
    return JSON.parse(await Deno.readTextFile(ownerPath(path)));
  } catch {
    return null;
  }
}

/** Why the lock's owner is presumed gone, or null when it may still be working. */
export async function staleReason(
  owner: LockOwner | null,
  ageMs: number,
  opts: SharedLockOptions = {},
): Promise<string | null> {
  const staleMs = opts.staleMs ?? DEFAULTS.staleMs;
  if (owner === null) {
    // Half-written (its creator died between create and write) or unreadable.
    return ageMs > 10_000 ? "unreadable owner" : null;
  }
  if (owner.host === Deno.hostname() && HAS_PROC) {
    // On this host the process table is the truth: alive means working, whatever the
    // scheduler says of its job (a job marked NODE_FAIL may still be running here).
    if (!processAlive(owner.pid)) return `process ${owner.pid} on ${owner.host} is gone`;
    const start = processStart(owner.pid);
    if (owner.pidStart && start && start !== owner.pidStart) {
      return `process ${owner.pid} on ${owner.host} is gone (pid reused)`;
    }
    return null;
  }
  if (owner.job && opts.jobAlive && (await opts.jobAlive(owner.job)) === false) {
    return `job ${owner.job} has ended`;
  }
  if (ageMs > staleMs) return `no heartbeat for ${Math.round(ageMs / 1000)}s`;
  return null;
}

async function createExclusive(path: string, text: string): Promise<boolean> {
  try {
    const file = await Deno.open(path, { createNew: true, write: true });
    try {
      await file.write(new TextEncoder().encode(text));
      await file.sync().catch(() => {});
    } finally {
      file.close();
    }
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) return false;
    throw e;
  }
}

async function ageOf(path: string): Promise<number | null> {
  try {
    const st = await Deno.stat(path);
    return Date.now() - (st.mtime?.getTime() ?? Date.now());
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** Remove a stale owner file, under the break file; true when it was removed. */
async function breakStale(path: string, opts: SharedLockOptions): Promise<string | null> {
  const owned = ownerPath(path);
  const breaker = `${owned}.break`;
  if (!(await createExclusive(breaker, JSON.stringify(currentOwner())))) {
    const age = await ageOf(breaker);
    // A breaker dies only between two file operations: a minute-old one is abandoned.
    if (age !== null && age > 60_000) await Deno.remove(breaker).catch(() => {});
    return null;
  }
  try {
    const age = await ageOf(owned);
    if (age === null) return null;
    const owner = await readOwner(path);
    const why = await staleReason(owner, age, opts);
    if (why === null) return null;
    await Deno.remove(owned).catch(() => {});
    return why;
  } finally {
    await Deno.remove(breaker).catch(() => {});
  }
}

/**
 * Run `fn` holding the lock `path` against every process on every machine that shares
 * the folder. `onWait` is told once when another owner holds it, and when a stale one
 * is taken over.
 */
export async function withSharedLock<T>(
  path: string,
  fn: () => Promise<T>,
  opts: SharedLockOptions & { onWait?: (message: string) => void } = {},
): Promise<T> {
  const heartbeatMs = opts.heartbeatMs ?? DEFAULTS.heartbeatMs;
  const maxPollMs = opts.maxPollMs ?? DEFAULTS.maxPollMs;
  return await withFileLock(path, async () => {
    const owned = ownerPath(path);
    let pollMs = 20;
    let told = false;
    while (!(await createExclusive(owned, JSON.stringify(currentOwner()) + "\n"))) {
      if (opts.signal?.aborted) throw new Error("cancelled (interrupted)");
      const broken = await breakStale(path, opts);
      if (broken) {
        opts.onWait?.(`took over a stale lock (${broken})`);
        continue;
      }
      if (!told) {
        const owner = await readOwner(path);
        if (owner) {
          opts.onWait?.(`waiting for ${describeOwner(owner)}`);
          told = true;
        }
      }
      await new Promise((r) => setTimeout(r, pollMs));
      pollMs = Math.min(maxPollMs, pollMs * 2);
    }
    const release = heartbeat(owned, heartbeatMs);
    try {
      return await fn();
    } finally {
      await release();
    }
  });
}

/** Touch the owner file we created every `everyMs`; the release stops and removes it. */
function heartbeat(owned: string, everyMs: number): () => Promise<void> {
  const beat = setInterval(() => {
    const now = new Date();
    Deno.utime(owned, now, now).catch(() => {});
  }, everyMs);
  return async () => {
    clearInterval(beat);
    await Deno.remove(owned).catch(() => {});
  };
}

/**
 * Take the lock `path` only if no live owner holds it (a stale owner is broken, as a
 * waiter would): a release function, or the holder in the way (null when a process on
 * this machine holds the flock before writing its owner file).
 */
export async function trySharedLock(
  path: string,
  opts: SharedLockOptions = {},
): Promise<{ release: () => Promise<void> } | { holder: LockOwner | null }> {
  const releaseFlock = await tryFileLock(path);
  if (!releaseFlock) return { holder: await readOwner(path) };
  const owned = ownerPath(path);
  for (let tries = 0; tries < 2; tries++) {
    if (await createExclusive(owned, JSON.stringify(currentOwner()) + "\n")) {
      const stop = heartbeat(owned, opts.heartbeatMs ?? DEFAULTS.heartbeatMs);
      return {
        release: async () => {
          await stop();
          releaseFlock();
        },
      };
    }
    if ((await breakStale(path, opts)) === null) break;
  }
  const holder = await readOwner(path);
  releaseFlock();
  return { holder };
}

/** Whether someone (alive) holds the lock now; the owner when so. */
export async function lockHolder(
  path: string,
  opts: SharedLockOptions = {},
): Promise<LockOwner | null> {
  const age = await ageOf(ownerPath(path));
  if (age === null) return null;
  const owner = await readOwner(path);
  if ((await staleReason(owner, age, opts)) !== null) return null;
  return owner;
}

/**
 * Who holds the lock `path`, without taking or breaking anything: null when nobody
 * (alive) does, else the owner (`owner` null when a process on this machine holds the
 * flock before writing its owner file).
 */
export async function whoHolds(
  path: string,
  opts: SharedLockOptions = {},
): Promise<{ owner: LockOwner | null } | null> {
  const local = await tryFileLock(path);
  if (!local) return { owner: await readOwner(path) };
  local();
  const owner = await lockHolder(path, opts);
  return owner ? { owner } : null;
}

/** Who holds a lock, in words: "node-b pid 4242 (job 17)". */
export function describeOwner(owner: LockOwner | null): string {
  if (owner === null) return "a process on this machine";
  return `${owner.host} pid ${owner.pid}${owner.job ? ` (job ${owner.job})` : ""}`;
}
