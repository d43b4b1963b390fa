// The Hugging Face cache, in the layout huggingface_hub writes and reads, as the one
// place verified downloads are kept: a revision range that changes (which changes the
// hub step's cache key) or a run without network then finds the files it already has.
//
//   <cache>/models--<owner>--<name>/blobs/<etag>            the file (sha256 for LFS
//                                                           files, git blob sha1 others)
//   <cache>/models--<owner>--<name>/blobs/<etag>.incomplete a download in progress
//   <cache>/models--<owner>--<name>/snapshots/<commit>/<path> -> ../../blobs/<etag>
//   <cache>/models--<owner>--<name>/refs/<revision>         the revision's commit
//   <cache>/.locks/models--<owner>--<name>/<etag>.lock      held while a blob is written
//
// The lock is an flock, as Python's filelock takes it, so parallel hub steps (--jobs, or
// cluster jobs sharing a home folder) and huggingface_hub itself never write one blob at
// once. The folder is `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`
// (lm/hub/download.ts reads the environment), created when missing; `LAWA_HF_CACHE=off`
// keeps downloads in the step's own folder instead.
import type { RevisionListing } from "./download.ts";

/** The cache folder of a model repo: `models--owner--name`. */
export function repoFolder(repo: string): string {
  return `models--${repo.replace("/", "--")}`;
}

/** Where a verified file of `repo` with this etag lives in the cache. */
export function blobPath(cache: string, repo: string, etag: string): string {
  return `${cache}/${repoFolder(repo)}/blobs/${etag}`;
}

/** The file's info, or null when there is nothing at `path`. */
export async function exists(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

function oneLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

/**
 * The cache folder made ready for `repo` (created when missing), or null, with one log
 * line, when it cannot be written: downloads then stay in the step's folder, as with
 * `LAWA_HF_CACHE=off`.
 */
export async function prepareHfCache(
  cache: string | null,
  repo: string,
  log: (message: string) => void,
): Promise<string | null> {
  if (!cache) return null;
  try {
    await Deno.mkdir(`${cache}/${repoFolder(repo)}/blobs`, { recursive: true });
    await Deno.mkdir(`${cache}/.locks/${repoFolder(repo)}`, { recursive: true });
    const probe = await Deno.makeTempFile({ dir: `${cache}/${repoFolder(repo)}/blobs` });
    await Deno.remove(probe);
    return cache;
  } catch (e) {
    log(
      `hub: cannot write the Hugging Face cache ${cache} (${
        oneLine(e)
      }); downloads of this run are not kept for other runs`,
    );
    return null;
  }
}

/** Run `fn` holding the cache's lock on a blob (an flock, released if the process dies). */
export async function withBlobLock<T>(
  cache: string,
  repo: string,
  etag: string,
  fn: () => Promise<T>,
): Promise<T> {
  const dir = `${cache}/.locks/${repoFolder(repo)}`;
  await Deno.mkdir(dir, { recursive: true });
  const lock = await Deno.open(`${dir}/${etag}.lock`, { write: true, create: true });
  try {
    await lock.lock(true);
    return await fn();
  } finally {
    lock.close(); // closing releases the lock
  }
}

/**
 * Name a blob of the cache as `path` of the listing's commit (snapshots/<commit>/<path>,
 * a relative symlink) and the revision's commit (refs/<revision>), as huggingface_hub
 * does, so that a later run offline, or Python tools, find the revision. Needs the blob.
 */
export async function addToSnapshot(
  cache: string,
  listing: RevisionListing,
  path: string,
  etag: string,
): Promise<void> {
  const root = `${cache}/${repoFolder(listing.repo)}`;
  const pointer = `${root}/snapshots/${listing.commit}/${path}`;
  await Deno.mkdir(pointer.slice(0, pointer.lastIndexOf("/")), { recursive: true });
  const target = `${"../".repeat(path.split("/").length + 1)}blobs/${etag}`;
  const old = await Deno.lstat(pointer).catch(() => null);
  if (!old?.isSymlink || (await Deno.readLink(pointer)) !== target) {
    if (old) await Deno.remove(pointer);
    try {
      await Deno.symlink(target, pointer);
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e; // a parallel run named it
    }
  }
  if (listing.revision !== listing.commit) {
    await Deno.mkdir(`${root}/refs`, { recursive: true });
    const ref = `${root}/refs/${listing.revision}`;
    const known = await Deno.readTextFile(ref).catch(() => null);
    if (known?.trim() !== listing.commit) await Deno.writeTextFile(ref, listing.commit);
  }
}

/**
 * A revision as the cache knows it (refs/<rev> names a commit whose snapshot exists):
 * its commit and the files its snapshot holds, or null. Used when the hub is unreachable.
 */
export async function cachedSnapshot(
  repo: string,
  revision: string,
  cache: string | null,
): Promise<RevisionListing | null> {
  if (!cache) return null;
  const root = `${cache}/${repoFolder(repo)}`;
  let commit = revision;
  if (!/^[0-9a-f]{40}$/.test(revision)) {
    try {
      commit = (await Deno.readTextFile(`${root}/refs/${revision}`)).trim();
    } catch {
      return null;
    }
  }
  const snapshot = `${root}/snapshots/${commit}`;
  if (!(await exists(snapshot))?.isDirectory) return null;
  const files: string[] = [];
  const walk = async (dir: string, prefix: string) => {
    for await (const e of Deno.readDir(dir)) {
      const rel = prefix + e.name;
      const st = await exists(`${dir}/${e.name}`); // a dangling pointer is no file
      if (st?.isDirectory) await walk(`${dir}/${e.name}`, `${rel}/`);
      else if (st) files.push(rel);
    }
  };
  await walk(snapshot, "");
  return { repo, revision, commit, files: files.sort(), cachedSnapshot: snapshot };
}
