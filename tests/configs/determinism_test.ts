// Bit-reproducibility at seed 0: the same tiny config run through the command line into
// two fresh artifact folders must give every node the same cache key and write
// byte-identical outputs (checkpoints, in-training EMA and LAWA included, logs, result
// rows), side files (`_side/`: wall-clock timings) excepted, and identical numbers in
// DuckDB (training log, held-out losses, per-window losses), on each backend that claims
// determinism: the pure-JS cpu backend, wasm without a BLAS, and wasm with the native
// BLAS when one is installed.
import assert from "node:assert/strict";
import { ResultsDb } from "../../pipeline/results.ts";
import { findBlas } from "../../lm/backend/blas.ts";
import { SIDE_DIR } from "../../pipeline/store.ts";

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

interface Entry {
  node: string;
  digest: string;
  /** Relative path -> bytes of every output the manifest lists. */
  files: Map<string, Uint8Array>;
}

/** Every cache entry by key: its node, digest and output files, as its manifest lists them. */
async function entries(artifacts: string): Promise<Map<string, Entry>> {
  const found = new Map<string, Entry>();
  for await (const e of Deno.readDir(`${artifacts}/cache`)) {
    if (!e.isDirectory || e.name.startsWith(".")) continue;
    const dir = `${artifacts}/cache/${e.name}`;
    const manifest = JSON.parse(await Deno.readTextFile(`${dir}/manifest.json`));
    const files = new Map<string, Uint8Array>();
    for (const rel of Object.keys(manifest.outputs).sort()) {
      files.set(rel, await Deno.readFile(`${dir}/${rel}`));
    }
    found.set(e.name, { node: manifest.node, digest: manifest.digest, files });
  }
  return found;
}

/**
 * Both runs must give every node the same cache key and digest, and every output the
 * same bytes, except side files (`_side/`: wall-clock timings, documented in
 * pipeline/store.ts), which must stay out of the digest.
 */
function assertSameEntries(a: Map<string, Entry>, b: Map<string, Entry>): void {
  const keysByNode = (m: Map<string, Entry>) =>
    Object.fromEntries([...m].map(([key, e]) => [e.node, key]));
  assert.deepEqual(keysByNode(b), keysByNode(a), "cache keys differ between the two runs");
  for (const [key, ea] of a) {
    const eb = b.get(key)!;
    assert.equal(eb.digest, ea.digest, `${ea.node}: digests differ`);
    assert.deepEqual([...eb.files.keys()], [...ea.files.keys()], `${ea.node}: other files`);
    for (const [rel, bytes] of ea.files) {
      if (rel.startsWith(`${SIDE_DIR}/`)) continue;
      assert.deepEqual(eb.files.get(rel), bytes, `${ea.node}/${rel} differs between the two runs`);
    }
  }
}

/** `node/relative path` -> bytes of every .safetensors file. */
function checkpoints(found: Map<string, Entry>): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const e of found.values()) {
    for (const [rel, bytes] of e.files) {
      if (rel.endsWith(".safetensors")) out.set(`${e.node}/${rel}`, bytes);
    }
  }
  return out;
}

async function numbers(artifacts: string): Promise<unknown> {
  const sorted = (rows: Record<string, unknown>[]) =>
    rows.sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
  const db = new ResultsDb(artifacts);
  return {
    train: await db.query(`SELECT step, train_loss, grad_norm, lr FROM train_log ORDER BY step`),
    loss: sorted(await db.query(`SELECT series_id, step, domain, loss, n_tokens FROM eval_loss`)),
    windows: sorted(
      await db.query(`SELECT series_id, step, domain, "window", loss FROM eval_windows`),
    ),
  };
}

/** The timings kept in side files still reach DuckDB. */
async function assertTimingsLoaded(artifacts: string): Promise<void> {
  const db = new ResultsDb(artifacts);
  const log = await db.query(`SELECT step, tokens_per_s, elapsed_s FROM train_log`);
  assert.ok(log.length > 0 && log.every((r) => Number(r.tokens_per_s) > 0));
  assert.ok(log.every((r) => Number(r.elapsed_s) > 0), "train_log lacks elapsed_s");
  const runs = await db.query(`SELECT wall_s FROM train_runs`);
  assert.ok(runs.length === 1 && Number(runs[0].wall_s) > 0, "train_runs lacks wall_s");
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
      const ea = await entries(a);
      const eb = await entries(b);
      assert.equal(ea.size, 6, `${ea.size} cache entries`);
      assertSameEntries(ea, eb);
      // 3 original, 3 EMA and 2 LAWA checkpoints among the outputs compared.
      const ca = checkpoints(ea);
      assert.ok(ca.size >= 8, `only ${ca.size} checkpoints written`);
      assert.ok([...ca.values()].every((bytes) => bytes.length > 0));
      await assertTimingsLoaded(a);
      const na = await numbers(a);
      assert.ok((na as { windows: unknown[] }).windows.length > 0);
      assert.deepEqual(na, await numbers(b));
    } finally {
      await Deno.remove(a, { recursive: true });
      await Deno.remove(b, { recursive: true });
    }
  });
}
