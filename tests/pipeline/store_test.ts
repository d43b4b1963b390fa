// The cache entry checks of pipeline/store.ts: what `inspect` says of a sound entry, of
// each way an entry can be damaged, and of a copied one (new stamps, same bytes).
import assert from "node:assert/strict";
import { type KeyParts, MANIFEST, SIDE_DIR, Store } from "../../pipeline/store.ts";

const KEY = "a".repeat(64);
const PARTS: KeyParts = {
  step: "toy",
  code: "c",
  params: {},
  inputs: {},
  backend: null,
  seed: null,
};

async function storeWithEntry(): Promise<{ store: Store; dir: string }> {
  const root = await Deno.makeTempDir({ prefix: "store-test-" });
  const store = new Store(root);
  await store.init();
  const work = await store.prepareWorkDir(KEY, false);
  await Deno.mkdir(`${work}/sub`);
  await Deno.writeTextFile(`${work}/out.txt`, "hello");
  await Deno.writeTextFile(`${work}/sub/more.txt`, "world!");
  await store.commit(KEY, {
    step: "toy",
    node: "n",
    params: {},
    inputs: {},
    keyParts: PARTS,
    started: new Date().toISOString(),
    finished: new Date().toISOString(),
    duration_s: 0,
    backend: "cpu",
    seed: 0,
    host: "test",
    rows: {},
  });
  return { store, dir: store.entryDir(KEY) };
}

Deno.test("a committed entry is sound, stamped, and cheap to check", async () => {
  const { store, dir } = await storeWithEntry();
  assert.equal((await store.inspect("b".repeat(64))).state, "missing");
  const found = await store.inspect(KEY);
  assert.equal(found.state, "ok");
  const stamps = JSON.parse(await Deno.readTextFile(store.stampPath(KEY)));
  assert.deepEqual(Object.keys(stamps.files).sort(), ["out.txt", "sub/more.txt"]);
  assert.equal((await store.inspect(KEY, { full: true })).state, "ok");
  await Deno.remove(store.root, { recursive: true });
  assert.ok(dir);
});

Deno.test("each kind of damage is named; a copied entry is rehashed and restamped", async () => {
  const cases: [string, (dir: string, store: Store) => Promise<void>, RegExp | "ok"][] = [
    ["same bytes, new stamp", async (dir) => {
      const text = await Deno.readTextFile(`${dir}/out.txt`);
      await Deno.remove(`${dir}/out.txt`);
      await Deno.writeTextFile(`${dir}/out.txt`, text); // a copy: new inode and times
    }, "ok"],
    ["missing stamps", (_d, store) => Deno.remove(store.stampPath(KEY)), "ok"],
    ["garbled stamps", (_d, store) => Deno.writeTextFile(store.stampPath(KEY), "{"), "ok"],
    [
      "a flipped byte",
      (dir) => Deno.writeTextFile(`${dir}/out.txt`, "hellO"),
      /^out\.txt does not match its recorded sha256$/,
    ],
    [
      "a cut file",
      (dir) => Deno.writeTextFile(`${dir}/sub/more.txt`, "wor"),
      /^sub\/more\.txt has 3 bytes, the manifest says 6$/,
    ],
    ["a lost file", (dir) => Deno.remove(`${dir}/out.txt`), /^out\.txt is missing$/],
    [
      "a garbled manifest",
      (dir) => Deno.writeTextFile(`${dir}/${MANIFEST}`, '{"form'),
      /^manifest\.json is not valid JSON$/,
    ],
    ["no manifest", (dir) => Deno.remove(`${dir}/${MANIFEST}`), /^it has no manifest\.json$/],
    ["a foreign manifest", async (dir) => {
      const m = JSON.parse(await Deno.readTextFile(`${dir}/${MANIFEST}`));
      await Deno.writeTextFile(`${dir}/${MANIFEST}`, JSON.stringify({ ...m, key: "b".repeat(64) }));
    }, /^manifest\.json names key bbbbbbbbbbbb$/],
    ["an edited digest list", async (dir) => {
      const m = JSON.parse(await Deno.readTextFile(`${dir}/${MANIFEST}`));
      m.outputs["out.txt"].sha256 = "0".repeat(64);
      await Deno.writeTextFile(`${dir}/${MANIFEST}`, JSON.stringify(m));
    }, /^manifest\.json's outputs do not match its digest$/],
  ];
  for (const [what, harm, expected] of cases) {
    const { store, dir } = await storeWithEntry();
    // Stamps hold mtimes in milliseconds: an edit within the commit's millisecond would
    // look untouched (a limit of the cheap check, not met by real edits).
    await new Promise((r) => setTimeout(r, 5));
    await harm(dir, store);
    const found = await store.inspect(KEY);
    if (expected === "ok") {
      assert.equal(found.state, "ok", what);
      const stamps = JSON.parse(await Deno.readTextFile(store.stampPath(KEY)));
      const info = await Deno.stat(`${dir}/out.txt`);
      assert.equal(stamps.files["out.txt"].ino, info.ino, `${what}: restamped`);
    } else {
      assert.equal(found.state, "damaged", what);
      assert.match((found as { reason: string }).reason, expected, what);
      assert.equal(
        await store.readManifest(KEY) === null,
        /^\^(manifest|it has)/.test(expected.source),
        what,
      );
    }
    await Deno.remove(store.root, { recursive: true });
  }
});

Deno.test("a full check finds stray files; a damage mark holds until a full check clears it", async () => {
  const { store, dir } = await storeWithEntry();
  await Deno.writeTextFile(`${dir}/stray.bin`, "x");
  assert.equal((await store.inspect(KEY)).state, "ok"); // the cheap check reads the manifest's list
  const full = await store.inspect(KEY, { full: true });
  assert.deepEqual(full, { state: "damaged", reason: "stray.bin is not in the manifest" });
  await Deno.remove(`${dir}/stray.bin`);

  await store.markDamaged(KEY, "found by a test");
  assert.deepEqual(await store.inspect(KEY), { state: "damaged", reason: "found by a test" });
  assert.equal((await store.inspect(KEY, { full: true })).state, "ok");
  assert.equal((await store.inspect(KEY)).state, "ok");
  await Deno.remove(store.root, { recursive: true });
});

Deno.test("side files are recorded and checked but left out of the digest", async () => {
  const digestWith = async (files: Record<string, string>) => {
    const root = await Deno.makeTempDir({ prefix: "store-side-" });
    try {
      const store = new Store(root);
      await store.init();
      const work = await store.prepareWorkDir(KEY, false);
      for (const [rel, text] of Object.entries(files)) {
        await Deno.mkdir(`${work}/${rel}`.replace(/\/[^/]*$/, ""), { recursive: true });
        await Deno.writeTextFile(`${work}/${rel}`, text);
      }
      const m = await store.commit(KEY, {
        step: "toy",
        node: "n",
        params: {},
        inputs: {},
        keyParts: PARTS,
        started: "",
        finished: "",
        duration_s: 0,
        backend: "cpu",
        seed: 0,
        host: "test",
        rows: {},
      });
      assert.deepEqual(Object.keys(m.outputs), Object.keys(files).sort());
      // A side file is checked like every output.
      await Deno.writeTextFile(`${store.entryDir(KEY)}/${SIDE_DIR}/t.json`, "{}");
      const found = await store.inspect(KEY, { full: true });
      assert.equal(found.state, "damaged");
      return m.digest;
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  };
  const base = await digestWith({ "out.txt": "w", [`${SIDE_DIR}/t.json`]: "1.5 s" });
  assert.equal(await digestWith({ "out.txt": "w", [`${SIDE_DIR}/t.json`]: "2.5 s" }), base);
  assert.notEqual(await digestWith({ "out.txt": "x", [`${SIDE_DIR}/t.json`]: "1.5 s" }), base);
});
