import assert from "node:assert/strict";
import { loadTypescript, moduleMeaning } from "../../pipeline/code_meaning.ts";

const ts = await loadTypescript();
const units = (source: string) =>
  moduleMeaning(ts, source, "m.ts").units.map((u) => ({
    declares: u.declares.join(","),
    effect: u.effect,
  }));

Deno.test("declarations are not effects; anything that computes on load is", () => {
  assert.deepEqual(
    units(`
export function f() { return g(); }
export class C { static n = 1; m() { return 2; } }
class D { static { console.log("x"); } }
export const TABLE = { a: [1, 2], b: () => 3, c: -1, d: \`t\` };
const REGEX = /x+/g, ALIAS = TABLE.a;
export const schema = z.object({});
let counter = 0;
counter += 1;
f();
enum Color { Red }
export default TABLE;
interface I { a: number }
type T = string;
declare const ambient: number;
`),
    [
      { declares: "f", effect: false },
      { declares: "C", effect: false },
      { declares: "D", effect: true },
      { declares: "TABLE", effect: false },
      { declares: "REGEX,ALIAS", effect: false },
      { declares: "schema", effect: true },
      { declares: "counter", effect: false },
      { declares: "", effect: true },
      { declares: "", effect: true },
      { declares: "Color", effect: false },
      { declares: "default", effect: false },
    ],
  );
});

Deno.test("exports, re-exports and bindings name where each value comes from", () => {
  const m = moduleMeaning(
    ts,
    `import def, { a as b, type T } from "./x.ts";
import * as ns from "./ns.ts";
import { onlyType } from "./types.ts";
export { b as c };
export * from "./star.ts";
export { d as e } from "./d.ts";
export * as all from "./all.ts";
export function use(v: onlyType): T { return def(b, ns.q); }
const later = import("./lazy.ts");`,
    "m.ts",
  );
  assert.deepEqual(m.bindings, [
    { local: "def", from: "./x.ts", imported: "default" },
    { local: "b", from: "./x.ts", imported: "a" },
    { local: "ns", from: "./ns.ts", imported: "*" },
  ]);
  assert.deepEqual(m.exports, { c: "b", all: "*./all.ts", use: "use" });
  assert.deepEqual(m.reexports, [
    { from: "./star.ts", names: null },
    { from: "./d.ts", names: { e: "d" } },
    { from: "./all.ts", names: null },
  ]);
  assert.deepEqual(m.dynamic, ["./lazy.ts"]);
  assert.deepEqual(m.imports, [
    "./x.ts",
    "./ns.ts",
    "./star.ts",
    "./d.ts",
    "./all.ts",
    "./lazy.ts",
  ]);
});
