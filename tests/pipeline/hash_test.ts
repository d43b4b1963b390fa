import assert from "node:assert/strict";
import { canonicalJson, hashFile, hashJson, sha256Hex } from "../../pipeline/hash.ts";

Deno.test("canonicalJson sorts keys at every level and drops undefined", () => {
  const a = canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: undefined } });
  assert.equal(a, '{"a":{"d":[1,{"y":2,"z":1}]},"b":1}');
  assert.equal(hashJson({ x: 1, y: 2 }), hashJson({ y: 2, x: 1 }));
  assert.notEqual(hashJson({ x: 1 }), hashJson({ x: 2 }));
});

Deno.test("sha256Hex matches the FIPS 180-2 test vector", () => {
  assert.equal(
    sha256Hex("abc"),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
});

Deno.test("hashFile agrees with coreutils sha256sum on a multi-chunk file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/data.bin`;
    const data = new Uint8Array((9 << 20) + 12345); // crosses the 4 MiB read chunks
    for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
    await Deno.writeFile(path, data);
    const out = await new Deno.Command("sha256sum", { args: [path] }).output();
    const expected = new TextDecoder().decode(out.stdout).split(" ")[0];
    const got = await hashFile(path);
    assert.equal(got.sha256, expected);
    assert.equal(got.bytes, data.length);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
