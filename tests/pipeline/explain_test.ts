import assert from "node:assert/strict";
import { codeChangeReason } from "../../pipeline/explain.ts";
import type { CodeParts } from "../../pipeline/fingerprint.ts";
import { MANIFEST, Store } from "../../pipeline/store.ts";
import type { RunSummary } from "../../pipeline/runner.ts";
import { runToy, TOY_CONFIG } from "./toy_helpers.ts";
import { copyToyWithKinds } from "./toy_copy.ts";

/** Reasons of the instances a dry run would run, by label. */
function wouldRun(summary: RunSummary): Record<string, string[]> {
  return Object.fromEntries(
    summary.outcomes.filter((o) => o.status === "would-run")
      .map((o) => [o.instance.label, o.reasons ?? []]),
  );
}

/** The toy pipeline built from a copy of its step modules, then `edit` applied to the copy. */
async function dryRunAfter(
  edit: (dir: string) => Promise<void>,
  beforeEdit: (artifacts: string) => Promise<void> = async () => {},
): Promise<Record<string, string[]>> {
  const { dir, kinds } = await copyToyWithKinds();
  const artifacts = `${dir}/artifacts`;
  try {
    assert.equal((await runToy(TOY_CONFIG, artifacts, { kinds })).failed.length, 0);
    await beforeEdit(artifacts);
    await edit(dir);
    return wouldRun(await runToy(TOY_CONFIG, artifacts, { kinds, dryRun: true }));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function replaceIn(path: string, from: string, to: string): Promise<void> {
  const text = await Deno.readTextFile(path);
  assert.ok(text.includes(from), `${path} lacks ${from}`);
  await Deno.writeTextFile(path, text.replace(from, to));
}

Deno.test("a dry run names the module and declaration whose edit reruns a step", async () => {
  const reasons = await dryRunAfter((dir) => replaceIn(`${dir}/steps/math.ts`, "x * x", "x ** 2"));
  const squares = Object.keys(reasons).filter((l) => l.startsWith("square"));
  assert.equal(squares.length, 2, JSON.stringify(reasons));
  for (const label of squares) {
    assert.deepEqual(reasons[label], ["code changed: steps/math.ts (square)"], label);
  }
  // The sums see new inputs, not new code; the sources did not change at all.
  for (const [label, why] of Object.entries(reasons)) {
    if (label.startsWith("total")) assert.deepEqual(why, ["input changed"], label);
    assert.ok(!label.startsWith("source"), `${label} would rerun: ${why}`);
  }
});

Deno.test("a dry run names a step's own module and a helper it newly reaches", async () => {
  const reasons = await dryRunAfter(async (dir) => {
    await Deno.writeTextFile(`${dir}/steps/extra.ts`, "export const EXTRA = 1;\n");
    await replaceIn(
      `${dir}/steps/source.ts`,
      'import { sleep } from "./math.ts";',
      'import { sleep } from "./math.ts";\nimport { EXTRA } from "./extra.ts";',
    );
    await replaceIn(`${dir}/steps/source.ts`, "params.offset + i + 1", "params.offset + i + EXTRA");
  });
  const sources = Object.entries(reasons).filter(([l]) => l.startsWith("source"));
  assert.equal(sources.length, 2, JSON.stringify(reasons));
  for (const [label, why] of sources) {
    assert.deepEqual(
      why,
      ["code changed: steps/extra.ts (now reached), steps/source.ts ((imports), sourceStep)"],
      label,
    );
  }
});

Deno.test("a dry run names an npm package whose pinned version changed", async () => {
  let pinned = "";
  const reasons = await dryRunAfter(async (dir) => {
    const denoJson = JSON.parse(await Deno.readTextFile(`${dir}/deno.json`));
    pinned = denoJson.imports.zod.replace("npm:zod@", "");
    denoJson.imports.zod = "npm:zod@4.0.0";
    await Deno.writeTextFile(`${dir}/deno.json`, JSON.stringify(denoJson));
  });
  const sources = Object.entries(reasons).filter(([l]) => l.startsWith("source"));
  assert.equal(sources.length, 2, JSON.stringify(reasons));
  for (const [label, why] of sources) {
    assert.deepEqual(why, [`code changed: npm:zod ${pinned} -> 4.0.0`], label);
  }
});

Deno.test("a manifest without code parts (an older entry) says just code changed", async () => {
  const reasons = await dryRunAfter(
    (dir) => replaceIn(`${dir}/steps/math.ts`, "x * x", "x ** 2"),
    async (artifacts) => {
      const store = new Store(artifacts);
      for (const key of await store.listKeys()) {
        const path = `${store.entryDir(key)}/${MANIFEST}`;
        const manifest = JSON.parse(await Deno.readTextFile(path));
        assert.ok(manifest.codeParts?.modules[`steps/${manifest.step}.ts`], "no code parts");
        delete manifest.codeParts;
        await Deno.writeTextFile(path, JSON.stringify(manifest, null, 2));
      }
    },
  );
  const squares = Object.entries(reasons).filter(([l]) => l.startsWith("square"));
  assert.equal(squares.length, 2, JSON.stringify(reasons));
  for (const [label, why] of squares) assert.deepEqual(why, ["code changed"], label);
});

const parts = (modules: Record<string, string>, packages = {}): CodeParts => ({
  modules,
  packages,
});

Deno.test("code change reasons name at most three modules, declarations and packages", () => {
  const before = parts(
    {
      "a.ts": "(imports):00 f:01 g:02 h:03 i:04 j:05",
      "b.ts": "(imports):00 k:01",
      "c.ts": "(imports):00 l:01",
      "d.ts": "(imports):00 m:01",
      "e.ts": "(imports):00 n:01",
      "same.ts": "(imports):00 o:01",
    },
    { "npm:p": "1.0.0", "npm:q": "1.0.0", "npm:r": "1.0.0", "npm:s": "1.0.0", "npm:t": "1" },
  );
  const after = parts(
    {
      "a.ts": "(imports):00 f:11 g:12 h:13 i:14",
      "b.ts": "(imports):00 k:11",
      "c.ts": "(imports):10 l:01",
      "e.ts": "(imports):00 n:01 m:01",
      "same.ts": "(imports):00 o:01",
    },
    { "npm:p": "2.0.0", "npm:q": "2.0.0", "npm:r": "2.0.0", "npm:s": "2.0.0", "npm:t": "1" },
  );
  assert.equal(
    codeChangeReason(before, after),
    "code changed: a.ts (f, g, h, +2 more), b.ts (k), c.ts ((imports)), +2 more modules, " +
      "npm:p 1.0.0 -> 2.0.0, npm:q 1.0.0 -> 2.0.0, npm:r 1.0.0 -> 2.0.0, +1 more packages",
  );
});

Deno.test("code change reasons for versions, lost modules and unknown parts", () => {
  const base = parts({ "a.ts": "(imports):00 f:01" }, { "npm:p": "1.0.0" });
  assert.equal(codeChangeReason(undefined, base), "code changed");
  assert.equal(codeChangeReason(base, undefined), "code changed");
  assert.equal(codeChangeReason(base, base), "code changed", "nothing to name");
  assert.equal(
    codeChangeReason(base, { ...parts({}, { "npm:p": "1.0.0" }), version: "2" }),
    "code changed: version (none) -> 2",
  );
  assert.equal(
    codeChangeReason(base, parts({}, { "npm:p": "1.0.0", "npm:new": "" })),
    "code changed: a.ts (no longer reached), npm:new (none) -> (unpinned)",
  );
  assert.equal(
    codeChangeReason(base, parts({ "a.ts": "(missing)" }, { "npm:p": "1.0.0" })),
    "code changed: a.ts (missing)",
  );
});
