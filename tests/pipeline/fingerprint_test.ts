import assert from "node:assert/strict";
import {
  codePartsOf,
  declarationHashes,
  Fingerprinter,
  loadTypescript,
  moduleMeaning,
  packageVersion,
} from "../../pipeline/fingerprint.ts";
import type { StepKind } from "../../pipeline/step.ts";
import { TOY_KINDS } from "../fixtures/toy/registry.ts";
import { TOY_DIR } from "./toy_helpers.ts";
import { copyToyWithKinds } from "./toy_copy.ts";

const ts = await loadTypescript();
/** How the project pins zod (the toy steps import it). */
const TOY_ZOD: string = JSON.parse(
  await Deno.readTextFile(new URL("../../deno.json", import.meta.url)),
).imports.zod;
const parsed = (source: string) => moduleMeaning(ts, source, "m.ts");
/** The whole module's meaning, as one string (imports, exports and every unit). */
const meaning = (source: string) => {
  const m = parsed(source);
  return {
    imports: m.imports,
    hash: JSON.stringify([m.head, m.units.map((u) => [u.hash, u.effect, u.declares])]),
  };
};

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

Deno.test("editing a helper changes only the steps whose code reaches it", async () => {
  const { dir, kinds } = await copyToyWithKinds();
  try {
    const before = await fingerprints(kinds);
    assert.equal(new Set(Object.values(before)).size, kinds.length);

    await Deno.writeTextFile(`${dir}/steps/unrelated.ts`, "export const UNRELATED = 2;\n");
    assert.deepEqual(await fingerprints(kinds), before);

    const math = await Deno.readTextFile(`${dir}/steps/math.ts`);
    await Deno.writeTextFile(`${dir}/steps/math.ts`, math + "\n// a note\n");
    assert.deepEqual(await fingerprints(kinds), before, "a comment changed a fingerprint");

    // math.ts holds square() (called by the square step) and sleep() (called by source,
    // sleep and square): each edit reaches only the steps that call the function edited.
    await Deno.writeTextFile(`${dir}/steps/math.ts`, math.replace("x * x", "x ** 2"));
    const squareEdited = await fingerprints(kinds);
    for (const name of ["square"]) assert.notEqual(squareEdited[name], before[name], name);
    for (const name of ["source", "sleep", "sum", "fail"]) {
      assert.equal(squareEdited[name], before[name], name);
    }
    await Deno.writeTextFile(
      `${dir}/steps/math.ts`,
      math.replace("setTimeout(resolve, ms)", "setTimeout(resolve, ms + 1)"),
    );
    const sleepEdited = await fingerprints(kinds);
    for (const name of ["source", "sleep", "square"]) {
      assert.notEqual(sleepEdited[name], before[name], name);
    }
    for (const name of ["sum", "fail"]) {
      assert.equal(sleepEdited[name], before[name], name);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A step kind whose module and helpers are the given files, in a temp folder. */
async function projectOf(files: Record<string, string>): Promise<{ dir: string; kind: StepKind }> {
  const dir = await Deno.makeTempDir({ prefix: "fp-project-" });
  await Deno.copyFile(new URL("../../deno.json", import.meta.url), `${dir}/deno.json`);
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
  const kind = { name: "k", module: new URL("step.ts", `file://${dir}/`).href } as StepKind;
  return { dir, kind };
}

async function fingerprintAfter(
  files: Record<string, string>,
  edit: [string, string, string],
): Promise<{ before: string; after: string }> {
  const { dir, kind } = await projectOf(files);
  try {
    const before = await new Fingerprinter().kind(kind);
    const [file, from, to] = edit;
    const text = await Deno.readTextFile(`${dir}/${file}`);
    assert.ok(text.includes(from), `${file} lacks ${from}`);
    await Deno.writeTextFile(`${dir}/${file}`, text.replace(from, to));
    return { before, after: await new Fingerprinter().kind(kind) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const HELPERS = {
  "step.ts": `import { used } from "./lib.ts";\nimport * as ns from "./ns.ts";\n` +
    `import { again } from "./barrel.ts";\nexport const out = used(1) + ns.any() + again();\n`,
  "lib.ts":
    `import { deep } from "./deep.ts";\nexport function used(x: number) { return deep(x) + 1; }\n` +
    `export function unused(x: number) { return x * 3; }\nexport const TABLE = [1, 2];\n` +
    `export const computed = unused(2);\n`,
  "deep.ts":
    `export function deep(x: number) { return x * 2; }\nexport function other() { return 0; }\n`,
  "ns.ts": `export function any() { return 1; }\nexport function rest() { return 2; }\n`,
  "barrel.ts": `export * from "./again.ts";\nexport { deep as renamed } from "./deep.ts";\n`,
  "again.ts": `export function again() { return 3; }\nexport function notAgain() { return 4; }\n`,
  "effects.ts": `console.log("loaded");\n`,
};

Deno.test("a fingerprint follows what the step's code reaches, across modules, by name", async () => {
  const changes: [string, string, string, boolean][] = [
    ["lib.ts", "deep(x) + 1", "deep(x) + 2", true], // a function the step calls
    ["deep.ts", "x * 2", "x * 4", true], // one it calls in turn
    ["deep.ts", "return 0", "return 9", false], // a function nothing calls
    ["lib.ts", "x * 3", "x * 5", true], // called by a computed constant: runs on load
    ["lib.ts", "[1, 2]", "[1, 3]", false], // a constant nothing reads
    ["ns.ts", "return 2", "return 5", true], // a namespace import counts whole
    ["again.ts", "return 3", "return 6", true], // through `export *`
    ["again.ts", "return 4", "return 7", false], // the barrel's other export
    ["step.ts", "used(1)", "used(2)", true],
    ["step.ts", "export const out", 'import "./effects.ts";\nexport const out', true],
  ];
  for (const [file, from, to, changes_] of changes) {
    const { before, after } = await fingerprintAfter(HELPERS, [file, from, to]);
    assert.equal(before !== after, changes_, `${file}: ${from} -> ${to}`);
  }
});

Deno.test("a step kind's version stands in for its source files", async () => {
  const { dir, kinds } = await copyToyWithKinds();
  try {
    const versioned = kinds.map((k) => k.name === "square" ? { ...k, version: "1" } : k);
    const before = await fingerprints(versioned);
    const math = await Deno.readTextFile(`${dir}/steps/math.ts`);
    await Deno.writeTextFile(
      `${dir}/steps/math.ts`,
      math.replace("setTimeout(resolve, ms)", "setTimeout(resolve, ms + 1)"),
    );
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

Deno.test("a fingerprint's parts hash each reached declaration of each module", async () => {
  const { dir, kinds } = await copyToyWithKinds();
  try {
    const square = kinds.find((k) => k.name === "square")!;
    const partsNow = async () => codePartsOf(await new Fingerprinter().kind(square))!;
    const before = await partsNow();
    // (The copy's import of the engine's step.ts points outside the temp folder.)
    assert.deepEqual(Object.keys(before.modules).filter((p) => p.startsWith("steps/")).sort(), [
      "steps/io.ts",
      "steps/math.ts",
      "steps/square.ts",
    ]);
    const math = declarationHashes(before.modules["steps/math.ts"]);
    assert.deepEqual([...math.keys()], ["(imports)", "square", "sleep"]);
    assert.equal(before.packages["npm:zod"], packageVersion(TOY_ZOD)[1]);
    assert.equal(codePartsOf("not a fingerprint"), undefined);

    const text = await Deno.readTextFile(`${dir}/steps/math.ts`);
    await Deno.writeTextFile(
      `${dir}/steps/math.ts`,
      text.replace("setTimeout(resolve, ms)", "setTimeout(resolve, ms + 1)"),
    );
    const after = await partsNow();
    const edited = declarationHashes(after.modules["steps/math.ts"]);
    assert.notEqual(edited.get("sleep"), math.get("sleep"));
    assert.equal(edited.get("square"), math.get("square"));
    assert.equal(after.modules["steps/square.ts"], before.modules["steps/square.ts"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("package versions are read from pinned specifiers", () => {
  assert.deepEqual(packageVersion("npm:@tensorflow/tfjs-core@4.22.0"), [
    "npm:@tensorflow/tfjs-core",
    "4.22.0",
  ]);
  assert.deepEqual(packageVersion("npm:zod@4.6.7/mini"), ["npm:zod", "4.6.7"]);
  assert.deepEqual(packageVersion("jsr:@std/path@1.0.8"), ["jsr:@std/path", "1.0.8"]);
  assert.deepEqual(packageVersion("npm:@scope/name"), ["npm:@scope/name", ""]);
  assert.deepEqual(packageVersion("left-pad"), ["left-pad", ""]);
});
