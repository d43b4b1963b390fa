// PyTorch `pytorch_model.bin` files (torch.save's zip format), read as tensors without
// executing any pickle code, and converted to safetensors.
//
// Why a hand-written unpickler instead of npm `pickleparser`: a torch checkpoint's
// pickle is only a dict of `torch._utils._rebuild_tensor_v2(storage, offset, size,
// stride, ...)` calls whose storages are persistent ids pointing at zip entries
// (`<archive>/data/<key>`). pickleparser turns unknown classes into placeholder objects
// and leaves persistent ids to a hook, so we would still have to recognise the rebuild
// calls, resolve storages and check strides ourselves, and its broad opcode and class
// support is attack surface we do not need. The restricted reader below knows the ~40
// opcodes torch.save emits, allows exactly the globals a state dict uses (tensor
// rebuilds, storage types, OrderedDict) and refuses anything else by name: it never
// calls, imports or evaluates anything from the file.
//
// The zip container is read by ./zip.ts.
import type { DType } from "./dtypes.ts";
import { writeSafetensors } from "./safetensors.ts";
import { DTYPE_BYTES, numelOf } from "./dtypes.ts";
import { entryBytes, readZipEntries } from "./zip.ts";

/** One tensor read from a .bin: its raw little-endian bytes, contiguous. */
export interface RawTensor {
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

// ---------------------------------------------------------------------------------------
// The restricted unpickler

/** torch storage class -> safetensors dtype. */
const STORAGE_DTYPES: Record<string, DType> = {
  HalfStorage: "F16",
  FloatStorage: "F32",
  DoubleStorage: "F64",
  BFloat16Storage: "BF16",
  LongStorage: "I64",
  IntStorage: "I32",
  ShortStorage: "I16",
  CharStorage: "I8",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
};

class Global {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}
class StorageRef {
  constructor(readonly dtype: DType, readonly key: string, readonly numel: number) {}
}
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: number[],
    readonly stride: number[],
  ) {}
}
const MARK = Symbol("mark");
type Value = unknown;

const ALLOWED_GLOBALS = new Set([
  "torch._utils._rebuild_tensor_v2",
  "torch._utils._rebuild_tensor",
  "torch._utils._rebuild_parameter",
  "collections.OrderedDict",
  ...Object.keys(STORAGE_DTYPES).map((s) => `torch.${s}`),
]);

function asInts(v: Value, what: string): number[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== "number")) {
    throw new Error(`torch pickle: ${what} is not a tuple of integers`);
  }
  return v as number[];
}

/** Apply an allowed callable (only the ones above ever get here). */
function reduce(fn: Global, args: Value[]): Value {
  switch (fn.qualified) {
    case "collections.OrderedDict":
      return new Map<Value, Value>();
    case "torch._utils._rebuild_tensor":
    case "torch._utils._rebuild_tensor_v2": {
      const [storage, offset, size, stride] = args;
      if (!(storage instanceof StorageRef) || typeof offset !== "number") {
        throw new Error("torch pickle: a tensor rebuild without a storage");
      }
      return new TensorRef(storage, offset, asInts(size, "size"), asInts(stride, "stride"));
    }
    case "torch._utils._rebuild_parameter":
      if (!(args[0] instanceof TensorRef)) {
        throw new Error("torch pickle: a parameter of no tensor");
      }
      return args[0];
  }
  throw new Error(`torch pickle: ${fn.qualified} cannot be called`);
}

/** Parse a state-dict pickle into plain values; tensors come back as TensorRef. */
function unpickle(data: Uint8Array, where: string): Value {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder();
  const stack: Value[] = [];
  const memo = new Map<number, Value>();
  let p = 0;
  const popMark = (): Value[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) throw new Error(`${where}: pickle MARK missing`);
    const items = stack.splice(i);
    items.shift();
    return items;
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, p);
    const s = utf8.decode(data.subarray(p, end));
    p = end + 1;
    return s;
  };
  const text = (n: number): string => {
    const s = utf8.decode(data.subarray(p, p + n));
    p += n;
    return s;
  };
  const setItems = (target: Value, items: Value[]) => {
    for (let i = 0; i + 1 < items.length; i += 2) {
      if (target instanceof Map) target.set(items[i], items[i + 1]);
      else if (target && typeof target === "object") {
        (target as Record<string, Value>)[String(items[i])] = items[i + 1];
      } else throw new Error(`${where}: pickle SETITEM on a non-dict`);
    }
  };
  const global = (module: string, name: string): Global => {
    const g = new Global(module, name);
    if (!ALLOWED_GLOBALS.has(g.qualified)) {
      throw new Error(
        `${where}: refused: the pickle references ${g.qualified}, which is not part of a tensor state dict (pickle code is never executed)`,
      );
    }
    return g;
  };
  for (;;) {
    if (p >= data.length) throw new Error(`${where}: pickle ends without STOP (truncated?)`);
    const op = data[p++];
    switch (op) {
      case 0x80: // PROTO
        p += 1;
        break;
      case 0x95: // FRAME
        p += 8;
        break;
      case 0x2e: // STOP
        return stack.pop();
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x74: // TUPLE
        stack.push(popMark());
        break;
      case 0x85: // TUPLE1
        stack.push([stack.pop()]);
        break;
      case 0x86: { // TUPLE2
        const b = stack.pop();
        stack.push([stack.pop(), b]);
        break;
      }
      case 0x87: { // TUPLE3
        const c = stack.pop();
        const b = stack.pop();
        stack.push([stack.pop(), b, c]);
        break;
      }
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x64: { // DICT
        const d = new Map();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x61: { // APPEND
        const v = stack.pop();
        (stack[stack.length - 1] as Value[]).push(v);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        (stack[stack.length - 1] as Value[]).push(...items);
        break;
      }
      case 0x73: { // SETITEM
        const v = stack.pop();
        const k = stack.pop();
        setItems(stack[stack.length - 1], [k, v]);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        setItems(stack[stack.length - 1], items);
        break;
      }
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4b: // BININT1
        stack.push(data[p]);
        p += 1;
        break;
      case 0x4d: // BININT2
        stack.push(view.getUint16(p, true));
        p += 2;
        break;
      case 0x4a: // BININT
        stack.push(view.getInt32(p, true));
        p += 4;
        break;
      case 0x8a: { // LONG1
        const n = data[p++];
        let v = 0;
        for (let i = n - 1; i >= 0; i--) v = v * 256 + data[p + i];
        if (n > 0 && data[p + n - 1] & 0x80) v -= 2 ** (8 * n);
        p += n;
        stack.push(v);
        break;
      }
      case 0x47: // BINFLOAT
        stack.push(view.getFloat64(p, false));
        p += 8;
        break;
      case 0x58: // BINUNICODE
        p += 4;
        stack.push(text(view.getUint32(p - 4, true)));
        break;
      case 0x8c: // SHORT_BINUNICODE
        p += 1;
        stack.push(text(data[p - 1]));
        break;
      case 0x8d: // BINUNICODE8
        p += 8;
        stack.push(text(Number(view.getBigUint64(p - 8, true))));
        break;
      case 0x55: // SHORT_BINSTRING
        p += 1;
        stack.push(text(data[p - 1]));
        break;
      case 0x54: // BINSTRING
        p += 4;
        stack.push(text(view.getUint32(p - 4, true)));
        break;
      case 0x71: // BINPUT
        memo.set(data[p++], stack[stack.length - 1]);
        break;
      case 0x72: // LONG_BINPUT
        memo.set(view.getUint32(p, true), stack[stack.length - 1]);
        p += 4;
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, stack[stack.length - 1]);
        break;
      case 0x68: // BINGET
        stack.push(memo.get(data[p++]));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memo.get(view.getUint32(p, true)));
        p += 4;
        break;
      case 0x63: { // GLOBAL "module\nname\n"
        const module = line();
        stack.push(global(module, line()));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = stack.pop();
        const module = stack.pop();
        stack.push(global(String(module), String(name)));
        break;
      }
      case 0x51: { // BINPERSID: ('storage', storage_type, key, location, numel)
        const pid = stack.pop();
        if (!Array.isArray(pid) || pid[0] !== "storage" || !(pid[1] instanceof Global)) {
          throw new Error(`${where}: unknown persistent id in the pickle`);
        }
        const dtype = STORAGE_DTYPES[pid[1].name];
        if (!dtype) throw new Error(`${where}: unsupported storage type ${pid[1].qualified}`);
        stack.push(new StorageRef(dtype, String(pid[2]), Number(pid[4])));
        break;
      }
      case 0x52: { // REDUCE
        const args = stack.pop();
        const fn = stack.pop();
        if (!(fn instanceof Global)) throw new Error(`${where}: pickle REDUCE of a non-callable`);
        stack.push(reduce(fn, args as Value[]));
        break;
      }
      case 0x62: // BUILD: object state (OrderedDict._metadata); not needed for tensors
        stack.pop();
        break;
      default:
        throw new Error(
          `${where}: unsupported pickle opcode 0x${op.toString(16)} at byte ${p - 1}`,
        );
    }
  }
}

// ---------------------------------------------------------------------------------------
// Tensors

/** Contiguous bytes of a (possibly strided) tensor view into its storage. */
function gather(storage: Uint8Array, t: TensorRef, itemSize: number): Uint8Array {
  const n = numelOf(t.shape);
  const out = new Uint8Array(n * itemSize);
  const contiguous = t.shape.every((_, i) =>
    t.shape[i] === 1 || t.stride[i] === numelOf(t.shape.slice(i + 1))
  );
  if (contiguous) {
    out.set(storage.subarray(t.offset * itemSize, (t.offset + n) * itemSize));
    return out;
  }
  const index = new Array(t.shape.length).fill(0);
  for (let i = 0; i < n; i++) {
    let at = t.offset;
    for (let d = 0; d < index.length; d++) at += index[d] * t.stride[d];
    out.set(storage.subarray(at * itemSize, (at + 1) * itemSize), i * itemSize);
    for (let d = index.length - 1; d >= 0; d--) {
      if (++index[d] < t.shape[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

/** Every tensor of a torch.save'd state dict (zip format), by name. */
export function parseTorchBin(
  buf: Uint8Array,
  where = "pytorch_model.bin",
): Map<string, RawTensor> {
  const entries = readZipEntries(buf, where);
  const pkl = [...entries.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (!pkl) throw new Error(`${where}: no data.pkl in the archive (not a torch.save file)`);
  const prefix = pkl.slice(0, -"data.pkl".length);
  const root = unpickle(entryBytes(buf, entries.get(pkl)!, where), where);
  const dict = root instanceof Map ? root : null;
  if (!dict) throw new Error(`${where}: the pickle is not a state dict (a dict of tensors)`);
  const out = new Map<string, RawTensor>();
  for (const [name, value] of dict) {
    if (!(value instanceof TensorRef)) continue; // e.g. nested metadata: not a tensor
    const entry = entries.get(`${prefix}data/${value.storage.key}`);
    if (!entry) throw new Error(`${where}: storage ${value.storage.key} of ${name} is missing`);
    const itemSize = DTYPE_BYTES[value.storage.dtype];
    const storage = entryBytes(buf, entry, where);
    if (storage.length < value.storage.numel * itemSize) {
      throw new Error(`${where}: storage of ${name} is shorter than declared (truncated?)`);
    }
    out.set(String(name), {
      dtype: value.storage.dtype,
      shape: value.shape,
      data: gather(storage, value, itemSize),
    });
  }
  return out;
}

/** Read a .bin file, or every shard named by a `pytorch_model.bin.index.json`. */
export async function readTorchBin(path: string): Promise<Map<string, RawTensor>> {
  if (path.endsWith(".index.json")) {
    const index = JSON.parse(await Deno.readTextFile(path)) as {
      weight_map?: Record<string, string>;
    };
    if (!index.weight_map) throw new Error(`${path}: no weight_map`);
    const dir = path.slice(0, path.lastIndexOf("/") + 1);
    const out = new Map<string, RawTensor>();
    for (const shard of [...new Set(Object.values(index.weight_map))].sort()) {
      for (const [k, v] of await readTorchBin(`${dir}${shard}`)) out.set(k, v);
    }
    return out;
  }
  return parseTorchBin(await Deno.readFile(path), path);
}

/**
 * Convert a .bin (or sharded .bin index) into one safetensors file, dtypes kept. Tensors
 * for which `keep(name)` is false (e.g. old causal-mask buffers) are left out.
 */
export async function torchBinToSafetensors(
  src: string,
  dest: string,
  keep: (name: string) => boolean = () => true,
): Promise<void> {
  const tensors = await readTorchBin(src);
  const chosen = [...tensors.entries()].filter(([name]) => keep(name));
  await writeSafetensors(
    dest,
    Object.fromEntries(
      chosen.map(([name, t]) => [name, { dtype: t.dtype, shape: t.shape, data: t.data }]),
    ),
    { format: "pt" },
  );
}
