// Revisions fetched from the local hub (tests/helpers/local_hub.ts) with @huggingface/hub:
// verified downloads, a dropped transfer resumed with a Range request, a corrupt file
// refused, HF_TOKEN sent, downloads kept in a Hugging Face cache (created when missing,
// a partial blob resumed, a corrupt cached copy fetched again) and reused from it online
// and offline, and the one-line error when the hub cannot be reached. Every cache here
// is a temp folder: no test touches the home folder's.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { startLocalHub } from "../../helpers/local_hub.ts";
import {
  fetchVerified,
  type HubAccess,
  hubAccessFromEnv,
  listRevision,
  remoteFile,
} from "../../../lm/hub/download.ts";
import { prepareHfCache } from "../../../lm/hub/hf_cache.ts";

const ROOT = new URL("../../fixtures/neox/repo", import.meta.url).pathname;
const REPO = "test/pythia-tiny";

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

Deno.test("hub access: HF_ENDPOINT, HF_TOKEN and the cache folder from the environment", () => {
  const env = (vars: Record<string, string>) => (k: string) => vars[k];
  assert.deepEqual(hubAccessFromEnv(env({ HOME: "/h" })), {
    endpoint: "https://huggingface.co",
    token: undefined,
    hfCache: "/h/.cache/huggingface/hub",
  });
  const set = hubAccessFromEnv(
    env({ HF_ENDPOINT: "http://mirror/", HF_TOKEN: "hf_x", HF_HOME: "/hf", HOME: "/h" }),
  );
  assert.deepEqual(set, { endpoint: "http://mirror", token: "hf_x", hfCache: "/hf/hub" });
  assert.equal(hubAccessFromEnv(env({ HF_HUB_CACHE: "/c", HOME: "/h" })).hfCache, "/c");
  const off = env({ HF_HUB_CACHE: "/c", HOME: "/h", LAWA_HF_CACHE: "off" });
  assert.equal(hubAccessFromEnv(off).hfCache, null);
  assert.throws(
    () => hubAccessFromEnv(env({ HOME: "/h", LAWA_HF_CACHE: "nope" })),
    /LAWA_HF_CACHE is "nope": set it to off/,
  );
});

Deno.test("hub cache: created when missing; one that cannot be written is left out, said once", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "hf-cache-" });
  try {
    const logs: string[] = [];
    const made = await prepareHfCache(`${tmp}/new/hub`, REPO, (m) => logs.push(m));
    assert.equal(made, `${tmp}/new/hub`);
    assert.ok((await Deno.stat(`${tmp}/new/hub/models--test--pythia-tiny/blobs`)).isDirectory);
    await Deno.writeTextFile(`${tmp}/file`, "not a folder");
    assert.equal(await prepareHfCache(`${tmp}/file/hub`, REPO, (m) => logs.push(m)), null);
    assert.equal(logs.length, 1);
    assert.match(logs[0], /cannot write the Hugging Face cache .*file\/hub/);
    assert.equal(await prepareHfCache(null, REPO, (m) => logs.push(m)), null);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("hub download: verified, a dropped transfer resumed, the token sent", async () => {
  const hub = await startLocalHub({ root: ROOT, repo: REPO, token: "hf_secret" });
  const dir = await Deno.makeTempDir({ prefix: "hub-dl-" });
  try {
    const access: HubAccess = { endpoint: hub.url, token: "hf_secret", hfCache: null };
    const listing = await listRevision(REPO, "step1000", access);
    assert.equal(listing.commit, hub.commitOf("step1000"));
    assert.deepEqual(listing.files, ["config.json", "pytorch_model.bin", "tokenizer.json"]);

    hub.truncateOnce.add("pytorch_model.bin");
    const logs: string[] = [];
    const file = await remoteFile(listing, "pytorch_model.bin", access);
    const original = await Deno.readFile(`${ROOT}/step1000/pytorch_model.bin`);
    assert.equal(file.size, original.length);
    assert.equal(file.etag, sha256(original)); // the LFS sha256, from X-Linked-Etag
    const got = await fetchVerified(listing, file, dir, access, { log: (m) => logs.push(m) });
    assert.equal(got.path, `${dir}/${file.etag}`);
    assert.deepEqual(await Deno.readFile(got.path), original);
    assert.equal(got.downloaded, original.length);
    assert.ok(logs.some((l) => /refused a short file/.test(l)), logs.join("\n"));
    const resumed = hub.requests.filter((r) => r.range && r.range !== "bytes=0-0");
    assert.equal(resumed.length, 1);
    assert.match(resumed[0].range!, new RegExp(`^bytes=\\d+-${original.length - 1}$`));
    assert.ok(Number(/=(\d+)-/.exec(resumed[0].range!)![1]) > 0, "resumed from byte 0");
    assert.ok(hub.requests.every((r) => r.auth === "Bearer hf_secret"));

    // An ETag that is not the content's sha256 (a Xet hash): the sha256 comes from paths-info.
    hub.opaqueEtags.add("pytorch_model.bin");
    const opaque = await remoteFile(listing, "pytorch_model.bin", access);
    assert.equal(opaque.etag, sha256(original));
    assert.ok(hub.requests.some((r) => r.method === "POST" && r.path.includes("/paths-info/")));

    // A small (non-LFS) file is checked against git's blob sha1 in its ETag.
    const config = await remoteFile(listing, "config.json", access);
    assert.match(config.etag, /^[0-9a-f]{40}$/);
    await fetchVerified(listing, config, dir, access);

    // Without the token the hub refuses, in one line naming repo and revision.
    await assert.rejects(
      listRevision(REPO, "step1000", { ...access, token: undefined }),
      (e: Error) =>
        /test\/pythia-tiny revision step1000/.test(e.message) && !e.message.includes("\n"),
    );
  } finally {
    await hub.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hub download: a file whose content does not match the hub's sha256 is refused", async () => {
  const hub = await startLocalHub({ root: ROOT, repo: REPO });
  const dir = await Deno.makeTempDir({ prefix: "hub-dl-" });
  try {
    const access: HubAccess = { endpoint: hub.url, hfCache: `${dir}/hf` };
    const listing = await listRevision(REPO, "step3000", access);
    const file = await remoteFile(listing, "model.safetensors", access);
    hub.corrupt.add("model.safetensors");
    await assert.rejects(fetchVerified(listing, file, dir, access), /refused: content hash/);
    const blobs = `${dir}/hf/models--test--pythia-tiny/blobs`;
    assert.deepEqual([...Deno.readDirSync(blobs)], [], "the bad download was left behind");
    await assert.rejects(listRevision(REPO, "step999", access), /step999/);
  } finally {
    await hub.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hub download: a Hugging Face cache is reused, online and offline", async () => {
  const hub = await startLocalHub({ root: ROOT, repo: REPO });
  const cache = await Deno.makeTempDir({ prefix: "hf-cache-" });
  const dir = await Deno.makeTempDir({ prefix: "hub-dl-" });
  try {
    // The layout huggingface_hub writes: blobs/<etag>, refs/<rev>, snapshots/<commit>/<file>.
    const repoDir = `${cache}/models--test--pythia-tiny`;
    const bytes = await Deno.readFile(`${ROOT}/step3000/model.safetensors`);
    const oid = sha256(bytes);
    const commit = hub.commitOf("step3000");
    await Deno.mkdir(`${repoDir}/blobs`, { recursive: true });
    await Deno.mkdir(`${repoDir}/refs`, { recursive: true });
    await Deno.mkdir(`${repoDir}/snapshots/${commit}`, { recursive: true });
    await Deno.writeFile(`${repoDir}/blobs/${oid}`, bytes);
    await Deno.writeTextFile(`${repoDir}/refs/step3000`, commit);
    await Deno.symlink(`../../blobs/${oid}`, `${repoDir}/snapshots/${commit}/model.safetensors`);

    const online: HubAccess = { endpoint: hub.url, hfCache: cache };
    const listing = await listRevision(REPO, "step3000", online);
    const file = await remoteFile(listing, "model.safetensors", online);
    const logs: string[] = [];
    const reused = await fetchVerified(listing, file, dir, online, { log: (m) => logs.push(m) });
    assert.ok(logs.some((l) => /reused from the Hugging Face cache/.test(l)));
    assert.deepEqual(reused, { path: `${repoDir}/blobs/${oid}`, downloaded: 0 });
    const bodies = hub.requests.filter((r) =>
      r.path.endsWith("model.safetensors") && r.range !== "bytes=0-0"
    );
    assert.deepEqual(bodies, [], "the cached blob was downloaded again");

    // Offline: the refs/snapshots of the cache stand in for the hub.
    const offline: HubAccess = { endpoint: "http://127.0.0.1:9", hfCache: cache };
    const cached = await listRevision(REPO, "step3000", offline);
    assert.equal(cached.commit, commit);
    assert.deepEqual(cached.files, ["model.safetensors"]);
    const cachedFile = await remoteFile(cached, "model.safetensors", offline);
    assert.equal(cachedFile.etag, oid);
    const got = await fetchVerified(cached, cachedFile, `${dir}/offline`, offline);
    assert.deepEqual(await Deno.readFile(got.path), bytes);

    // Offline without the revision in the cache: one line naming repo, revision, endpoint.
    await assert.rejects(listRevision(REPO, "step5000", offline), (e: Error) => {
      assert.match(e.message, /test\/pythia-tiny revision step5000/);
      assert.match(e.message, /http:\/\/127\.0\.0\.1:9 is unreachable/);
      assert.ok(!e.message.includes("\n"), e.message);
      return true;
    });
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hub download: downloads are kept in the Hugging Face cache, which serves them offline", async () => {
  const hub = await startLocalHub({ root: ROOT, repo: REPO });
  const tmp = await Deno.makeTempDir({ prefix: "hf-cache-" });
  const cache = `${tmp}/missing/hub`; // created by the first download
  const dir = `${tmp}/work`; // not used while there is a cache
  try {
    const online: HubAccess = { endpoint: hub.url, hfCache: cache };
    const listing = await listRevision(REPO, "step6000", online);
    const root = `${cache}/models--test--pythia-tiny`;
    const bytes = await Deno.readFile(`${ROOT}/step6000/pytorch_model.bin`);
    const oid = sha256(bytes);
    // A partial blob, as a killed run leaves it: resumed from its last byte.
    const half = bytes.length >> 1;
    await Deno.mkdir(`${root}/blobs`, { recursive: true });
    await Deno.writeFile(`${root}/blobs/${oid}.incomplete`, bytes.subarray(0, half));
    const logs: string[] = [];
    for (const path of listing.files) {
      const file = await remoteFile(listing, path, online);
      const got = await fetchVerified(listing, file, dir, online, { log: (m) => logs.push(m) });
      assert.equal(got.path, `${root}/blobs/${file.etag}`);
    }
    assert.ok(logs.some((l) => l.includes(`resuming at byte ${half} of ${bytes.length}`)));
    const ranges = hub.requests.filter((r) => r.path.endsWith("pytorch_model.bin") && r.range);
    assert.ok(ranges.some((r) => r.range === `bytes=${half}-${bytes.length - 1}`));
    await assert.rejects(Deno.stat(dir), Deno.errors.NotFound);

    const commit = hub.commitOf("step6000");
    assert.equal(await Deno.readTextFile(`${root}/refs/step6000`), commit);
    assert.deepEqual(await Deno.readFile(`${root}/snapshots/${commit}/pytorch_model.bin`), bytes);
    assert.equal(
      await Deno.readLink(`${root}/snapshots/${commit}/pytorch_model.bin`),
      `../../blobs/${oid}`,
    );
    assert.deepEqual(
      [...Deno.readDirSync(`${root}/blobs`)].map((e) => e.name).filter((n) => n.includes(".")),
      [],
      "a partial download was left in the cache",
    );

    // Later, offline: the cache serves the revision, checked as a download is.
    const offline: HubAccess = { endpoint: "http://127.0.0.1:9", hfCache: cache };
    const cached = await listRevision(REPO, "step6000", offline);
    assert.deepEqual(cached.files, listing.files);
    const file = await remoteFile(cached, "pytorch_model.bin", offline);
    assert.equal(file.etag, oid);
    const got = await fetchVerified(cached, file, dir, offline);
    assert.deepEqual(got, { path: `${root}/blobs/${oid}`, downloaded: 0 });

    // A cached copy gone bad (same size): refused offline, fetched again online.
    const bad = bytes.slice();
    bad[10] ^= 0xff;
    await Deno.writeFile(`${root}/blobs/${oid}`, bad);
    await assert.rejects(fetchVerified(cached, file, dir, offline), /refused: .*content hash/);
    const before = hub.requests.length;
    const again = await fetchVerified(listing, file, dir, online, { log: (m) => logs.push(m) });
    assert.equal(again.downloaded, bytes.length);
    assert.deepEqual(await Deno.readFile(again.path), bytes);
    assert.ok(
      logs.some((l) => /has content hash [0-9a-f]+, not [0-9a-f]+; downloading it again/.test(l)),
    );
    assert.ok(hub.requests.slice(before).some((r) => r.path.endsWith("pytorch_model.bin")));
  } finally {
    await hub.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("hub download: two fetches of one file into one cache at once: one download", async () => {
  const hub = await startLocalHub({ root: ROOT, repo: REPO });
  const cache = await Deno.makeTempDir({ prefix: "hf-cache-" });
  try {
    const access: HubAccess = { endpoint: hub.url, hfCache: cache };
    const listing = await listRevision(REPO, "step3000", access);
    const file = await remoteFile(listing, "model.safetensors", access);
    const before = hub.requests.length;
    const both = await Promise.all([
      fetchVerified(listing, file, `${cache}/a`, access),
      fetchVerified(listing, file, `${cache}/b`, access),
    ]);
    assert.deepEqual(both.map((g) => g.downloaded).sort((x, y) => x - y), [0, file.size]);
    assert.equal(both[0].path, both[1].path);
    const bodies = hub.requests.slice(before).filter((r) => r.range !== "bytes=0-0");
    assert.equal(bodies.length, 1, JSON.stringify(bodies));
    const bytes = await Deno.readFile(`${ROOT}/step3000/model.safetensors`);
    assert.deepEqual(await Deno.readFile(both[0].path), bytes);
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
  }
});
