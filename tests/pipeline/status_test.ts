// `status` names an instance that is being built right now, here or on another node
// (whoever holds its lock), instead of calling it missing.
import assert from "node:assert/strict";
import { cli } from "./fault_helpers.ts";
import { cacheKeys, toyProject, writeOwner } from "./toy_helpers.ts";

Deno.test("status shows who is building a missing instance; a dead owner leaves it missing", async () => {
  const { dir, art, common } = await toyProject();
  assert.equal((await cli(["run", "toy", ...common])).code, 0);
  const keys = await cacheKeys(art);
  for (const key of keys) await Deno.remove(`${art}/cache/${key}`, { recursive: true });

  // With the cache empty, only the two sources have keys (their inputs are built).
  const before = await cli(["status", "toy", ...common]);
  const sources = [...before.out.matchAll(/^(source\[offset=\d+\]) +missing +([0-9a-f]{12})/gm)];
  assert.equal(sources.length, 2, before.out);
  const [[, building, prefix], [, other, otherPrefix]] = sources;
  const key = keys.find((k) => k.startsWith(prefix))!;
  const otherKey = keys.find((k) => k.startsWith(otherPrefix))!;

  const node = `node-${crypto.randomUUID().slice(0, 8)}`;
  await writeOwner(art, key, node, 4242);
  await writeOwner(art, otherKey, node, 4243, 120); // silent for 2 minutes: a dead node
  const after = await cli(["status", "toy", ...common]);
  const escaped = building.replace(/[[\]]/g, "\\$&");
  assert.match(
    after.out,
    new RegExp(`^${escaped} +running \\(${node} pid 4242, \\d+(\\.\\d+)?s\\) +${prefix}`, "m"),
  );
  assert.match(after.out, new RegExp(`^${other.replace(/[[\]]/g, "\\$&")} +missing +`, "m"));
  assert.match(after.out, /0 of 5 instances cached, 1 running/);
  await Deno.remove(dir, { recursive: true });
});
