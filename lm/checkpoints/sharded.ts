// Checkpoints as Hugging Face stores them: one safetensors file, or a sharded model
// (`model.safetensors.index.json` { metadata, weight_map: {name: file} } plus shards),
// read through one reader that finds each tensor in its shard. The file format itself is
// in safetensors.ts; this module only knows where the tensors of a checkpoint live.
import { readSafetensorsHeader, SafetensorsReader, type TensorEntry } from "./safetensors.ts";

export const INDEX_SUFFIX = ".safetensors.index.json";

/** A tensor of a checkpoint: where it lives (which shard) and what it is. */
export interface CheckpointTensor extends TensorEntry {
  /** Name as stored in the file (before `rename`). */
  storedName: string;
  file: string;
}

/**
 * A checkpoint that may be sharded. `path` is a `.safetensors` file, a
 * `*.safetensors.index.json`, or a folder holding `model.safetensors` or one index.
 * `rename` maps stored names to the names callers use (e.g. stripping `module.`).
 */
export class CheckpointReader {
  private readers = new Map<string, SafetensorsReader>();
  private constructor(
    readonly path: string,
    readonly tensors: Map<string, CheckpointTensor>,
    readonly metadata: Record<string, string>,
  ) {}

  static async open(
    path: string,
    rename: (name: string) => string = (n) => n,
  ): Promise<CheckpointReader> {
    const resolved = await resolveCheckpointPath(path);
    const tensors = new Map<string, CheckpointTensor>();
    const add = (t: TensorEntry, file: string) => {
      const name = rename(t.name);
      const prior = tensors.get(name);
      if (prior) {
        throw new Error(
          `${resolved}: tensors "${prior.storedName}" and "${t.name}" both stand for "${name}"`,
        );
      }
      tensors.set(name, { ...t, name, storedName: t.name, file });
    };
    if (!resolved.endsWith(INDEX_SUFFIX)) {
      const header = await readSafetensorsHeader(resolved);
      for (const t of header.tensors) add(t, resolved);
      return new CheckpointReader(resolved, tensors, header.metadata);
    }
    let index: { metadata?: Record<string, unknown>; weight_map?: Record<string, string> };
    try {
      index = JSON.parse(await Deno.readTextFile(resolved));
    } catch (e) {
      if (e instanceof SyntaxError) throw new Error(`${resolved}: index is not valid JSON`);
      throw e;
    }
    if (!index.weight_map || typeof index.weight_map !== "object") {
      throw new Error(`${resolved}: index has no "weight_map" object`);
    }
    const folder = resolved.slice(0, resolved.lastIndexOf("/") + 1) || "./";
    const byShard = new Map<string, string[]>();
    for (const [name, shard] of Object.entries(index.weight_map)) {
      const list = byShard.get(shard) ?? [];
      list.push(name);
      byShard.set(shard, list);
    }
    for (const [shard, names] of [...byShard.entries()].sort()) {
      const shardPath = `${folder}${shard}`;
      const header = await readSafetensorsHeader(shardPath);
      const inShard = new Map(header.tensors.map((t) => [t.name, t]));
      for (const name of names) {
        const t = inShard.get(name);
        if (!t) throw new Error(`${resolved}: tensor "${name}" is not in its shard ${shardPath}`);
        add(t, shardPath);
      }
    }
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(index.metadata ?? {})) metadata[k] = String(v);
    return new CheckpointReader(resolved, tensors, metadata);
  }

  /** Raw bytes of one tensor (by caller-facing name), into `into` when it is large enough. */
  async readBytes(name: string, into?: Uint8Array): Promise<Uint8Array> {
    const [reader, t] = await this.shardOf(name);
    return await reader.readBytes(t.storedName, into);
  }

  /** `into.length` bytes of one tensor starting `byteOffset` bytes into it. */
  async readSlice(name: string, byteOffset: number, into: Uint8Array): Promise<Uint8Array> {
    const [reader, t] = await this.shardOf(name);
    return await reader.readSlice(t.storedName, byteOffset, into);
  }

  /** The open shard holding tensor `name` (opened on first use, one handle per shard). */
  private async shardOf(name: string): Promise<[SafetensorsReader, CheckpointTensor]> {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`${this.path}: no tensor named "${name}"`);
    let reader = this.readers.get(t.file);
    if (!reader) {
      reader = await SafetensorsReader.open(t.file);
      this.readers.set(t.file, reader);
    }
    return [reader, t];
  }

  close(): void {
    for (const r of this.readers.values()) r.close();
    this.readers.clear();
  }
}

/** A file path as given, or the checkpoint inside a folder (model.safetensors or one index). */
export async function resolveCheckpointPath(path: string): Promise<string> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`${path}: not found`);
    throw e;
  }
  if (!stat.isDirectory) return path;
  const names: string[] = [];
  for await (const e of Deno.readDir(path)) if (e.isFile) names.push(e.name);
  const indexes = names.filter((n) => n.endsWith(INDEX_SUFFIX));
  if (indexes.length === 1) return `${path}/${indexes[0]}`;
  if (indexes.length > 1) {
    throw new Error(`${path}: several safetensors index files (${indexes.sort().join(", ")})`);
  }
  if (names.includes("model.safetensors")) return `${path}/model.safetensors`;
  const files = names.filter((n) => n.endsWith(".safetensors"));
  if (files.length === 1) return `${path}/${files[0]}`;
  throw new Error(
    `${path}: expected model.safetensors, one *.safetensors file or one *${INDEX_SUFFIX}, found ${files.length} safetensors files`,
  );
}
