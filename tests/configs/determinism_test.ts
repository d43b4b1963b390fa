// Bit-reproducibility at seed 0: the same tiny config run through the command line into
// two fresh artifact folders must write byte-identical checkpoints (every safetensors
// file of every cache entry, in-training EMA and LAWA included) and identical numbers in
// DuckDB (training log, held-out losses, per-window losses), on each backend that claims
// determinism: the pure-JS cpu backend, wasm without a BLAS, and wasm with the native
// BLAS when one is installed.
import assert from "node:assert/strict";
import { ResultsDb } from "../../pipeline/results.ts";
import { findBlas } from "../../lm/backend/blas.ts";

const CONFIG = new URL("../fixtures/determinism/tiny.yaml", import.meta.url).pathname;
const MAIN = new URL("../../main.ts", import.meta.url).pathname;

async function run(artifacts: string, backend: string, env: Record<string, string>) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      MAIN,
      "run",
      CONFIG,
      "--artifacts",
      artifacts,
      "--backend",
      backend,
    ],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).output();
  const dec = new TextDecoder();
  const text = dec.decode(out.stdout) + dec.decode(out.stderr);
  assert.equal(out.code, 0, text);
}

/** Cache key -> node name, from the entries' manifests. */
async function nodesByKey(artifacts: string): Promise<Map<string, string>> {
  const nodes = new Map<string, string>();
  for await (const e of Deno.readDir(`${artifacts}/cache`)) {
    if (!e.isDirectory || e.name.startsWith(".")) continue;
    const manifest = JSON.parse(
      await Deno.readTextFile(`${artifacts}/cache/${e.name}/manifest.json`),
    );
    nodes.set(e.name, manifest.node);
  }
  return nodes;
}

/**
 * `node/relative path` -> bytes of every .safetensors file. Keyed by node, not cache
 * key: an entry's digest covers its logs' wall-clock timings, so downstream keys of two
 * fresh runs differ even when every checkpoint is the same.
 */
async function checkpoints(artifacts: string): Promise<Map<string, Uint8Array>> {
  const found = new Map<string, Uint8Array>();
  const walk = async (dir: string, rel: string) => {
    for await (const e of Deno.readDir(dir)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(path, `${rel}${e.name}/`);
      else if (e.name.endsWith(".safetensors")) found.set(rel + e.name, await Deno.readFile(path));
    }
  };
  for (const [key, node] of await nodesByKey(artifacts)) {
    await walk(`${artifacts}/cache/${key}`, `${node}/`);
  }
  return found;
}

async function numbers(artifacts: string): Promise<unknown> {
  const nodes = await nodesByKey(artifacts);
  // series_id is "<producing entry's key>/<subfolder>": name the node instead.
  const named = (rows: Record<string, unknown>[]) =>
    rows.map((r) => {
      const [key, ...rest] = String(r.series_id).split("/");
      return { ...r, series_id: [nodes.get(key) ?? key, ...rest].join("/") };
    }).sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
  const db = new ResultsDb(artifacts);
  return {
    train: await db.query(`SELECT step, train_loss, grad_norm, lr FROM train_log ORDER BY step`),
    loss: named(await db.query(`SELECT series_id, step, domain, loss, n_tokens FROM eval_loss`)),
    windows: named(
      await db.query(`SELECT series_id, step, domain, "window", loss FROM eval_windows`),
    ),
  };
}

const variants: { name: string; backend: string; env: Record<string, string> }[] = [
  { name: "cpu", backend: "cpu", env: {} },
  { name: "wasm without BLAS", backend: "wasm", env: { LAWA_BLAS_LIB: "none" } },
];
if (findBlas().blas) variants.push({ name: "wasm with native BLAS", backend: "wasm", env: {} });

for (const v of variants) {
  Deno.test(`seed 0 is bit-reproducible across two fresh runs (${v.name})`, async () => {
    const a = await Deno.makeTempDir({ prefix: "determinism-a-" });
    const b = await Deno.makeTempDir({ prefix: "determinism-b-" });
    try {
      await run(a, v.backend, v.env);
      await run(b, v.backend, v.env);
      const ca = await checkpoints(a);
      const cb = await checkpoints(b);
      // 3 original, 3 EMA and 2 LAWA checkpoints, keyed by node and path.
      assert.ok(ca.size >= 8, `only ${ca.size} checkpoints written`);
      assert.deepEqual([...ca.keys()].sort(), [...cb.keys()].sort());
      for (const [path, bytes] of ca) {
        assert.ok(bytes.length > 0);
        assert.deepEqual(bytes, cb.get(path), `${path} differs between the two runs`);
      }
      const na = await numbers(a);
      assert.ok((na as { windows: unknown[] }).windows.length > 0);
      assert.deepEqual(na, await numbers(b));
    } finally {
      await Deno.remove(a, { recursive: true });
      await Deno.remove(b, { recursive: true });
    }
  });
}
