// Token files and windows, checked against numpy (tests/fixtures/data/make_fixtures.py):
// the reader against numpy's writer, the windows against a numpy re-implementation.
import assert from "node:assert/strict";
import {
  evalWindows,
  openTokens,
  readMeta,
  type TokenFile,
  trainBatch,
  writeTokens,
} from "../../../lm/data/windows.ts";

const fixtures = new URL("../../fixtures/data/", import.meta.url).pathname;

interface TrainCase {
  batch_size: number;
  seq_len: number;
  seed: number;
  step: number;
  micro: number;
  x: number[];
  y: number[];
}
interface EvalCase {
  seq_len: number;
  max_windows: number;
  offsets: number[];
  x: number[];
  y: number[];
}
const expected = JSON.parse(await Deno.readTextFile(`${fixtures}windows.json`)) as {
  length16: number;
  length32: number;
  first16: number[];
  last32: number[];
  train16: TrainCase[];
  eval16: EvalCase[];
  train32: TrainCase;
};

/** Both ways of reading: whole file in memory, and window by window from a handle. */
async function bothModes(path: string, dtype: "uint16" | "uint32"): Promise<TokenFile[]> {
  return [
    await openTokens(path, dtype),
    await openTokens(path, dtype, { inMemoryLimitBytes: 0 }),
  ];
}

Deno.test("openTokens reads numpy's uint16 and uint32 files, in memory and streamed", async () => {
  for (const f of await bothModes(`${fixtures}tokens16.bin`, "uint16")) {
    assert.equal(f.length, expected.length16);
    assert.deepEqual(Array.from(f.read(0, 10)), expected.first16);
    assert.deepEqual(f.read(3, 4), f.read(0, 10).slice(3, 7));
    assert.throws(() => f.read(f.length - 2, 3), /past the end/);
    f.close();
  }
  for (const f of await bothModes(`${fixtures}tokens32.bin`, "uint32")) {
    assert.equal(f.length, expected.length32);
    assert.deepEqual(Array.from(f.read(f.length - 10, 10)), expected.last32);
    f.close();
  }
});

Deno.test("trainBatch matches the numpy reference for each (seed, step, micro)", async () => {
  for (const f of await bothModes(`${fixtures}tokens16.bin`, "uint16")) {
    for (const c of expected.train16) {
      const batch = trainBatch(f, c.batch_size, c.seq_len, c.seed, c.step, c.micro);
      assert.deepEqual(Array.from(batch.x), c.x, `x for ${JSON.stringify(c.seed)}/${c.step}`);
      assert.deepEqual(Array.from(batch.y), c.y);
    }
    f.close();
  }
  const f32 = await openTokens(`${fixtures}tokens32.bin`, "uint32");
  const c = expected.train32;
  const batch = trainBatch(f32, c.batch_size, c.seq_len, c.seed, c.step, c.micro);
  assert.deepEqual(Array.from(batch.x), c.x);
  assert.deepEqual(Array.from(batch.y), c.y);
});

Deno.test("trainBatch: same (seed, step) gives the same windows, other steps differ", async () => {
  const f = await openTokens(`${fixtures}tokens16.bin`, "uint16");
  const a = trainBatch(f, 4, 32, 11, 5);
  const again = trainBatch(await openTokens(`${fixtures}tokens16.bin`, "uint16"), 4, 32, 11, 5);
  assert.deepEqual(a, again);
  assert.notDeepEqual(trainBatch(f, 4, 32, 11, 6).x, a.x);
  assert.notDeepEqual(trainBatch(f, 4, 32, 12, 5).x, a.x);
  assert.notDeepEqual(trainBatch(f, 4, 32, 11, 5, 1).x, a.x);
  // y is x shifted by one within each row
  assert.deepEqual(a.y.subarray(0, 31), a.x.subarray(1, 32));
  assert.throws(() => trainBatch(f, 1, f.length, 0, 0), /fewer than seq_len \+ 1/);
});

Deno.test("evalWindows matches the numpy reference and is identical on every call", async () => {
  const f = await openTokens(`${fixtures}tokens16.bin`, "uint16");
  for (const c of expected.eval16) {
    const w = evalWindows(f, c.seq_len, c.max_windows);
    assert.equal(w.count, c.offsets.length);
    assert.deepEqual(Array.from(w.x), c.x);
    assert.deepEqual(Array.from(w.y), c.y);
    assert.deepEqual(evalWindows(f, c.seq_len, c.max_windows), w);
  }
  assert.throws(() => evalWindows(f, 1000, 1), /evaluation file has 1000 tokens/);
});

Deno.test("writeTokens round-trips through openTokens; bad files give clear errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ids = [0, 1, 65535, 300, 7];
    await writeTokens(`${dir}/a.bin`, ids, "uint16");
    assert.deepEqual(Array.from((await openTokens(`${dir}/a.bin`, "uint16")).read(0, 5)), ids);
    const big = [70000, 2147483647, 2];
    await writeTokens(`${dir}/b.bin`, big, "uint32");
    const b = await openTokens(`${dir}/b.bin`, "uint32", { inMemoryLimitBytes: 0 });
    assert.deepEqual(Array.from(b.read(0, 3)), big);
    b.close();
    await Deno.writeFile(`${dir}/odd.bin`, new Uint8Array(3));
    await assert.rejects(openTokens(`${dir}/odd.bin`, "uint16"), /not a whole number of uint16/);
    await assert.rejects(openTokens(`${dir}/missing.bin`, "uint16"), /file not found/);
    await assert.rejects(readMeta(dir), /meta.json not found/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
