// Files of one revision of a Hugging Face model repo, fetched with npm `@huggingface/hub`
// and checked before use. What we ask the hub (and what tests/helpers/local_hub.ts
// answers): `GET /api/models/{repo}/revision/{rev}` (modelInfo: the commit and the file
// list), then per file `GET /{repo}/resolve/{commit}/{path}` with `Range: bytes=0-0`
// (fileDownloadInfo: size from Content-Range, the git blob sha1 in ETag for small files),
// for large files `POST /api/models/{repo}/paths-info/{commit}` (pathsInfo: the LFS
// sha256), then the body, from the first missing byte.
//
// Verified files are kept in the Hugging Face cache (lm/hub/hf_cache.ts: HF_HUB_CACHE,
// or HF_HOME/hub, or ~/.cache/huggingface/hub), as huggingface_hub keeps them, so any
// run that needs a file again (another revision range, another hub step, Python tools)
// takes it from there; with `LAWA_HF_CACHE=off` they stay in the caller's folder. A
// download lands in `<etag>.incomplete` (`.part` outside the cache); an interrupted or
// short transfer is resumed with a Range request from what is already there, and a file
// is used only when its size and its hash (sha256 for LFS files, git's blob sha1 for
// others) equal what the hub declared, a cached copy included; a mismatch is refused and
// the bad file removed. With no network, a revision the cache holds (refs/<rev> ->
// snapshots/<commit>/) is listed and read from there, still size and hash checked.
import { downloadFile, fileDownloadInfo, modelInfo, pathsInfo } from "@huggingface/hub";
import { createHash } from "node:crypto";
import { addToSnapshot, blobPath, cachedSnapshot, exists, withBlobLock } from "./hf_cache.ts";

export const DEFAULT_ENDPOINT = "https://huggingface.co";

export interface HubAccess {
  /** Hub base URL (HF_ENDPOINT). */
  endpoint: string;
  /** Access token (HF_TOKEN), for gated or private repos. */
  token?: string;
  /** The Hugging Face cache that keeps verified downloads (null: LAWA_HF_CACHE=off). */
  hfCache: string | null;
}

/**
 * Endpoint, token and cache folder from the environment, as huggingface_hub reads them;
 * `LAWA_HF_CACHE=off` keeps downloads out of the Hugging Face cache.
 */
export function hubAccessFromEnv(
  env: (name: string) => string | undefined = Deno.env.get,
): HubAccess {
  const useCache = (env("LAWA_HF_CACHE") ?? "on").trim().toLowerCase();
  if (!["on", "off", ""].includes(useCache)) {
    throw new Error(`LAWA_HF_CACHE is "${env("LAWA_HF_CACHE")}": set it to off, or leave it unset`);
  }
  const home = env("HOME");
  const hfHome = env("HF_HOME") ??
    (home ? `${env("XDG_CACHE_HOME") ?? `${home}/.cache`}/huggingface` : null);
  return {
    endpoint: (env("HF_ENDPOINT") ?? DEFAULT_ENDPOINT).replace(/\/+$/, ""),
    token: env("HF_TOKEN") ?? env("HUGGING_FACE_HUB_TOKEN") ?? undefined,
    hfCache: useCache === "off" ? null : env("HF_HUB_CACHE") ?? (hfHome ? `${hfHome}/hub` : null),
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
        }); it needs network access, or HF_ENDPOINT pointing at a mirror${
          access.hfCache ? `, or the revision in the Hugging Face cache ${access.hfCache}` : ""
        }`,
      );
    }
    throw new Error(`hub: ${repo} revision ${revision} at ${access.endpoint}: ${oneLine(e)}`);
  }
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
async function appendBody(
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

/** A verified file: where it is, and how many of its bytes came over the network. */
export interface FetchedFile {
  path: string;
  /** 0 when the file was already there (the Hugging Face cache, or `dir`). */
  downloaded: number;
}

/**
 * `file` of a revision, verified (size and hash): the blob of the Hugging Face cache
 * (`access.hfCache`), or `<dir>/<etag>` without one. A verified copy already there is
 * used (and named in the revision's snapshot), a partial download is resumed, a copy
 * whose hash is wrong is removed and fetched again.
 */
export async function fetchVerified(
  listing: RevisionListing,
  file: RemoteFile,
  dir: string,
  access: HubAccess,
  hooks: DownloadHooks = {},
  maxAttempts = 5,
): Promise<FetchedFile> {
  const where = `${listing.repo} revision ${listing.revision} ${file.path}`;
  if (listing.cachedSnapshot) return await fromSnapshot(listing, file, where, hooks);
  const cache = access.hfCache;
  if (!cache) {
    await Deno.mkdir(dir, { recursive: true });
    return await fetchInto(listing, file, `${dir}/${file.etag}`, ".part", access, hooks, {
      where,
      maxAttempts,
      cached: "",
    });
  }
  const dest = blobPath(cache, listing.repo, file.etag);
  await Deno.mkdir(dest.slice(0, dest.lastIndexOf("/")), { recursive: true });
  return await withBlobLock(cache, listing.repo, file.etag, async () => {
    const got = await fetchInto(listing, file, dest, ".incomplete", access, hooks, {
      where,
      maxAttempts,
      cached: " (in the Hugging Face cache)",
    });
    await addToSnapshot(cache, listing, file.path, file.etag);
    return got;
  });
}

/** Offline: the cached snapshot's file, checked as a download would be. */
async function fromSnapshot(
  listing: RevisionListing,
  file: RemoteFile,
  where: string,
  hooks: DownloadHooks,
): Promise<FetchedFile> {
  const path = await Deno.realPath(`${listing.cachedSnapshot}/${file.path}`);
  const size = (await Deno.stat(path)).size;
  if (size !== file.size) {
    throw new Error(`hub: ${where}: incomplete in the Hugging Face cache (${size} bytes)`);
  }
  const hash = await fileHash(path, file.etag);
  if (hash !== file.etag) {
    throw new Error(
      `hub: ${where}: refused: the Hugging Face cache's copy ${path} has content hash ${hash}, not ${file.etag}`,
    );
  }
  hooks.log?.(`hub: ${where}: taken from the Hugging Face cache (offline)`);
  return { path, downloaded: 0 };
}

/** `dest`, verified: kept if already right, else downloaded through `dest + suffix`. */
async function fetchInto(
  listing: RevisionListing,
  file: RemoteFile,
  dest: string,
  suffix: string,
  access: HubAccess,
  hooks: DownloadHooks,
  opts: { where: string; maxAttempts: number; cached: string },
): Promise<FetchedFile> {
  const { where, maxAttempts } = opts;
  if ((await exists(dest))?.size === file.size) {
    const hash = await fileHash(dest, file.etag);
    if (hash === file.etag) {
      if (opts.cached) hooks.log?.(`hub: ${where}: reused from the Hugging Face cache`);
      return { path: dest, downloaded: 0 };
    }
    hooks.log?.(
      `hub: ${where}: the copy at ${dest}${opts.cached} has content hash ${hash}, not ${file.etag}; downloading it again`,
    );
  }
  await Deno.remove(dest).catch(() => {});
  const part = `${dest}${suffix}`;
  let downloaded = 0;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    let have = (await exists(part))?.size ?? 0;
    if (have > file.size) {
      await Deno.remove(part);
      have = 0;
    }
    if (have < file.size) {
      if (have > 0) hooks.log?.(`hub: ${where}: resuming at byte ${have} of ${file.size}`);
      try {
        await appendBody(listing, file, part, have, access, hooks);
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
    downloaded += got - have;
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
    return { path: dest, downloaded };
  }
  throw new Error(`hub: ${where}: still incomplete after ${maxAttempts} attempts`);
}
