// Files of one revision of a Hugging Face model repo, fetched with npm `@huggingface/hub`
// and checked before use. What we ask the hub (and what tests/helpers/local_hub.ts
// answers): `GET /api/models/{repo}/revision/{rev}` (modelInfo: the commit and the file
// list), then per file `GET /{repo}/resolve/{commit}/{path}` with `Range: bytes=0-0`
// (fileDownloadInfo: size from Content-Range, the git blob sha1 in ETag for small files),
// for large files `POST /api/models/{repo}/paths-info/{commit}` (pathsInfo: the LFS
// sha256), then the body, from the first missing byte.
//
// A download lands in `<dir>/<etag>.part`; an interrupted or short transfer is resumed
// with a Range request from what is already there, and a file is accepted only when its
// size and its hash (sha256 for LFS files, git's blob sha1 for others) equal what the hub
// declared; a mismatch is refused and the partial file removed. A blob already in a
// Hugging Face cache (HF_HUB_CACHE, or HF_HOME/hub, or ~/.cache/huggingface/hub) is
// copied instead of downloaded, and with no network a revision whose files that cache
// holds (refs/<rev> -> snapshots/<commit>/) is used from there. Verified downloads are
// added to that cache when it exists (hard links), as huggingface_hub itself would.
import { downloadFile, fileDownloadInfo, modelInfo, pathsInfo } from "@huggingface/hub";
import { createHash } from "node:crypto";

export const DEFAULT_ENDPOINT = "https://huggingface.co";

export interface HubAccess {
  /** Hub base URL (HF_ENDPOINT). */
  endpoint: string;
  /** Access token (HF_TOKEN), for gated or private repos. */
  token?: string;
  /** A Hugging Face cache to reuse (null: none). */
  hfCache: string | null;
}

/** Endpoint, token and cache folder from the environment, as huggingface_hub reads them. */
export function hubAccessFromEnv(
  env: (name: string) => string | undefined = Deno.env.get,
): HubAccess {
  const home = env("HOME");
  const hfHome = env("HF_HOME") ??
    (home ? `${env("XDG_CACHE_HOME") ?? `${home}/.cache`}/huggingface` : null);
  return {
    endpoint: (env("HF_ENDPOINT") ?? DEFAULT_ENDPOINT).replace(/\/+$/, ""),
    token: env("HF_TOKEN") ?? env("HUGGING_FACE_HUB_TOKEN") ?? undefined,
    hfCache: env("HF_HUB_CACHE") ?? (hfHome ? `${hfHome}/hub` : null),
  };
}

/** A file of a revision: where it is, its size and the hub's etag (sha256 or git sha1). */
export interface RemoteFile {
  path: string;
  size: number;
  etag: string;
}

export interface RevisionListing {
  repo: string;
  revision: string;
  commit: string;
  files: string[];
  /** Set when the listing came from a local Hugging Face cache (no network). */
  cachedSnapshot?: string;
}

function oneLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

/** The hub could not be reached at all (as opposed to answering with an error). */
function isNetworkError(e: unknown): boolean {
  return e instanceof TypeError || /error sending request|connection refused|dns error|network/i
    .test(oneLine(e));
}

function repoFolder(repo: string): string {
  return `models--${repo.replace("/", "--")}`;
}

/** The commit and file list of a revision; offline, from the Hugging Face cache if it has it. */
export async function listRevision(
  repo: string,
  revision: string,
  access: HubAccess,
): Promise<RevisionListing> {
  try {
    const info = await modelInfo({
      name: repo,
      revision,
      hubUrl: access.endpoint,
      accessToken: access.token,
      additionalFields: ["sha", "filePaths"],
    });
    return {
      repo,
      revision,
      commit: info.sha,
      files: info.filePaths ?? [],
    };
  } catch (e) {
    if (isNetworkError(e)) {
      const cached = await cachedSnapshot(repo, revision, access.hfCache);
      if (cached) return cached;
      throw new Error(
        `hub: cannot fetch ${repo} revision ${revision}: ${access.endpoint} is unreachable (${
          oneLine(e)
        }); it needs network access, or HF_ENDPOINT pointing at a mirror`,
      );
    }
    throw new Error(`hub: ${repo} revision ${revision} at ${access.endpoint}: ${oneLine(e)}`);
  }
}

async function exists(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** A revision in a Hugging Face cache: refs/<rev> names a commit whose snapshot exists. */
async function cachedSnapshot(
  repo: string,
  revision: string,
  hfCache: string | null,
): Promise<RevisionListing | null> {
  if (!hfCache) return null;
  const root = `${hfCache}/${repoFolder(repo)}`;
  let commit = revision;
  if (!/^[0-9a-f]{40}$/.test(revision)) {
    try {
      commit = (await Deno.readTextFile(`${root}/refs/${revision}`)).trim();
    } catch {
      return null;
    }
  }
  const snapshot = `${root}/snapshots/${commit}`;
  if (!(await exists(snapshot))) return null;
  const files: string[] = [];
  const walk = async (dir: string, prefix: string) => {
    for await (const e of Deno.readDir(dir)) {
      const rel = prefix + e.name;
      const st = await Deno.stat(`${dir}/${e.name}`);
      if (st.isDirectory) await walk(`${dir}/${e.name}`, `${rel}/`);
      else files.push(rel);
    }
  };
  await walk(snapshot, "");
  return { repo, revision, commit, files: files.sort(), cachedSnapshot: snapshot };
}

/** Size and etag of a file of a revision (from the hub, or from the cached snapshot). */
export async function remoteFile(
  listing: RevisionListing,
  path: string,
  access: HubAccess,
): Promise<RemoteFile> {
  if (listing.cachedSnapshot) {
    const target = await Deno.realPath(`${listing.cachedSnapshot}/${path}`);
    const st = await Deno.stat(target);
    return { path, size: st.size, etag: target.slice(target.lastIndexOf("/") + 1) };
  }
  let info;
  try {
    info = await fileDownloadInfo({
      repo: listing.repo,
      path,
      revision: listing.commit,
      hubUrl: access.endpoint,
      accessToken: access.token,
    });
  } catch (e) {
    throw new Error(
      `hub: ${listing.repo} revision ${listing.revision} ${path} at ${access.endpoint}: ${
        oneLine(e)
      }`,
    );
  }
  if (!info) {
    throw new Error(`hub: ${listing.repo} revision ${listing.revision} has no file ${path}`);
  }
  const etag = info.etag.replace(/^W\//, "").replace(/"/g, "");
  if (/^[0-9a-f]{40}$/.test(etag) && !info.xet) return { path, size: info.size, etag };
  // Otherwise (an LFS file behind a CDN, a Xet-stored file whose ETag is its Xet hash) the
  // content hash comes from the tree API: the LFS oid (sha256), or the git oid.
  let lfs;
  try {
    [lfs] = await pathsInfo({
      repo: listing.repo,
      paths: [path],
      revision: listing.commit,
      hubUrl: access.endpoint,
      accessToken: access.token,
    });
  } catch (e) {
    throw new Error(
      `hub: ${listing.repo} revision ${listing.revision} ${path}: no content hash to check it against (${
        oneLine(e)
      })`,
    );
  }
  // An LFS file is checked against its sha256, a small file against its git blob sha1.
  const hash = lfs?.lfs ? lfs.lfs.oid : lfs?.oid;
  if (!hash || (lfs?.lfs ? lfs.lfs.size : lfs?.size) !== info.size) {
    throw new Error(
      `hub: ${listing.repo} revision ${listing.revision} ${path}: the hub gives no hash of its ${info.size} bytes to check them against`,
    );
  }
  return { path, size: info.size, etag: hash };
}

/** The hash the hub's etag stands for: sha256 (LFS) or git's blob sha1 (small files). */
async function fileHash(path: string, etag: string): Promise<string> {
  const lfs = /^[0-9a-f]{64}$/.test(etag);
  const hash = createHash(lfs ? "sha256" : "sha1");
  const file = await Deno.open(path, { read: true });
  try {
    if (!lfs) hash.update(`blob ${(await file.stat()).size}\0`);
    const buf = new Uint8Array(1 << 20);
    for (;;) {
      const n = await file.read(buf);
      if (n === null) break;
      hash.update(buf.subarray(0, n));
    }
  } finally {
    file.close();
  }
  return hash.digest("hex");
}

export interface DownloadHooks {
  log?: (message: string) => void;
  /** Bytes received so far for this file. */
  onBytes?: (bytes: number) => void;
  signal?: AbortSignal;
}

/** Append the bytes from `have` on to `part`; returns when the body ends or fails. */
async function fetchInto(
  listing: RevisionListing,
  file: RemoteFile,
  part: string,
  have: number,
  access: HubAccess,
  hooks: DownloadHooks,
): Promise<void> {
  const blob = await downloadFile({
    repo: listing.repo,
    path: file.path,
    revision: listing.commit,
    hubUrl: access.endpoint,
    accessToken: access.token,
    xet: false,
    downloadInfo: {
      size: file.size,
      etag: file.etag,
      url: `${access.endpoint}/${listing.repo}/resolve/${
        encodeURIComponent(listing.commit)
      }/${file.path}`,
    },
  });
  if (!blob) throw new Error(`hub: ${listing.repo} has no file ${file.path}`);
  const out = await Deno.open(part, { write: true, create: true, append: true });
  let got = have;
  try {
    const reader = (have > 0 ? blob.slice(have) : blob).stream().getReader();
    for (;;) {
      hooks.signal?.throwIfAborted();
      const { done, value } = await reader.read();
      if (done) break;
      let written = 0;
      while (written < value.length) written += await out.write(value.subarray(written));
      got += value.length;
      hooks.onBytes?.(got);
    }
  } finally {
    out.close();
  }
}

/**
 * `file` of a revision as `<dir>/<etag>`, verified (size and hash); resumes a partial
 * download, reuses a blob of the Hugging Face cache. Returns the verified file's path.
 */
export async function fetchVerified(
  listing: RevisionListing,
  file: RemoteFile,
  dir: string,
  access: HubAccess,
  hooks: DownloadHooks = {},
  maxAttempts = 5,
): Promise<string> {
  const dest = `${dir}/${file.etag}`;
  const where = `${listing.repo} revision ${listing.revision} ${file.path}`;
  const done = await exists(dest);
  if (done?.size === file.size) return dest;
  await Deno.mkdir(dir, { recursive: true });
  const part = `${dest}.part`;
  const cached = listing.cachedSnapshot
    ? `${listing.cachedSnapshot}/${file.path}`
    : access.hfCache
    ? `${access.hfCache}/${repoFolder(listing.repo)}/blobs/${file.etag}`
    : null;
  if (cached && (await exists(cached))?.size === file.size) {
    await Deno.remove(part).catch(() => {});
    const target = await Deno.realPath(cached); // a snapshot entry is a symlink to its blob
    await Deno.link(target, part).catch(() => Deno.copyFile(target, part));
    hooks.log?.(`hub: ${where}: reused from the Hugging Face cache`);
  }
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    let have = (await exists(part))?.size ?? 0;
    if (have > file.size) {
      await Deno.remove(part);
      have = 0;
    }
    if (have < file.size) {
      if (listing.cachedSnapshot) {
        throw new Error(`hub: ${where}: incomplete in the Hugging Face cache`);
      }
      if (have > 0) hooks.log?.(`hub: ${where}: resuming at byte ${have} of ${file.size}`);
      try {
        await fetchInto(listing, file, part, have, access, hooks);
      } catch (e) {
        if (hooks.signal?.aborted) throw e;
        hooks.log?.(`hub: ${where}: transfer interrupted (${oneLine(e)})`);
        if (isNetworkError(e) && attempt === maxAttempts) {
          throw new Error(
            `hub: cannot fetch ${listing.repo} revision ${listing.revision}: ${access.endpoint} is unreachable (${
              oneLine(e)
            })`,
          );
        }
      }
    }
    const got = (await exists(part))?.size ?? 0;
    if (got !== file.size) {
      hooks.log?.(`hub: ${where}: refused a short file (${got} of ${file.size} bytes)`);
      continue;
    }
    const hash = await fileHash(part, file.etag);
    if (hash !== file.etag) {
      await Deno.remove(part);
      throw new Error(
        `hub: ${where}: refused: content hash ${hash} differs from the hub's ${file.etag}`,
      );
    }
    await Deno.rename(part, dest);
    if (!listing.cachedSnapshot) await keepInHfCache(listing, file, dest, access.hfCache);
    return dest;
  }
  throw new Error(`hub: ${where}: still incomplete after ${maxAttempts} attempts`);
}

/**
 * Add a verified file to an existing Hugging Face cache, in its layout (blobs/<etag>,
 * snapshots/<commit>/<path> -> blob, refs/<revision>), hard-linked when it can be: a
 * later run, with another revision range or offline, and Python tools find it there.
 * A cache folder that does not exist is not created.
 */
async function keepInHfCache(
  listing: RevisionListing,
  file: RemoteFile,
  path: string,
  hfCache: string | null,
): Promise<void> {
  if (!hfCache || !(await exists(hfCache))?.isDirectory) return;
  const root = `${hfCache}/${repoFolder(listing.repo)}`;
  const blob = `${root}/blobs/${file.etag}`;
  const pointer = `${root}/snapshots/${listing.commit}/${file.path}`;
  try {
    await Deno.mkdir(`${root}/blobs`, { recursive: true });
    if ((await exists(blob))?.size !== file.size) {
      await Deno.link(path, blob).catch(() => Deno.copyFile(path, blob));
    }
    await Deno.mkdir(pointer.slice(0, pointer.lastIndexOf("/")), { recursive: true });
    if (!(await exists(pointer))) {
      const up = "../".repeat(file.path.split("/").length + 1);
      await Deno.symlink(`${up}blobs/${file.etag}`, pointer);
    }
    if (listing.revision !== listing.commit) {
      await Deno.mkdir(`${root}/refs`, { recursive: true });
      await Deno.writeTextFile(`${root}/refs/${listing.revision}`, listing.commit);
    }
  } catch {
    // A read-only or foreign cache stays as it is: keeping a copy there is a convenience.
  }
}
