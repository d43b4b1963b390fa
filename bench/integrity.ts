// Benchmarks of what "nothing lost, nothing silently wrong" costs:
// 1. one write to results.duckdb through a private copy renamed over the file (what
//    ResultsDb does, so readers never block a run) against attaching the file and
//    writing it in place (the baseline), for a small and a larger database. A write
//    through ResultsDb also waits up to 50 ms for other writes to join its batch;
// 2. the cheap check of a cache entry on use (sizes and file stamps) against a full
//    rehash of its outputs (`status --verify`), for an entry of many checkpoint-sized
//    files.
import { withAttached } from "../pipeline/duckdb.ts";
import { ResultsDb } from "../pipeline/results.ts";
import { type KeyParts, Store } from "../pipeline/store.ts";

async function timeIt(runs: number, fn: () => Promise<unknown>): Promise<number> {
  await fn(); // warm-up
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await fn();
  return (performance.now() - t0) / runs;
}

const dir = await Deno.makeTempDir({ prefix: "bench-integrity-" });
try {
  console.log("1. one results write: copy + rename (readers never block) vs in place");
  for (const rows of [10_000, 2_000_000]) {
    const art = `${dir}/art-${rows}`;
    const db = new ResultsDb(art);
    await db.withConnection((c) =>
      c.run(`CREATE TABLE big AS SELECT range AS i, random() AS x FROM range(${rows})`)
    );
    await db.flush();
    const mib = (await Deno.stat(db.path)).size / 2 ** 20;
    let n = 0;
    const swapped = await timeIt(5, async () => {
      await db.withConnection((c) => c.run(`INSERT INTO big VALUES (${--n}, 0)`));
      await db.flush(); // until the copy has replaced the file
    });
    const inPlace = await timeIt(5, () =>
      withAttached(db.path, async (c) => {
        await c.run(`INSERT INTO big VALUES (${--n}, 0)`);
        await c.run("CHECKPOINT");
      }));
    console.log(
      `   ${mib.toFixed(1)} MiB database: copy+rename ${swapped.toFixed(1)} ms, in place ` +
        `${inPlace.toFixed(1)} ms (ratio ${(swapped / inPlace).toFixed(2)}x)`,
    );
  }

  console.log("2. checking a cache entry: on use (sizes, stamps) vs full rehash (--verify)");
  const store = new Store(`${dir}/cache-art`);
  await store.init();
  const key = "b".repeat(64);
  const work = await store.prepareWorkDir(key, false);
  const files = 240;
  const bytes = 4 << 20;
  const block = new Uint8Array(bytes);
  for (let i = 0; i < files; i++) {
    crypto.getRandomValues(block.subarray(0, 65536));
    await Deno.writeFile(`${work}/step-${String(i).padStart(6, "0")}.safetensors`, block);
  }
  const parts: KeyParts = {
    step: "b",
    code: "",
    params: {},
    inputs: {},
    backend: null,
    seed: null,
  };
  const now = new Date().toISOString();
  await store.commit(key, {
    step: "b",
    node: "b",
    params: {},
    inputs: {},
    keyParts: parts,
    started: now,
    finished: now,
    duration_s: 0,
    backend: "cpu",
    seed: 0,
    host: "bench",
    rows: {},
  });
  const cheap = await timeIt(5, () => store.inspect(key));
  const full = await timeIt(2, () => store.inspect(key, { full: true }));
  console.log(
    `   ${files} files, ${(files * bytes / 2 ** 30).toFixed(2)} GiB: on use ${
      cheap.toFixed(1)
    } ms, ` +
      `full rehash ${full.toFixed(0)} ms (the check on use costs ${
        (cheap / full * 100).toFixed(2)
      }% ` +
      `of a rehash)`,
  );
} finally {
  await Deno.remove(dir, { recursive: true });
}
