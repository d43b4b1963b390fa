// PyTorch .bin files (torch.save's zip + pickle) read without running pickle code: the
// fixture revisions written by torch 1.13 (tests/fixtures/neox/make_fixture.py), the
// sharded index, conversion to safetensors, and pickles that try to call anything else.
import assert from "node:assert/strict";
import {
  parseTorchBin,
  readTorchBin,
  torchBinToSafetensors,
} from "../../../lm/checkpoints/torch_bin.ts";
import { readSafetensorsHeader } from "../../../lm/checkpoints/safetensors.ts";
import { CheckpointReader } from "../../../lm/checkpoints/sharded.ts";

const REPO = new URL("../../fixtures/neox/repo", import.meta.url).pathname;

/** A zip of stored entries (what torch.save writes), for hand-made archives. */
function storedZip(entries: Record<string, Uint8Array>): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of Object.entries(entries)) {
    const n = enc.encode(name);
    const local = new Uint8Array(30 + n.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint32(18, data.length, true);
    lv.setUint32(22, data.length, true);
    lv.setUint16(26, n.length, true);
    local.set(n, 30);
    const cd = new Uint8Array(46 + n.length);
    const cv = new DataView(cd.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint32(20, data.length, true);
    cv.setUint32(24, data.length, true);
    cv.setUint16(28, n.length, true);
    cv.setUint32(42, offset, true);
    cd.set(n, 46);
    parts.push(local, data);
    central.push(cd);
    offset += local.length + data.length;
  }
  const cdSize = central.reduce((s, c) => s + c.length, 0);
  const eocd = new Uint8Array(22);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, central.length, true);
  ev.setUint16(10, central.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const all = [...parts, ...central, eocd];
  const out = new Uint8Array(all.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of all) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("torch .bin: tensors, dtypes and old Pythia buffers of a torch.save file", async () => {
  const tensors = await readTorchBin(`${REPO}/step1000/pytorch_model.bin`);
  const embed = tensors.get("gpt_neox.embed_in.weight")!;
  assert.equal(embed.dtype, "F16");
  assert.deepEqual(embed.shape, [288, 32]);
  assert.equal(embed.data.length, 288 * 32 * 2);
  const mask = tensors.get("gpt_neox.layers.0.attention.bias")!;
  assert.equal(mask.dtype, "BOOL");
  assert.deepEqual(mask.shape, [1, 1, 64, 64]);
  assert.equal(mask.data[0], 1); // lower triangle
  assert.equal(mask.data[1], 0);
  assert.equal(tensors.get("gpt_neox.layers.1.attention.masked_bias")!.shape.length, 0);
  assert.equal(tensors.get("gpt_neox.layers.1.attention.rotary_emb.inv_freq")!.dtype, "F32");
  // 2 layers x 12 parameters + 4 others + 2 x 3 buffers
  assert.equal(tensors.size, 2 * 12 + 4 + 2 * 3);
});

Deno.test("torch .bin: a sharded index reads all shards; conversion keeps dtypes, drops buffers", async () => {
  const sharded = await readTorchBin(`${REPO}/step2000/pytorch_model.bin.index.json`);
  assert.equal(sharded.size, 2 * 12 + 4 + 2 * 3);
  const dir = await Deno.makeTempDir({ prefix: "torch-bin-" });
  try {
    const dest = `${dir}/out.safetensors`;
    await torchBinToSafetensors(
      `${REPO}/step2000/pytorch_model.bin.index.json`,
      dest,
      (name) => !/attention\.(bias|masked_bias|rotary_emb\.inv_freq)$/.test(name),
    );
    const header = await readSafetensorsHeader(dest);
    assert.equal(header.tensors.length, 2 * 12 + 4);
    assert.ok(header.tensors.every((t) => t.dtype === "F16"));
    const reader = await CheckpointReader.open(dest);
    try {
      const bytes = await reader.readBytes("embed_out.weight");
      assert.deepEqual(bytes, sharded.get("embed_out.weight")!.data);
    } finally {
      reader.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("torch .bin: a pickle that calls anything but a tensor rebuild is refused, not run", () => {
  const enc = new TextEncoder();
  // protocol 2: GLOBAL os.system, ('touch /tmp/x',), REDUCE, STOP
  const evil = Uint8Array.from([
    0x80,
    0x02,
    ...enc.encode("cos\nsystem\n"),
    0x58,
    11,
    0,
    0,
    0,
    ...enc.encode("touch /tmp/x"),
    0x85,
    0x52,
    0x2e,
  ].flat());
  assert.throws(
    () => parseTorchBin(storedZip({ "archive/data.pkl": evil }), "evil.bin"),
    /refused: the pickle references os\.system/,
  );
  const builtins = Uint8Array.from([0x80, 0x02, ...enc.encode("cbuiltins\neval\n"), 0x2e]);
  assert.throws(
    () => parseTorchBin(storedZip({ "archive/data.pkl": builtins }), "evil.bin"),
    /builtins\.eval/,
  );
  assert.throws(() => parseTorchBin(new Uint8Array(100), "x.bin"), /not a zip archive/);
  const bin = Deno.readFileSync(`${REPO}/step1000/pytorch_model.bin`);
  assert.throws(() => parseTorchBin(bin.subarray(0, bin.length - 5000), "cut.bin"), /zip/);
});
