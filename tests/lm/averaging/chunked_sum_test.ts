// A fresh LAWA window is summed chunk by chunk across its members and streamed to its
// file (Accumulator.sumAndWrite in lm/averaging/accumulator.ts): with tensors of several
// chunks and an uneven tail, in F32 and BF16, the output is bit-identical to the
// member-by-member float64 sum.
import assert from "node:assert/strict";
import { averageCheckpoints } from "../../../lm/averaging/averaging.ts";
import { readSafetensorsF32, SafetensorsWriter } from "../../../lm/checkpoints/safetensors.ts";

const F32_N = 300_001; // three chunks of 131,072 and a tail
const BF16_N = 140_000;

function valuesAt(step: number, n: number, salt: number): Float32Array {
  const out = new Float32Array(n);
  let s = (step * 7919 + salt) >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * (1 + step);
  }
  return out;
}

/** The bf16 bits of a float32 (truncation: the test only needs exact bf16 inputs). */
function toBf16(x: Float32Array): { bytes: Uint8Array; decoded: Float32Array } {
  const bits = new Uint32Array(x.buffer.slice(0));
  const half = new Uint16Array(x.length);
  const decoded = new Float32Array(x.length);
  const back = new Uint32Array(decoded.buffer);
  for (let i = 0; i < x.length; i++) {
    half[i] = bits[i] >>> 16;
    back[i] = half[i] << 16;
  }
  return { bytes: new Uint8Array(half.buffer), decoded };
}

// k = 3: one pass of three; k = 6: a pass of four, then one of two; k = 5: four, then one.
for (const k of [3, 5, 6]) {
  Deno.test(`a fresh LAWA window (k=${k}) summed in chunks equals the member-by-member float64 sum`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "chunked-sum-" });
    try {
      const steps = Array.from({ length: k }, (_, i) => 100 * (i + 1));
      const inputs: Record<string, Float32Array[]> = { a: [], b: [] };
      const refs = [];
      for (const step of steps) {
        const path = `${dir}/step-${step}.safetensors`;
        const w = await SafetensorsWriter.create(path, [
          ["a", { dtype: "F32", shape: [F32_N] }],
          ["b", { dtype: "BF16", shape: [BF16_N] }],
        ]);
        const a = valuesAt(step, F32_N, 1);
        const b = toBf16(valuesAt(step, BF16_N, 2));
        await w.write("a", new Uint8Array(a.buffer));
        await w.write("b", b.bytes);
        await w.close();
        inputs.a.push(a);
        inputs.b.push(b.decoded);
        refs.push({ step, path });
      }
      const out = `${dir}/out`;
      const result = await averageCheckpoints(
        refs,
        { method: "lawa", k, nu: 100, interval: 100, start: 100 * k, dtype: "float32" },
        out,
      );
      assert.equal(result.outputs.length, 1);
      assert.equal(result.checkpointReads, k);
      assert.equal(result.bytesRead, k * (4 * F32_N + 2 * BF16_N));
      const got = await readSafetensorsF32(`${out}/${result.outputs[0].file}`);
      for (const name of ["a", "b"]) {
        const members = inputs[name];
        const want = new Float32Array(members[0].length);
        for (let i = 0; i < want.length; i++) {
          let sum = members[0][i]; // float64, members in order, as blendInto does
          for (let j = 1; j < members.length; j++) sum += members[j][i];
          want[i] = sum * (1 / k);
        }
        const data = got.tensors[name].data;
        let differing = 0;
        for (let i = 0; i < want.length; i++) if (data[i] !== want[i]) differing++;
        assert.equal(differing, 0, `${name}: ${differing} values differ`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
