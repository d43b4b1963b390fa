// Hugging Face revisions (`step{N}` branches, as Pythia publishes them) as checkpoints of
// a series: which revisions a spec names, which of a revision's files are its weights,
// and one safetensors file per revision in the layout the average and evaluate steps
// read (every parameter, dtype kept; non-parameter buffers such as causal masks and
// rotary tables left out, so that checkpoints saved by different code versions average
// together).
import { CheckpointReader } from "../checkpoints/sharded.ts";
import {
  readSafetensorsHeader,
  SafetensorsWriter,
  type TensorSpec,
} from "../checkpoints/safetensors.ts";
import { torchBinToSafetensors } from "../checkpoints/torch_bin.ts";
import { isNeoxBuffer } from "../model/neox.ts";

/** Revisions by name, or a range of `step{N}` revisions. */
export interface RevisionSpec {
  revisions?: string[];
  from?: number;
  to?: number;
  every?: number;
}

/** The revision names a spec stands for, in order. */
export function selectRevisions(spec: RevisionSpec): string[] {
  const range = spec.from !== undefined || spec.to !== undefined || spec.every !== undefined;
  if (spec.revisions && range) {
    throw new Error("hub: give either `revisions` or `from`/`to`/`every`, not both");
  }
  if (spec.revisions) {
    if (spec.revisions.length === 0) throw new Error("hub: `revisions` is empty");
    if (new Set(spec.revisions).size !== spec.revisions.length) {
      throw new Error(`hub: a revision is listed twice in ${spec.revisions.join(", ")}`);
    }
    return spec.revisions;
  }
  if (spec.from === undefined || spec.to === undefined || spec.every === undefined) {
    throw new Error("hub: give `revisions: [step1000, ...]` or all of `from`, `to`, `every`");
  }
  if (spec.to < spec.from) throw new Error(`hub: to ${spec.to} is before from ${spec.from}`);
  const out: string[] = [];
  for (let s = spec.from; s <= spec.to; s += spec.every) out.push(`step${s}`);
  return out;
}

/** The training step a revision name stands for (`step21000` -> 21000). */
export function stepOfRevision(revision: string): number {
  const m = /^step(\d+)$/.exec(revision);
  if (!m) {
    throw new Error(
      `hub: revision "${revision}" does not name a training step (expected step<N>, as Pythia's branches)`,
    );
  }
  return Number(m[1]);
}

export type WeightFormat = "safetensors" | "safetensors-sharded" | "bin" | "bin-sharded";

/** The file (or index) holding a revision's weights, preferring safetensors. */
export function chooseWeights(
  files: string[],
  where: string,
): { format: WeightFormat; entry: string } {
  const has = new Set(files);
  if (has.has("model.safetensors")) return { format: "safetensors", entry: "model.safetensors" };
  if (has.has("model.safetensors.index.json")) {
    return { format: "safetensors-sharded", entry: "model.safetensors.index.json" };
  }
  if (has.has("pytorch_model.bin")) return { format: "bin", entry: "pytorch_model.bin" };
  if (has.has("pytorch_model.bin.index.json")) {
    return { format: "bin-sharded", entry: "pytorch_model.bin.index.json" };
  }
  throw new Error(
    `hub: ${where} has no weights (model.safetensors, pytorch_model.bin or their .index.json); files: ${
      files.join(", ")
    }`,
  );
}

/** The shard files an index json names. */
export async function shardsOfIndex(indexPath: string): Promise<string[]> {
  const index = JSON.parse(await Deno.readTextFile(indexPath)) as {
    weight_map?: Record<string, string>;
  };
  if (!index.weight_map) throw new Error(`hub: ${indexPath} has no weight_map`);
  const shards = [...new Set(Object.values(index.weight_map))].sort();
  for (const s of shards) {
    if (s.includes("/") || s.includes("..")) throw new Error(`hub: bad shard name ${s} in index`);
  }
  return shards;
}

/** Buffers that are not parameters: GPT-NeoX masks and rotary tables, GPT-2 attention masks. */
export function isBuffer(name: string): boolean {
  return isNeoxBuffer(name) || /(^|\.)attn\.(masked_)?bias$/.test(name);
}

/**
 * Write a revision's weights (`entry` inside `folder`, any format) as one safetensors
 * file at `dest`, buffers left out. A single safetensors file without buffers is linked.
 */
export async function writeCheckpoint(
  folder: string,
  format: WeightFormat,
  entry: string,
  dest: string,
): Promise<void> {
  const src = `${folder}/${entry}`;
  const keep = (name: string) => !isBuffer(name);
  if (format === "bin" || format === "bin-sharded") {
    await torchBinToSafetensors(src, dest, keep);
    return;
  }
  if (format === "safetensors") {
    const header = await readSafetensorsHeader(src);
    if (header.tensors.every((t) => keep(t.name))) {
      await Deno.link(src, dest).catch(() => Deno.copyFile(src, dest));
      return;
    }
  }
  const reader = await CheckpointReader.open(src);
  try {
    const names = [...reader.tensors.keys()].filter(keep).sort();
    const specs: [string, TensorSpec][] = names.map((n) => {
      const t = reader.tensors.get(n)!;
      return [n, { dtype: t.dtype, shape: t.shape }];
    });
    const writer = await SafetensorsWriter.create(dest, specs, { format: "pt" });
    try {
      for (const n of names) await writer.write(n, await reader.readBytes(n));
    } catch (e) {
      await writer.abort();
      throw e;
    }
    await writer.close();
  } finally {
    reader.close();
  }
}
