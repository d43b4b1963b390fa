// The content-addressed cache: `<artifacts>/cache/<key>/` holds a finished instance's
// outputs and `manifest.json`. An entry appears atomically: the step writes into
// `cache/.tmp/<key>/`, its outputs are hashed and fsynced, then the folder is renamed
// into place, so a crash never leaves a half entry. `cache/.locks/<key>.lock` keeps two
// processes from building the same key at once.
import { hashFile, hashJson } from "./hash.ts";

export const MANIFEST = "manifest.json";
/** Folder inside an entry where result rows are kept, one `<table>.jsonl` per table. */
export const ROWS_DIR = "_rows";

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
  /** Relative path -> size and sha256 (plain SHA-256 of the whole file). */
  outputs: Record<string, OutputFile>;
  /** sha256 over the sorted (path, sha256) list: the identity of the outputs. */
  digest: string;
  started: string;
  finished: string;
  duration_s: number;
  backend: string;
  seed: number;
  host: string;
  /** Result rows kept in the entry, by table. */
  rows: Record<string, number>;
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

export class Store {
  readonly root: string;
  readonly cacheDir: string;
  readonly tmpDir: string;
  readonly locksDir: string;
  readonly trashDir: string;

  constructor(artifactsRoot: string) {
    this.root = artifactsRoot;
    this.cacheDir = `${artifactsRoot}/cache`;
    this.tmpDir = `${this.cacheDir}/.tmp`;
    this.locksDir = `${this.cacheDir}/.locks`;
    this.trashDir = `${this.cacheDir}/.trash`;
  }

  async init(): Promise<void> {
    for (const d of [this.tmpDir, this.locksDir, this.trashDir]) {
      await Deno.mkdir(d, { recursive: true });
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

  /** The manifest of a committed entry, or null when there is none. */
  async readManifest(key: string): Promise<Manifest | null> {
    try {
      return JSON.parse(await Deno.readTextFile(`${this.entryDir(key)}/${MANIFEST}`));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
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
    if (!keepExisting) await Deno.remove(dir, { recursive: true }).catch(ignoreNotFound);
    await Deno.mkdir(dir, { recursive: true });
    return dir;
  }

  async discardWorkDir(key: string): Promise<void> {
    await Deno.remove(this.workDir(key), { recursive: true }).catch(ignoreNotFound);
  }

  /**
   * Hash and fsync every output in the work folder, write the manifest and rename the
   * folder into the cache. An existing entry (a forced rerun) is swapped out.
   */
  async commit(
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
    const digest = hashJson(Object.entries(outputs).map(([p, o]) => [p, o.sha256]));
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
