// The cross-machine lock: an O_EXCL owner file. Other machines are played by owner
// files written by hand (another host name, a dead pid, an ended job).
import assert from "node:assert/strict";
import {
  currentOwner,
  lockHolder,
  type LockOwner,
  ownerPath,
  withSharedLock,
} from "../../pipeline/shared_lock.ts";

async function tempLock(): Promise<{ dir: string; path: string }> {
  const dir = await Deno.makeTempDir({ prefix: "shared-lock-" });
  return { dir, path: `${dir}/k.lock` };
}

function foreign(extra: Partial<LockOwner> = {}): LockOwner {
  return {
    host: "another-node",
    pid: 4242,
    pidStart: null,
    job: null,
    acquired: new Date().toISOString(),
    ...extra,
  };
}

async function setAge(path: string, ageMs: number) {
  const t = new Date(Date.now() - ageMs);
  await Deno.utime(path, t, t);
}

Deno.test("the owner file names this process while held and is gone after", async () => {
  const { dir, path } = await tempLock();
  const seen = await withSharedLock(path, async () => {
    const owner = await lockHolder(path);
    await new Promise((r) => setTimeout(r, 10));
    return owner;
  });
  assert.equal(seen?.host, Deno.hostname());
  assert.equal(seen?.pid, Deno.pid);
  await assert.rejects(Deno.stat(ownerPath(path)), Deno.errors.NotFound);
  assert.equal(await lockHolder(path), null);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a live owner on another machine is waited for; its release lets the waiter in", async () => {
  const { dir, path } = await tempLock();
  await Deno.writeTextFile(ownerPath(path), JSON.stringify(foreign()));
  const messages: string[] = [];
  const t0 = Date.now();
  const waiting = withSharedLock(path, () => Promise.resolve(Date.now()), {
    maxPollMs: 20,
    onWait: (m) => messages.push(m),
  });
  await new Promise((r) => setTimeout(r, 300));
  await Deno.remove(ownerPath(path));
  const acquiredAt = await waiting;
  assert.ok(acquiredAt - t0 >= 300, "took the lock while another machine held it");
  assert.deepEqual(messages, ["waiting for another-node pid 4242"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a silent owner (no heartbeat past staleMs) is taken over", async () => {
  const { dir, path } = await tempLock();
  await Deno.writeTextFile(ownerPath(path), JSON.stringify(foreign()));
  await setAge(ownerPath(path), 5_000);
  const messages: string[] = [];
  const got = await withSharedLock(path, () => Promise.resolve("in"), {
    staleMs: 1_000,
    onWait: (m) => messages.push(m),
  });
  assert.equal(got, "in");
  assert.match(messages.join("\n"), /took over a stale lock \(no heartbeat for 5s\)/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a dead process on this host, or an ended job, is taken over at once", async () => {
  const { dir, path } = await tempLock();
  // A pid that cannot be running: above the kernel's pid limit.
  await Deno.writeTextFile(
    ownerPath(path),
    JSON.stringify({ ...currentOwner(), pid: 2 ** 22 + 1 }),
  );
  const messages: string[] = [];
  await withSharedLock(path, () => Promise.resolve(), { onWait: (m) => messages.push(m) });
  assert.match(messages.join("\n"), /took over a stale lock \(process \d+ on .* is gone\)/);

  messages.length = 0;
  await Deno.writeTextFile(ownerPath(path), JSON.stringify(foreign({ job: "77" })));
  const asked: string[] = [];
  await withSharedLock(path, () => Promise.resolve(), {
    jobAlive: (job) => {
      asked.push(job);
      return Promise.resolve(false);
    },
    onWait: (m) => messages.push(m),
  });
  assert.deepEqual(asked, ["77"]);
  assert.match(messages.join("\n"), /took over a stale lock \(job 77 has ended\)/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("the owner touches its lock file while it works (the heartbeat)", async () => {
  const { dir, path } = await tempLock();
  const mtimes = await withSharedLock(path, async () => {
    const first = (await Deno.stat(ownerPath(path))).mtime!.getTime();
    await setAge(ownerPath(path), 60_000);
    await new Promise((r) => setTimeout(r, 150));
    return [first, (await Deno.stat(ownerPath(path))).mtime!.getTime()];
  }, { heartbeatMs: 30 });
  assert.ok(mtimes[1] >= mtimes[0] - 1000, "heartbeat did not refresh the owner file");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("waiters in one process take turns", async () => {
  const { dir, path } = await tempLock();
  let inside = 0;
  let most = 0;
  await Promise.all(
    Array.from({ length: 4 }, () =>
      withSharedLock(path, async () => {
        inside++;
        most = Math.max(most, inside);
        await new Promise((r) => setTimeout(r, 20));
        inside--;
      })),
  );
  assert.equal(most, 1);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("on this host a live owner is waited for even when the scheduler says its job ended", async () => {
  const { dir, path } = await tempLock();
  // This very process stands for a job's process that Slurm marked NODE_FAIL.
  await Deno.writeTextFile(ownerPath(path), JSON.stringify({ ...currentOwner(), job: "12" }));
  const asked: string[] = [];
  const t0 = Date.now();
  const waiting = withSharedLock(path, () => Promise.resolve(Date.now()), {
    maxPollMs: 20,
    jobAlive: (job) => {
      asked.push(job);
      return Promise.resolve(false);
    },
  });
  await new Promise((r) => setTimeout(r, 200));
  await Deno.remove(ownerPath(path));
  assert.ok((await waiting) - t0 >= 200, "took the lock from a live process");
  assert.deepEqual(asked, []);
  await Deno.remove(dir, { recursive: true });
});
