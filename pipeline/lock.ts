// Advisory file locks (flock) shared between processes, plus an in-process mutex.
// The OS drops a flock when its holder dies, so a SIGKILLed run never leaves a key
// locked. flock also excludes two opens within one process, but the in-process mutex
// keeps waiters of the same process in order without tying up blocking threads.

const chains = new Map<string, Promise<void>>();

/** Run `fn` while holding an exclusive lock on `path` (created if missing). */
export async function withFileLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const previous = chains.get(path) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((resolve) => (release = resolve));
  const chained = previous.then(() => mine);
  chains.set(path, chained);
  await previous;
  try {
    const file = await Deno.open(path, { create: true, write: true });
    try {
      await file.lock(true);
      return await fn();
    } finally {
      file.close(); // closing releases the flock
    }
  } finally {
    release();
    if (chains.get(path) === chained) chains.delete(path);
  }
}

/**
 * Try to take the lock on `path` within `waitMs`; returns a release function, or null
 * when someone else holds it (then a pending claim stays open until this process exits).
 */
export async function tryFileLock(path: string, waitMs = 50): Promise<(() => void) | null> {
  const file = await Deno.open(path, { create: true, write: true });
  const got = await Promise.race([
    file.lock(true).then(() => true),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), waitMs)),
  ]);
  if (!got) return null;
  return () => file.close();
}
