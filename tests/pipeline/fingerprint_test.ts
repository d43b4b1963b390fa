import assert from "node:assert/strict";
import { Fingerprinter, loadTypescript, moduleMeaning } from "../../pipeline/fingerprint.ts";
import type { StepKind } from "../../pipeline/step.ts";
import { TOY_KINDS } from "../fixtures/toy/registry.ts";
import { TOY_DIR } from "./toy_helpers.ts";
import { copyToyWithKinds } from "./toy_copy.ts";

const ts = await loadTypescript();
const meaning = (source: string) => moduleMeaning(ts, source, "m.ts");

const BASE = `import { z } from "zod";
import type { A } from "./a.ts";
import { type B, c } from "./bc.ts";
import { OnlyAType } from "./only-type.ts";
import "./side-effect.ts";
export * from "./reexported.ts";
export type { T } from "./types.ts";
/** A schema. */
export const schema = z.object({ n: z.number() });
export function square(x: number): number {
  return c(x * x) as number;
}
const lazy = () => import("./lazy.ts");
export interface Shape { a: A; b: B; o: OnlyAType }
`;

Deno.test("the import graph holds the imports that run, in order, and no type-only ones", () => {
  assert.deepEqual(meaning(BASE).imports, [
    "zod",
    "./bc.ts",
    "./side-effect.ts",
    "./reexported.ts",
    "./lazy.ts",
  ]);
});

Deno.test("comments, formatting, type annotations and interfaces do not change the meaning", () => {
  const base = meaning(BASE).hash;
  const variants = [
    BASE + "// a trailing comment\n",
    BASE.replace("/** A schema. */", "/**\n * A schema, documented at length.\n */"),
    BASE.replace(
      "export function square(x: number): number {",
      "export function square(\n  x: number,\n): number {",
    ),
    BASE.replace("(x: number): number", "(x: bigint | number): unknown"),
    BASE.replace("as number", "as unknown as number"),
    BASE.replace(
      "export interface Shape { a: A; b: B; o: OnlyAType }",
      "export interface Shape { a: A }\ntype Other = string;",
    ),
    BASE.replace(`import type { A } from "./a.ts";\n`, `import type { A, A2 } from "./a2.ts";\n`),
    BASE.replaceAll('"', "'"),
    BASE.replaceAll("\n", "\n\n").replaceAll("  ", "    "),
  ];
  for (const v of variants) assert.equal(meaning(v).hash, base, v);
});

Deno.test("a change to code that runs changes the meaning", () => {
  const base = meaning(BASE).hash;
  const variants = [
    BASE.replace("x * x", "x ** 2"),
    BASE.replace("z.number()", "z.number().int()"),
    BASE.replace(`import "./side-effect.ts";\n`, ""),
    BASE.replace("export const schema", "const schema"),
    BASE.replace("./lazy.ts", "./lazier.ts"),
    BASE + "console.log('hello');\n",
  ];
  for (const v of variants) assert.notEqual(meaning(v).hash, base, v);
});

Deno.test("constructor parameter properties keep their modifiers; class members drop type-only ones", () => {
  const cls = (ctor: string, member: string) =>
    meaning(`export class C { ${member} x = 1; constructor(${ctor} y: number) {} }`).hash;
  assert.equal(cls("", ""), cls("", "readonly"));
  assert.equal(cls("", ""), cls("", "private"));
  assert.notEqual(cls("", ""), cls("private", ""));
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
    await Deno.writeTextFile(`${dir}/steps/math.ts`, math + "\n// a note\n");
    assert.deepEqual(await fingerprints(kinds), before, "a comment changed a fingerprint");

    await Deno.writeTextFile(`${dir}/steps/math.ts`, math.replace("x * x", "x ** 2"));
    const after = await fingerprints(kinds);
    // source, square and sleep import math.ts; sum and fail do not.
    for (const name of ["source", "square", "sleep"]) assert.notEqual(after[name], before[name]);
    for (const name of ["sum", "fail"]) assert.equal(after[name], before[name]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a step kind's version stands in for its source files", async () => {
  const { dir, kinds } = await copyToyWithKinds();
  try {
    const versioned = kinds.map((k) => k.name === "square" ? { ...k, version: "1" } : k);
    const before = await fingerprints(versioned);
    const math = await Deno.readTextFile(`${dir}/steps/math.ts`);
    await Deno.writeTextFile(`${dir}/steps/math.ts`, math.replace("x * x", "x ** 2"));
    const after = await fingerprints(versioned);
    assert.equal(after.square, before.square, "versioned kind followed a source edit");
    assert.notEqual(after.source, before.source);
    const bumped = await fingerprints(
      versioned.map((k) => k.name === "square" ? { ...k, version: "2" } : k),
    );
    assert.notEqual(bumped.square, after.square);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("meanings persist in the cache file and are reused by a new fingerprinter", async () => {
  const { dir, kinds } = await copyToyWithKinds();
  try {
    const cacheFile = `${dir}/meanings.json`;
    const first = new Fingerprinter({ cacheFile });
    const fp = await first.kind(kinds[0]);
    const saved = JSON.parse(await Deno.readTextFile(cacheFile));
    assert.ok(Object.keys(saved.meanings).length >= 1);
    assert.equal(await new Fingerprinter({ cacheFile }).kind(kinds[0]), fp);
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
