// Hashing for the cache: canonical JSON (so equal data always hashes equal, whatever
// the key order) and streaming SHA-256 of files. Files are hashed with node:crypto's
// incremental hasher, which in Deno is native code using the CPU's SHA instructions:
// faster than coreutils' sha256sum on the same file (see bench/pipeline.ts), so plain
// single-stream SHA-256 is used and no tree hash is needed.
import { createHash } from "node:crypto";

/** JSON with object keys sorted at every level; `undefined` members are dropped. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === "object" && !(value instanceof Date)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = sortKeys(v);
    }
    return out;
  }
  return value;
}

/** Hex SHA-256 of a string or bytes. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Hex SHA-256 of canonical JSON of `value`. */
export function hashJson(value: unknown): string {
  return sha256Hex(canonicalJson(value));
}

const READ_CHUNK = 4 << 20;

/** Streaming SHA-256 of a file: its hex digest and size in bytes. */
export async function hashFile(path: string): Promise<{ sha256: string; bytes: number }> {
  const file = await Deno.open(path, { read: true });
  try {
    const hasher = createHash("sha256");
    const buffer = new Uint8Array(READ_CHUNK);
    let bytes = 0;
    while (true) {
      const n = await file.read(buffer);
      if (n === null) break;
      hasher.update(buffer.subarray(0, n));
      bytes += n;
    }
    return { sha256: hasher.digest("hex"), bytes };
  } finally {
    file.close();
  }
}
