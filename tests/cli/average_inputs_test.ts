// `deno task average` refuses inputs that would give a wrong average without a word:
// members holding NaN or infinity, a tensor stored in different float dtypes by
// different members (unless --dtype float32 is asked), and an output folder inside the
// input folder. Each is one line naming the file (and tensor), and nothing is written.
import assert from "node:assert/strict";
import { firstNonFinite, runAverageCli } from "../../cli/average.ts";
import { writeSafetensors } from "../../lm/checkpoints/safetensors.ts";
import { type DType, f32BitsToBf16Bits } from "../../lm/checkpoints/dtypes.ts";

/** A checkpoint of two float tensors, `w` in `dtype`, with `bad` written at w[2]. */
async function writeMember(
  path: string,
  dtype: "F32" | "BF16",
  scale: number,
  bad?: number,
): Promise<void> {
  const values = new Float32Array([1, 2, 3, 4].map((v) => v * scale));
  if (bad !== undefined) values[2] = bad;
  const w = dtype === "F32"
    ? values
    : new Uint16Array([...new Uint32Array(values.buffer)].map(f32BitsToBf16Bits));
  await writeSafetensors(path, {
    "h.0.w": { dtype, shape: [2, 2], data: w },
    "h.0.b": { dtype: "F32", shape: [2], data: new Float32Array([scale, -scale]) },
  });
}

async function series(dir: string, dtypes: ("F32" | "BF16")[], bad?: [number, number]) {
  await Deno.mkdir(dir, { recursive: true });
  for (const [i, dtype] of dtypes.entries()) {
    const step = (i + 1) * 100;
    await writeMember(
      `${dir}/step-${step}.safetensors`,
      dtype,
      i + 1,
      bad?.[0] === i ? bad[1] : undefined,
    );
  }
}

async function fails(args: string[], expected: RegExp): Promise<void> {
  const log: string[] = [];
  await assert.rejects(runAverageCli(args, (l) => log.push(l)), (e: Error) => {
    assert.match(e.message, expected);
    assert.ok(!e.message.includes("\n"), e.message);
    return true;
  });
}

Deno.test("members with NaN or infinity are refused, naming the file and tensor", async () => {
  const dir = await Deno.makeTempDir();
  for (
    const [dtype, bad, shown] of [
      ["F32", NaN, "NaN"],
      ["F32", -Infinity, "-Infinity"],
      ["BF16", Infinity, "Infinity"],
      ["BF16", NaN, "NaN"],
    ] as const
  ) {
    const input = `${dir}/in-${dtype}-${shown}`;
    await series(input, [dtype, dtype, dtype], [1, bad]);
    await fails(
      ["--k", "2", input, `${dir}/out`],
      new RegExp(`^${input}/step-200\\.safetensors: tensor h\\.0\\.w holds ${shown} at index 2: `),
    );
    await assert.rejects(Deno.stat(`${dir}/out`), Deno.errors.NotFound);
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("members of mixed float dtypes need --dtype float32", async () => {
  const dir = await Deno.makeTempDir();
  await series(`${dir}/in`, ["F32", "BF16", "F32"]);
  await fails(
    ["--k", "2", `${dir}/in`, `${dir}/out`],
    /step-200\.safetensors: tensor h\.0\.w is BF16 but F32 in .*step-100\.safetensors: .*--dtype float32/,
  );
  await fails(["--k", "2", "--dtype", "source", `${dir}/in`, `${dir}/out`], /--dtype float32/);
  await runAverageCli(["--k", "2", "--dtype", "float32", `${dir}/in`, `${dir}/out`], () => {});
  assert.ok((await Deno.stat(`${dir}/out/series.json`)).isFile);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("an output folder inside the input folder is refused", async () => {
  const dir = await Deno.makeTempDir();
  await series(`${dir}/in`, ["F32", "F32", "F32"]);
  for (const out of [`${dir}/in/lawa`, `${dir}/in/`, `${dir}/in/../in/deeper/lawa`]) {
    await fails(["--k", "2", `${dir}/in`, out], /the output folder is inside the input folder/);
  }
  await Deno.symlink(`${dir}/in`, `${dir}/link`);
  await fails(["--k", "2", `${dir}/link`, `${dir}/in/x`], /inside the input folder/);
  assert.deepEqual(
    [...Deno.readDirSync(`${dir}/in`)].map((e) => e.name).sort(),
    ["step-100.safetensors", "step-200.safetensors", "step-300.safetensors"],
  );
  await runAverageCli(["--k", "2", `${dir}/in`, `${dir}/in-lawa`], () => {}); // a sibling is fine
  await Deno.remove(dir, { recursive: true });
});

Deno.test("firstNonFinite finds NaN and infinities in every float layout", () => {
  const f32 = new Uint8Array(new Float32Array([0, 1, Infinity]).buffer);
  assert.equal(firstNonFinite(f32, "F32"), "Infinity at index 2");
  const f64 = new Uint8Array(new Float64Array([NaN]).buffer);
  assert.equal(firstNonFinite(f64, "F64"), "NaN at index 0");
  const half = (bits: number[]) => new Uint8Array(new Uint16Array(bits).buffer);
  const cases: [DType, number[], string | null][] = [
    ["F16", [0x3c00, 0x7c00], "Infinity at index 1"],
    ["F16", [0xfc00], "-Infinity at index 0"],
    ["F16", [0x7e00], "NaN at index 0"],
    ["F16", [0x7bff, 0x0001], null], // largest finite, smallest subnormal
    ["BF16", [0x7f80], "Infinity at index 0"],
    ["BF16", [0x3f80, 0x7fc0], "NaN at index 1"],
    ["BF16", [0x7f7f], null],
  ];
  for (const [dtype, bits, expected] of cases) {
    assert.equal(firstNonFinite(half(bits), dtype), expected, `${dtype} ${bits}`);
  }
});
