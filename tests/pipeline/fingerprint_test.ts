import assert from "node:assert/strict";
import { Fingerprinter, importSpecifiers } from "../../pipeline/fingerprint.ts";
import type { StepKind } from "../../pipeline/step.ts";
import { TOY_KINDS } from "../fixtures/toy/registry.ts";
import { TOY_DIR } from "./toy_helpers.ts";
import { copyToyWithKinds } from "./toy_copy.ts";

Deno.test("importSpecifiers finds static, multi-line, re-export, side-effect and dynamic imports", () => {
  const source = `import { z } from "zod";
import type { A } from "./a.ts";
import {
  x,
  y,
} from "../b.ts";
export * from "./c.ts";
import "./d.ts";
const m = await import("./e.ts");
export { q } from './f.ts';
const notAnImport = "import from";`;
  assert.deepEqual(importSpecifiers(source), [
    "zod",
    "./a.ts",
    "../b.ts",
    "./c.ts",
    "./d.ts",
    "./e.ts",
    "./f.ts",
  ]);
});

async function fingerprints(kinds: StepKind[]): Promise<Record<string, string>> {
  const fp = new Fingerprinter();
  const out: Record<string, string> = {};
  for (const k of kinds) out[k.name] = await fp.kind(k);
  return out;
}

Deno.test("editing a helper changes only the steps that import it", async () => {
  const { dir, kinds } = await copyToyWithKinds();
  try {
    const before = await fingerprints(kinds);
    assert.equal(new Set(Object.values(before)).size, kinds.length);

    await Deno.writeTextFile(`${dir}/steps/unrelated.ts`, "export const UNRELATED = 2;\n");
    assert.deepEqual(await fingerprints(kinds), before);

    const math = await Deno.readTextFile(`${dir}/steps/math.ts`);
    await Deno.writeTextFile(`${dir}/steps/math.ts`, math.replace("x * x", "x ** 2"));
    const after = await fingerprints(kinds);
    // source, square and sleep import math.ts; sum and fail do not.
    for (const name of ["source", "square", "sleep"]) assert.notEqual(after[name], before[name]);
    for (const name of ["sum", "fail"]) assert.equal(after[name], before[name]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("npm packages enter the fingerprint with their pinned versions", async () => {
  const { dir, kinds } = await copyToyWithKinds();
  try {
    const before = await fingerprints(kinds);
    const denoJson = JSON.parse(await Deno.readTextFile(`${dir}/deno.json`));
    denoJson.imports.zod = "npm:zod@4.0.0";
    await Deno.writeTextFile(`${dir}/deno.json`, JSON.stringify(denoJson));
    const after = await fingerprints(kinds);
    for (const k of kinds) assert.notEqual(after[k.name], before[k.name]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.ok(TOY_DIR.endsWith("/toy/"));
  assert.equal(TOY_KINDS.length, 5);
});
