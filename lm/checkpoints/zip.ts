// The entries of a zip archive held in memory, as torch.save writes it: stored
// (uncompressed) entries, ZIP64 for archives over 4 GiB. Just enough to find each
// entry's bytes; anything compressed is refused with a clear error.

export interface ZipEntry {
  name: string;
  method: number;
  size: number;
  dataOffset: number;
}

function u16(b: Uint8Array, o: number): number {
  return b[o] | (b[o + 1] << 8);
}
function u32(b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)) + b[o + 3] * 0x1000000;
}
function u64(b: Uint8Array, o: number): number {
  return u32(b, o) + u32(b, o + 4) * 0x100000000;
}

/** The entries of a zip archive held in memory. */
export function readZipEntries(buf: Uint8Array, where: string): Map<string, ZipEntry> {
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 22 - 65535); i--) {
    if (u32(buf, i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) {
    throw new Error(
      `${where}: not a zip archive (torch.save's format since PyTorch 1.6); the legacy format is not supported`,
    );
  }
  let count = u16(buf, eocd + 10);
  let cdOffset = u32(buf, eocd + 16);
  if (cdOffset === 0xffffffff || count === 0xffff) {
    const locator = eocd - 20;
    if (locator < 0 || u32(buf, locator) !== 0x07064b50) {
      throw new Error(`${where}: ZIP64 archive without its end-of-directory locator`);
    }
    const z64 = u64(buf, locator + 8);
    if (u32(buf, z64) !== 0x06064b50) throw new Error(`${where}: bad ZIP64 end of directory`);
    count = u64(buf, z64 + 32);
    cdOffset = u64(buf, z64 + 48);
  }
  const entries = new Map<string, ZipEntry>();
  const utf8 = new TextDecoder();
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (u32(buf, p) !== 0x02014b50) throw new Error(`${where}: corrupt zip central directory`);
    const method = u16(buf, p + 10);
    let compSize = u32(buf, p + 20);
    let size = u32(buf, p + 24);
    const nameLen = u16(buf, p + 28);
    const extraLen = u16(buf, p + 30);
    const commentLen = u16(buf, p + 32);
    let localOffset = u32(buf, p + 42);
    const name = utf8.decode(buf.subarray(p + 46, p + 46 + nameLen));
    // ZIP64 extra field: the 64-bit values of the fields saturated at 0xffffffff, in order.
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = u16(buf, e);
      const len = u16(buf, e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (size === 0xffffffff) [size, q] = [u64(buf, q), q + 8];
        if (compSize === 0xffffffff) [compSize, q] = [u64(buf, q), q + 8];
        if (localOffset === 0xffffffff) localOffset = u64(buf, q);
      }
      e += 4 + len;
    }
    if (u32(buf, localOffset) !== 0x04034b50) {
      throw new Error(`${where}: corrupt zip local header for ${name}`);
    }
    const dataOffset = localOffset + 30 + u16(buf, localOffset + 26) + u16(buf, localOffset + 28);
    if (dataOffset + compSize > buf.length) {
      throw new Error(`${where}: zip entry ${name} runs past the end of the file (truncated?)`);
    }
    entries.set(name, { name, method, size, dataOffset });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

export function entryBytes(buf: Uint8Array, entry: ZipEntry, where: string): Uint8Array {
  if (entry.method !== 0) {
    throw new Error(
      `${where}: zip entry ${entry.name} is compressed (method ${entry.method}); torch.save stores entries uncompressed`,
    );
  }
  return buf.subarray(entry.dataOffset, entry.dataOffset + entry.size);
}
