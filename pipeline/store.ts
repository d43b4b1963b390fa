// The content-addressed cache: `<artifacts>/cache/<key>/` holds a finished instance's
// outputs and `manifest.json`. An entry appears atomically: the step writes into
// `cache/.tmp/<key>/`, its outputs are hashed and fsynced, then the folder is renamed
// into place, so a crash never leaves a half entry. `cache/.locks/<key>.lock` keeps two
// processes from building the same key at once.
//
// Entries are checked on every use, cheaply: each output's size against the manifest,
// and its mtime, ctime and inode against the stamp taken when it was committed
// (`cache/.stamps/<key>.json`); a file whose stamp differs (copied, touched, edited) is
// rehashed. `inspect(key, { full: true })` rehashes everything (`status --verify`). A
// damaged entry is never used: the runner rebuilds it.
//
// Side files (`_side/` in an entry) hold what a step measured about its run, not what it
// computed (wall-clock seconds, tokens/s): they are hashed and checked like every output,
// but left out of the digest, so a second run of the same config and seed gives every
// downstream step the same key.
import { hashFile, hashJson } from "./hash.ts";
import { onDisk } from "./errors.ts";
import type { CodeParts } from "./fingerprint.ts";

export const MANIFEST = "manifest.json";
/** Folder inside an entry where result rows are kept, one `<table>.jsonl` per table. */
export const ROWS_DIR = "_rows";
/** Folder inside an entry for side files: measurements of the run, out of the digest. */
export const SIDE_DIR = "_side";

export interface OutputFile {
  bytes: number;
  sha256: string;
}

export interface Manifest {
  format: "cache-entry/1";
  key: string;
  step: string;
  node: string;
  /** Params after defaults. */
  params: Record<string, unknown>;
  /** Input name -> upstream key(s). */
  inputs: Record<string, string | string[]>;
  /** Everything the key was computed from (compared by --dry-run to explain a rerun). */
  keyParts: KeyParts;
  /** What `keyParts.code` was computed from, so --dry-run can name the code that changed. */
  codeParts?: CodeParts;
  /** Relative path -> size and sha256 (plain SHA-256 of the whole file). */
  outputs: Record<string, OutputFile>;
  /** sha256 over the sorted (path, sha256) list, side files left out: the outputs' identity. */
  digest: string;
  started: string;
  finished: string;
  duration_s: number;
  /** The command line's `--set` overrides that touched this node (absent without any). */
  overrides?: string[];
  backend: string;
  seed: number;
  host: string;
  /** The cluster job that built the entry (absent when built in the coordinator). */
  job?: ManifestJob;
  /** Result rows kept in the entry, by table. */
  rows: Record<string, number>;
}

/** A scheduler job: which executor, its job id, the node it ran on. */
export interface ManifestJob {
  executor: string;
  id: string;
  node: string;
}

/** What a cache key is the hash of. */
export interface KeyParts {
  step: string;
  code: string;
  params: Record<string, unknown>;
  /** Input name -> {key, digest} of the upstream instance(s). */
  inputs: Record<string, { key: string; digest: string } | { key: string; digest: string }[]>;
  /** `name@version`, or null when the step does not depend on the backend. */
  backend: string | null;
  /** Run seed, or null when the step does not depend on it. */
  seed: number | null;
  /** sha256 of each file the step reads by path (StepKind.files); absent when none. */
  files?: Record<string, string>;
}

export function cacheKey(parts: KeyParts): string {
  return hashJson(parts);
}

/** Whether an entry's file is a side file (a measurement, not in the digest). */
export function isSideFile(rel: string): boolean {
  return rel.startsWith(`${SIDE_DIR}/`);
}

/** The digest of an entry's outputs: every file but the side files, by path and sha256. */
export function outputsDigest(outputs: Record<string, OutputFile>): string {
  return hashJson(
    Object.entries(outputs).filter(([p]) => !isSideFile(p)).map(([p, f]) => [p, f.sha256]),
  );
}

/** What a cache key holds: nothing, a usable entry, or one that must not be used. */
export type EntryState =
  | { state: "missing" }
  | { state: "ok"; manifest: Manifest }
  | { state: "damaged"; reason: string };

/** When each output was last written, as the file system says (its identity, cheaply). */
interface FileStamp {
  mtime_ms: number | null;
  ctime_ms: number | null;
  ino: number | null;
}

type StampFile = { files: Record<string, FileStamp> } | { damaged: string };

function fileStamp(info: Deno.FileInfo): FileStamp {
  return {
    mtime_ms: info.mtime?.getTime() ?? null,
    ctime_ms: info.ctime?.getTime() ?? null,
    ino: info.ino,
  };
}

function sameFileStamp(a: FileStamp, b: FileStamp | undefined): boolean {
  return b !== undefined && a.mtime_ms === b.mtime_ms && a.ctime_ms === b.ctime_ms &&
    a.ino === b.ino && a.mtime_ms !== null;
}

/** The manifest's own consistency: its shape, its key, and the digest over its outputs. */
function manifestProblem(m: unknown, key: string): string | null {
  const o = m as Partial<Manifest> | null;
  if (o === null || typeof o !== "object" || o.format !== "cache-entry/1") {
    return "manifest.json is not a cache manifest";
  }
  if (o.key !== key) return `manifest.json names key ${String(o.key).slice(0, 12)}`;
  if (typeof o.outputs !== "object" || o.outputs === null || typeof o.digest !== "string") {
    return "manifest.json has no outputs or digest";
  }
  if (outputsDigest(o.outputs) !== o.digest) {
    return "manifest.json's outputs do not match its digest";
  }
  return null;
}

export class Store {
  readonly root: string;
  readonly cacheDir: string;
  readonly tmpDir: string;
  readonly locksDir: string;
  readonly trashDir: string;
  readonly stampsDir: string;

  constructor(artifactsRoot: string) {
    this.root = artifactsRoot;
    this.cacheDir = `${artifactsRoot}/cache`;
    this.tmpDir = `${this.cacheDir}/.tmp`;
    this.locksDir = `${this.cacheDir}/.locks`;
    this.trashDir = `${this.cacheDir}/.trash`;
    this.stampsDir = `${this.cacheDir}/.stamps`;
  }

  async init(): Promise<void> {
    for (const d of [this.tmpDir, this.locksDir, this.trashDir, this.stampsDir]) {
      await onDisk(d, () => Deno.mkdir(d, { recursive: true }), "create");
    }
  }

  entryDir(key: string): string {
    return `${this.cacheDir}/${key}`;
  }

  workDir(key: string): string {
    return `${this.tmpDir}/${key}`;
  }

  lockPath(key: string): string {
    return `${this.locksDir}/${key}.lock`;
  }

  stampPath(key: string): string {
    return `${this.stampsDir}/${key}.json`;
  }

  /**
   * The manifest of a committed entry, or null when there is none or it cannot be read
   * (garbled, cut short: `inspect` says which).
   */
  async readManifest(key: string): Promise<Manifest | null> {
    const found = await this.#readManifest(key);
    return "manifest" in found ? found.manifest : null;
  }

  async #readManifest(
    key: string,
  ): Promise<{ manifest: Manifest } | { missing: true } | { damaged: string }> {
    let text: string;
    try {
      text = await Deno.readTextFile(`${this.entryDir(key)}/${MANIFEST}`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      try {
        await Deno.stat(this.entryDir(key));
        return { damaged: "it has no manifest.json" };
      } catch {
        return { missing: true };
      }
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      return { damaged: "manifest.json is not valid JSON" };
    }
    const problem = manifestProblem(data, key);
    return problem ? { damaged: problem } : { manifest: data as Manifest };
  }

  /**
   * Whether `key` holds an entry that can be used. Cheap by default (sizes, stamps, and a
   * rehash of files whose stamp changed); `full` rehashes every output.
   */
  async inspect(key: string, opts: { full?: boolean } = {}): Promise<EntryState> {
    const read = await this.#readManifest(key);
    if ("missing" in read) return { state: "missing" };
    if ("damaged" in read) return { state: "damaged", reason: read.damaged };
    const manifest = read.manifest;
    const stamps = await this.#readStamps(key);
    if (stamps && "damaged" in stamps && !opts.full) {
      return { state: "damaged", reason: stamps.damaged };
    }
    const known = stamps && "files" in stamps ? stamps.files : {};
    const fresh: Record<string, FileStamp> = {};
    let restamp = stamps === null || "damaged" in stamps;
    const dir = this.entryDir(key);
    for (const [rel, out] of Object.entries(manifest.outputs)) {
      let info: Deno.FileInfo;
      try {
        info = await Deno.stat(`${dir}/${rel}`);
      } catch {
        return { state: "damaged", reason: `${rel} is missing` };
      }
      if (info.size !== out.bytes) {
        return {
          state: "damaged",
          reason: `${rel} has ${info.size} bytes, the manifest says ${out.bytes}`,
        };
      }
      const stamp = fileStamp(info);
      if (opts.full || !sameFileStamp(stamp, known[rel])) {
        const { sha256 } = await hashFile(`${dir}/${rel}`);
        if (sha256 !== out.sha256) {
          return { state: "damaged", reason: `${rel} does not match its recorded sha256` };
        }
        restamp ||= !sameFileStamp(stamp, known[rel]);
      }
      fresh[rel] = stamp;
    }
    if (opts.full) {
      for (const rel of await listFiles(dir)) {
        if (rel !== MANIFEST && !(rel in manifest.outputs)) {
          return { state: "damaged", reason: `${rel} is not in the manifest` };
        }
      }
    }
    // Rehashed and sound: remember the files as they are now (best effort: a
    // read-only cache is still usable, it is only rehashed again next time).
    if (restamp) await this.#writeStamps(key, { files: fresh }).catch(() => {});
    return { state: "ok", manifest };
  }

  /** Record that `key` is damaged (found by a full check), so the next run rebuilds it. */
  async markDamaged(key: string, reason: string): Promise<void> {
    await this.#writeStamps(key, { damaged: reason });
  }

  async #readStamps(key: string): Promise<StampFile | null> {
    try {
      const data = JSON.parse(await Deno.readTextFile(this.stampPath(key)));
      if (data && (typeof data.damaged === "string" || typeof data.files === "object")) {
        return data as StampFile;
      }
    } catch {
      // missing or garbled: the files are rehashed
    }
    return null;
  }

  async #writeStamps(key: string, stamps: StampFile): Promise<void> {
    await Deno.mkdir(this.stampsDir, { recursive: true });
    const tmp = `${this.stampPath(key)}.${crypto.randomUUID().slice(0, 8)}`;
    await Deno.writeTextFile(tmp, JSON.stringify(stamps) + "\n");
    await Deno.rename(tmp, this.stampPath(key));
  }

  /** Forget the stamps of an entry (gc removed it). */
  async dropStamps(key: string): Promise<void> {
    await Deno.remove(this.stampPath(key)).catch(ignoreNotFound);
  }

  /** Every committed entry's key (folder names that are not dot-folders). */
  async listKeys(): Promise<string[]> {
    const keys: string[] = [];
    try {
      for await (const e of Deno.readDir(this.cacheDir)) {
        if (e.isDirectory && !e.name.startsWith(".")) keys.push(e.name);
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return keys.sort();
  }

  /** Empty the work folder of `key` (or keep what is there, for resumable steps). */
  async prepareWorkDir(key: string, keepExisting: boolean): Promise<string> {
    const dir = this.workDir(key);
    await onDisk(this.tmpDir, async () => {
      if (!keepExisting) await Deno.remove(dir, { recursive: true }).catch(ignoreNotFound);
      await Deno.mkdir(dir, { recursive: true });
    });
    return dir;
  }

  async discardWorkDir(key: string): Promise<void> {
    await Deno.remove(this.workDir(key), { recursive: true }).catch(ignoreNotFound);
  }

  /**
   * Hash and fsync every output in the work folder, write the manifest and rename the
   * folder into the cache. An existing entry (a forced rerun) is swapped out.
   */
  commit(
    key: string,
    info: Omit<Manifest, "format" | "key" | "outputs" | "digest">,
  ): Promise<Manifest> {
    return onDisk(this.cacheDir, () => this.#commit(key, info));
  }

  async #commit(
    key: string,
    info: Omit<Manifest, "format" | "key" | "outputs" | "digest">,
  ): Promise<Manifest> {
    const dir = this.workDir(key);
    const outputs: Record<string, OutputFile> = {};
    for (const rel of await listFiles(dir)) {
      if (rel === MANIFEST) continue;
      outputs[rel] = await hashFile(`${dir}/${rel}`);
      await fsyncPath(`${dir}/${rel}`);
    }
    const digest = outputsDigest(outputs);
    const manifest: Manifest = { format: "cache-entry/1", key, ...info, outputs, digest };
    const manifestPath = `${dir}/${MANIFEST}`;
    await Deno.writeTextFile(manifestPath, JSON.stringify(manifest, null, 2) + "\n");
    await fsyncPath(manifestPath);
    await fsyncPath(dir);

    const target = this.entryDir(key);
    let trashed: string | null = null;
    try {
      await Deno.stat(target);
      trashed = `${this.trashDir}/${key}-${crypto.randomUUID()}`;
      await Deno.rename(target, trashed);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    await Deno.rename(dir, target);
    await fsyncPath(this.cacheDir);
    // Stamp the files as committed, so later uses need not rehash them.
    const files: Record<string, FileStamp> = {};
    for (const rel of Object.keys(outputs)) {
      files[rel] = fileStamp(await Deno.stat(`${target}/${rel}`));
    }
    await this.#writeStamps(key, { files });
    if (trashed) await Deno.remove(trashed, { recursive: true }).catch(ignoreNotFound);
    return manifest;
  }

  /** Total size in bytes of a folder's files. */
  async sizeOf(dir: string): Promise<number> {
    let total = 0;
    for (const rel of await listFiles(dir)) total += (await Deno.stat(`${dir}/${rel}`)).size;
    return total;
  }
}

function ignoreNotFound(e: unknown): void {
  if (!(e instanceof Deno.errors.NotFound)) throw e;
}

/** Relative paths of every file under `dir`, sorted. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (sub: string) => {
    for await (const e of Deno.readDir(sub ? `${dir}/${sub}` : dir)) {
      const rel = sub ? `${sub}/${e.name}` : e.name;
      if (e.isDirectory) await walk(rel);
      else out.push(rel);
    }
  };
  try {
    await walk("");
  } catch (e) {
    ignoreNotFound(e);
  }
  return out.sort();
}

async function fsyncPath(path: string): Promise<void> {
  try {
    const f = await Deno.open(path, { read: true });
    try {
      await f.sync();
    } finally {
      f.close();
    }
  } catch {
    // Some file systems refuse fsync on folders; the rename is still atomic.
  }
}
