// Revisions fetched from the local hub (tests/helpers/local_hub.ts) with @huggingface/hub:
// verified downloads, a dropped transfer resumed with a Range request, a corrupt file
// refused, HF_TOKEN sent, a Hugging Face cache reused (online and offline), and the
// one-line error when the hub cannot be reached.
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
    const path = await fetchVerified(listing, file, dir, access, { log: (m) => logs.push(m) });
    assert.deepEqual(await Deno.readFile(path), original);
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
    const access: HubAccess = { endpoint: hub.url, hfCache: null };
    const listing = await listRevision(REPO, "step3000", access);
    const file = await remoteFile(listing, "model.safetensors", access);
    hub.corrupt.add("model.safetensors");
    await assert.rejects(fetchVerified(listing, file, dir, access), /refused: content hash/);
    assert.deepEqual([...Deno.readDirSync(dir)], [], "the bad download was left behind");
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
    await fetchVerified(listing, file, dir, online, { log: (m) => logs.push(m) });
    assert.ok(logs.some((l) => /reused from the Hugging Face cache/.test(l)));
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
    assert.deepEqual(await Deno.readFile(got), bytes);

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

Deno.test("hub download: verified files are added to an existing Hugging Face cache", async () => {
  const hub = await startLocalHub({ root: ROOT, repo: REPO });
  const cache = await Deno.makeTempDir({ prefix: "hf-cache-" });
  const dir = await Deno.makeTempDir({ prefix: "hub-dl-" });
  try {
    const online: HubAccess = { endpoint: hub.url, hfCache: cache };
    const listing = await listRevision(REPO, "step6000", online);
    for (const path of listing.files) {
      await fetchVerified(listing, await remoteFile(listing, path, online), dir, online);
    }
    const commit = hub.commitOf("step6000");
    const root = `${cache}/models--test--pythia-tiny`;
    assert.equal(await Deno.readTextFile(`${root}/refs/step6000`), commit);
    const bytes = await Deno.readFile(`${ROOT}/step6000/pytorch_model.bin`);
    assert.deepEqual(await Deno.readFile(`${root}/snapshots/${commit}/pytorch_model.bin`), bytes);
    assert.ok((await Deno.stat(`${root}/blobs/${sha256(bytes)}`)).isFile);

    // Later, offline, into a fresh folder: the cache serves the revision.
    const offline: HubAccess = { endpoint: "http://127.0.0.1:9", hfCache: cache };
    const cached = await listRevision(REPO, "step6000", offline);
    assert.deepEqual(cached.files, listing.files);
    const file = await remoteFile(cached, "pytorch_model.bin", offline);
    const got = await fetchVerified(cached, file, `${dir}/again`, offline);
    assert.deepEqual(await Deno.readFile(got), bytes);

    // A cache folder that does not exist is not created.
    const none: HubAccess = { endpoint: hub.url, hfCache: `${cache}/absent` };
    const l2 = await listRevision(REPO, "step1000", none);
    await fetchVerified(l2, await remoteFile(l2, "config.json", none), `${dir}/x`, none);
    await assert.rejects(Deno.stat(`${cache}/absent`), Deno.errors.NotFound);
  } finally {
    await hub.close();
    await Deno.remove(cache, { recursive: true });
    await Deno.remove(dir, { recursive: true });
  }
});
