// Tests of the safetensors reader/writer against files and values produced by numpy/torch
// (tests/fixtures/averaging/generate.py), and of every malformed-file error.
import assert from "node:assert/strict";
import {
  readSafetensorsF32,
  readSafetensorsHeader,
  SafetensorsReader,
  SafetensorsWriter,
  writeSafetensors,
} from "../../../lm/checkpoints/safetensors.ts";
import { decodeToF32, encodeFloats } from "../../../lm/checkpoints/dtypes.ts";
import { CheckpointReader } from "../../../lm/checkpoints/sharded.ts";

const FIXTURE = new URL("../../fixtures/averaging/", import.meta.url).pathname;
const PYTHON = "/usr/bin/python3";

async function expectedTensor(name: string): Promise<{ bytes: Uint8Array; dtype: string }> {
  const reader = await SafetensorsReader.open(`${FIXTURE}expected.safetensors`);
  try {
    const entry = reader.byName.get(name);
    assert.ok(entry, `fixture lacks ${name}`);
    return { bytes: await reader.readBytes(name), dtype: entry.dtype };
  } finally {
    reader.close();
  }
}

async function expectedF64(name: string): Promise<Float64Array> {
  const { bytes } = await expectedTensor(name);
  return new Float64Array(bytes.buffer, bytes.byteOffset, bytes.length / 8);
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "safetensors-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("decodes F32, F16 and BF16 members written by numpy/torch exactly", async () => {
  const mixed = await readSafetensorsF32(`${FIXTURE}series-mixed/step-000500.safetensors`);
  assert.equal(mixed.metadata.step, "500");
  const names = Object.keys(mixed.tensors).sort();
  assert.equal(names.length, 4, "the I64 tensor is skipped by readSafetensorsF32");
  for (const name of names) {
    const want = await expectedF64(`member/mixed/500/${name}`);
    assert.deepEqual(Array.from(mixed.tensors[name].data), Array.from(want), name);
  }
  assert.deepEqual(mixed.tensors["transformer.wte.weight"].shape, [12, 8]);
  const bf16 = await readSafetensorsF32(`${FIXTURE}series-bf16/step-000150.safetensors`);
  const want = await expectedF64("member/bf16/150/lm_head.weight");
  assert.deepEqual(Array.from(bf16.tensors["lm_head.weight"].data), Array.from(want));
});

Deno.test("encodes F16 and BF16 with the same rounding as numpy and torch", async () => {
  const input = await expectedF64("encode/input");
  for (const dtype of ["F16", "BF16"] as const) {
    const want = new Uint16Array(
      (await expectedTensor(`encode/${dtype.toLowerCase()}`)).bytes.slice().buffer,
    );
    const got = new Uint16Array(encodeFloats(input, dtype).buffer);
    for (let i = 0; i < input.length; i++) {
      const isNaN = Number.isNaN(input[i]);
      if (isNaN) {
        assert.ok(
          Number.isNaN(decodeToF32(encodeFloats(input.subarray(i, i + 1), dtype), dtype)[0]),
        );
      } else {assert.equal(
          got[i],
          want[i],
          `${dtype} of ${input[i]}: got 0x${got[i].toString(16)}, want 0x${want[i].toString(16)}`,
        );}
    }
  }
});

Deno.test("round trip of every dtype, metadata, 8-aligned data, atomic write", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/rt.safetensors`;
    const f32 = new Float32Array([1.5, -2.25, 3e-5, 7]);
    await writeSafetensors(path, {
      a: { dtype: "F32", shape: [2, 2], data: f32 },
      b: { dtype: "F64", shape: [3], data: new Float64Array([0.1, 0.2, 0.3]) },
      c: { dtype: "I64", shape: [2], data: new BigInt64Array([5n, -9n]) },
      d: { dtype: "BF16", shape: [4], data: encodeFloats(f32, "BF16") },
      e: { dtype: "I32", shape: [1, 1], data: new Int32Array([42]) },
    }, { note: "hi" });
    const entries = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.deepEqual(entries, ["rt.safetensors"], "no temp file left behind");
    const header = await readSafetensorsHeader(path);
    assert.equal(header.dataStart % 8, 0);
    assert.deepEqual(header.metadata, { note: "hi" });
    const got = await readSafetensorsF32(path);
    assert.deepEqual(Array.from(got.tensors.a.data), Array.from(f32));
    assert.deepEqual(Array.from(got.tensors.b.data), [0.1, 0.2, 0.3].map(Math.fround));
    assert.deepEqual(Array.from(got.tensors.d.data), [
      1.5,
      -2.25,
      decodeToF32(encodeFloats(new Float32Array([3e-5]), "BF16"), "BF16")[0],
      7,
    ]);
    const reader = await SafetensorsReader.open(path);
    const c = await reader.readBytes("c");
    assert.deepEqual(Array.from(new BigInt64Array(c.slice().buffer)), [5n, -9n]);
    reader.close();
  });
});

/** Write a file by hand so its header can lie. */
async function writeRaw(path: string, header: unknown, dataBytes: number): Promise<void> {
  let json = JSON.stringify(header);
  while (json.length % 8) json += " ";
  const bytes = new Uint8Array(8 + json.length + dataBytes);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.length), true);
  bytes.set(new TextEncoder().encode(json), 8);
  await Deno.writeFile(path, bytes);
}

Deno.test("rejects truncated files and headers that lie, naming file and tensor", async () => {
  await withTempDir(async (dir) => {
    const good = `${dir}/good.safetensors`;
    await writeSafetensors(good, {
      w: { dtype: "F32", shape: [4, 4], data: new Float32Array(16) },
      b: { dtype: "F32", shape: [4], data: new Float32Array(4) },
    });
    const full = await Deno.readFile(good);
    const cases: [string, (p: string) => Promise<void>, RegExp][] = [
      [
        "cut",
        (p) => Deno.writeFile(p, full.subarray(0, full.length - 3)),
        /truncated file: tensors need 80 data bytes but only 77/,
      ],
      [
        "cut-header",
        (p) => Deno.writeFile(p, full.subarray(0, 20)),
        /truncated file: header length/,
      ],
      [
        "tiny",
        (p) => Deno.writeFile(p, new Uint8Array(5)),
        /not a safetensors file \(only 5 bytes/,
      ],
      [
        "size",
        (p) => writeRaw(p, { w: { dtype: "F32", shape: [4, 4], data_offsets: [0, 60] } }, 60),
        /header lies about offsets: tensor "w" data_offsets \[0, 60\] span 60 bytes but shape \[4,4\] F32 needs 64/,
      ],
      [
        "overlap",
        (p) =>
          writeRaw(p, {
            w: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
            v: { dtype: "F32", shape: [4], data_offsets: [8, 24] },
          }, 24),
        /tensor "v" overlaps tensor "w"/,
      ],
      [
        "beyond",
        (p) => writeRaw(p, { w: { dtype: "F32", shape: [8], data_offsets: [0, 32] } }, 16),
        /truncated file: tensors need 32 data bytes but only 16/,
      ],
      [
        "trailing",
        (p) => writeRaw(p, { w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, 16),
        /8 bytes after the last tensor/,
      ],
      [
        "dtype",
        (p) => writeRaw(p, { w: { dtype: "Q4", shape: [2], data_offsets: [0, 8] } }, 8),
        /tensor "w" has dtype "Q4"/,
      ],
      ["json", async (p) => {
        const b = full.slice();
        b[9] = 0x7b;
        b[10] = 0x7b;
        await Deno.writeFile(p, b);
      }, /header is not valid JSON/],
    ];
    for (const [name, make, message] of cases) {
      const path = `${dir}/${name}.safetensors`;
      await make(path);
      await assert.rejects(() => SafetensorsReader.open(path), (e: Error) => {
        assert.match(e.message, message, name);
        assert.ok(e.message.startsWith(path), `${name}: message names the file: ${e.message}`);
        return true;
      });
    }
  });
});

Deno.test("sharded checkpoints: index + shards read as one, prefixes renamed", async () => {
  await withTempDir(async (dir) => {
    await writeSafetensors(`${dir}/model-00001-of-00002.safetensors`, {
      "module.a": { dtype: "F32", shape: [2], data: new Float32Array([1, 2]) },
    });
    await writeSafetensors(`${dir}/model-00002-of-00002.safetensors`, {
      "module.b": { dtype: "F16", shape: [1], data: encodeFloats(new Float32Array([0.5]), "F16") },
      "module.unlisted": { dtype: "F32", shape: [1], data: new Float32Array([9]) },
    });
    const index = {
      metadata: { total_size: 10 },
      weight_map: {
        "module.a": "model-00001-of-00002.safetensors",
        "module.b": "model-00002-of-00002.safetensors",
      },
    };
    await Deno.writeTextFile(`${dir}/model.safetensors.index.json`, JSON.stringify(index));
    const ckpt = await CheckpointReader.open(dir, (n) => n.replace(/^module\./, ""));
    assert.deepEqual([...ckpt.tensors.keys()].sort(), ["a", "b"]);
    assert.equal(ckpt.metadata.total_size, "10");
    assert.deepEqual(Array.from(decodeToF32(await ckpt.readBytes("b"), "F16")), [0.5]);
    assert.deepEqual(Array.from(decodeToF32(await ckpt.readBytes("a"), "F32")), [1, 2]);
    ckpt.close();

    index.weight_map["module.c" as "module.a"] = "model-00001-of-00002.safetensors";
    await Deno.writeTextFile(`${dir}/model.safetensors.index.json`, JSON.stringify(index));
    await assert.rejects(() => CheckpointReader.open(dir), /tensor "module.c" is not in its shard/);
    await assert.rejects(
      () => CheckpointReader.open(`${dir}/model-00002-of-00002.safetensors`, () => "same"),
      /tensors "module.b" and "module.unlisted" both stand for "same"/,
    );
  });
});

Deno.test("files we write load in the numpy reference reader", async (t) => {
  try {
    await Deno.stat(PYTHON);
  } catch {
    console.log(`skipped: ${PYTHON} not found, no reference reader to run`);
    return;
  }
  await withTempDir(async (dir) => {
    const path = `${dir}/ours.safetensors`;
    const values = new Float32Array([0.1, -3.5, 1e-3, 2.75, 100, -0.0625]);
    await writeSafetensors(path, {
      "x.f32": { dtype: "F32", shape: [2, 3], data: values },
      "x.bf16": { dtype: "BF16", shape: [6], data: encodeFloats(values, "BF16") },
      "x.f16": { dtype: "F16", shape: [3, 2], data: encodeFloats(values, "F16") },
      "x.i64": { dtype: "I64", shape: [2], data: new BigInt64Array([3n, -4n]) },
    }, { step: "7", sources: "[1,2]" });
    const out = await new Deno.Command(PYTHON, { args: [`${FIXTURE}generate.py`, "read", path] })
      .output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const ref = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.deepEqual(ref.metadata, { step: "7", sources: "[1,2]" });
    const ours = await readSafetensorsF32(path);
    for (const name of ["x.f32", "x.bf16", "x.f16"]) {
      assert.deepEqual(ref.tensors[name].shape, ours.tensors[name].shape, name);
      assert.deepEqual(ref.tensors[name].values, Array.from(ours.tensors[name].data), name);
    }
    assert.deepEqual(ref.tensors["x.i64"].values, [3, -4]);
    await t.step("reference agrees on BF16 decode of our encoding", () => {
      for (let i = 0; i < values.length; i++) {
        assert.ok(
          Math.abs(ref.tensors["x.bf16"].values[i] - values[i]) <= Math.abs(values[i]) / 128,
        );
      }
    });
  });
});

async function* piecesOf(data: Uint8Array, size: number) {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

Deno.test("a tensor written in pieces reads back whole; slices read any part; sizes are checked", async () => {
  const dir = await Deno.makeTempDir({ prefix: "st-pieces-" });
  try {
    const values = Float32Array.from({ length: 1000 }, (_, i) => i * 0.5 - 7);
    const bytes = new Uint8Array(values.buffer);
    const path = `${dir}/a.safetensors`;
    const w = await SafetensorsWriter.create(path, [
      ["x", { dtype: "F32", shape: [10, 100] }],
      ["y", { dtype: "F32", shape: [1000] }],
    ]);
    await w.writePieces("x", piecesOf(bytes, 384));
    await w.write("y", bytes);
    await w.close({ durable: false });
    const got = await readSafetensorsF32(path);
    assert.deepEqual(got.tensors.x.data, values);
    assert.deepEqual(got.tensors.y.data, values);

    const reader = await SafetensorsReader.open(path);
    try {
      const slice = await reader.readSlice("x", 40, new Uint8Array(8));
      assert.deepEqual(new Float32Array(slice.buffer), values.slice(10, 12));
      await assert.rejects(
        () => reader.readSlice("x", 3996, new Uint8Array(8)),
        /bytes 3996\.\.4004 are outside tensor "x" \(4000 bytes\)/,
      );
    } finally {
      reader.close();
    }

    const short = await SafetensorsWriter.create(`${dir}/b.safetensors`, [
      ["x", { dtype: "F32", shape: [1000] }],
    ]);
    await assert.rejects(
      () => short.writePieces("x", piecesOf(bytes.subarray(0, 3000), 1000)),
      /tensor "x" got 3000 bytes, expected 4000/,
    );
    await short.abort();
    const long = await SafetensorsWriter.create(`${dir}/c.safetensors`, [
      ["x", { dtype: "F32", shape: [500] }],
    ]);
    await assert.rejects(
      () => long.writePieces("x", piecesOf(bytes, 1500)),
      /tensor "x" got more than 2000 bytes, expected 2000/,
    );
    await long.abort();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
