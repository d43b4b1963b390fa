// End to end: a tiny copy of configs/pythia.yaml (tests/fixtures/neox/pythia-tiny.yaml)
// run through `deno task run` against the fixture repo served by the local hub on
// 127.0.0.1 (HF_ENDPOINT; HF_HUB_CACHE a folder of the test's own, so downloads are kept
// there, never in the home folder's cache), one weights download dropped halfway and
// resumed. Checked as a user would: the identical revision reported and left out of the
// series, LAWA skipping the window that needed it, one loss row per (series, step,
// domain), zero-shot rows, the figures, the downloads in the Hugging Face cache, and a
// second run that executes nothing.
import assert from "node:assert/strict";
import { ResultsDb } from "../../pipeline/results.ts";
import { startLocalHub } from "../helpers/local_hub.ts";

const CONFIG = new URL("../fixtures/neox/pythia-tiny.yaml", import.meta.url).pathname;
const REPO_ROOT = new URL("../fixtures/neox/repo", import.meta.url).pathname;
const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const ROOT = new URL("../../", import.meta.url).pathname;
const FIGURES = [
  "loss-vs-step",
  "per-domain",
  "ablation-k",
  "ablation-nu",
  "final-table",
  "zeroshot",
];

async function cli(
  artifacts: string,
  env: Record<string, string>,
): Promise<{ code: number; text: string }> {
  // Through `deno task run`, so the task's permissions (network included) are the ones tested.
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "run", CONFIG, "--artifacts", artifacts],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...env },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, text: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

Deno.test("pythia (tiny): hub revisions -> LAWA/EMA/SWA -> evaluate -> figures, against a local hub", async () => {
  const hub = await startLocalHub({ root: REPO_ROOT, repo: "test/pythia-tiny" });
  const artifacts = await Deno.makeTempDir({ prefix: "e2e-pythia-" });
  const env = { HF_ENDPOINT: hub.url, HF_HUB_CACHE: `${artifacts}/hf-cache`, HF_TOKEN: "" };
  try {
    hub.truncateOnce.add("pytorch_model.bin");
    const first = await cli(artifacts, env);
    assert.equal(first.code, 0, first.text);
    assert.match(first.text, /17 ran, 0 cached, 0 failed/);
    assert.match(first.text, /step4000 holds the same weights as step3000/);
    assert.match(first.text, /resuming at byte \d+/);
    assert.ok(
      hub.requests.some((r) => r.range && /^bytes=[1-9]\d*-\d+$/.test(r.range)),
      "no resumed (Range) request",
    );
    const kept = `${artifacts}/hf-cache/models--test--pythia-tiny`;
    assert.equal(await Deno.readTextFile(`${kept}/refs/step6000`), hub.commitOf("step6000"));

    const db = new ResultsDb(artifacts);
    const revisions = await db.query(
      `SELECT revision, duplicate_of FROM hub_revisions ORDER BY step`,
    );
    assert.deepEqual(revisions.map((r) => [r.revision, r.duplicate_of]), [
      ["step1000", null],
      ["step2000", null],
      ["step3000", null],
      ["step4000", "step3000"],
      ["step5000", null],
      ["step6000", null],
    ]);
    const steps = async (method: string, label = "%") =>
      (await db.query(
        `SELECT DISTINCT e.step FROM eval_loss e JOIN series s USING (series_id)
         WHERE s.method = ? AND s.label LIKE ? ORDER BY e.step`,
        [method, label],
      )).map((r) => Number(r.step));
    assert.deepEqual(await steps("original"), [1000, 2000, 3000, 5000, 6000]);
    // k=2, ν=1K from 2K: the window at 5K needs the left-out 4K and is skipped.
    assert.deepEqual(await steps("lawa", "LAWA k=2 ν=1000 from step 2000"), [2000, 3000, 6000]);
    assert.deepEqual(await steps("ema"), [2000, 3000, 5000, 6000]);
    const dup = await db.query(
      `SELECT series_id, step, domain, count(*) AS n FROM eval_loss GROUP BY ALL HAVING count(*) <> 1`,
    );
    assert.deepEqual(dup, []);
    const domains = await db.query(`SELECT DISTINCT domain FROM eval_loss ORDER BY domain`);
    assert.deepEqual(domains.map((d) => d.domain), ["all", "novel", "speeches"]);
    const zeroshot = await db.query(`SELECT DISTINCT task, step FROM zeroshot ORDER BY task`);
    assert.deepEqual(zeroshot.map((z) => [z.task, Number(z.step)]), [
      ["lastword-novel", 6000],
      ["lastword-speeches", 6000],
    ]);

    const dir = `${artifacts}/figures/pythia-tiny`;
    for (const id of FIGURES) {
      assert.ok((await Deno.stat(`${dir}/${id}.png`)).size > 0, `${id}.png`);
    }

    const requestsBefore = hub.requests.length;
    const second = await cli(artifacts, env);
    assert.equal(second.code, 0, second.text);
    assert.match(second.text, /0 ran, 17 cached, 0 failed/);
    assert.equal(hub.requests.length, requestsBefore, "a cached run asked the hub again");
  } finally {
    await hub.close();
    await Deno.remove(artifacts, { recursive: true });
  }
});

Deno.test("pythia: offline, the hub step fails in one line naming repo, revision and endpoint", async () => {
  const artifacts = await Deno.makeTempDir({ prefix: "e2e-pythia-offline-" });
  try {
    const r = await cli(artifacts, {
      HF_ENDPOINT: "http://127.0.0.1:9",
      HF_HUB_CACHE: `${artifacts}/hf-cache`, // empty: created, holds nothing
    });
    assert.notEqual(r.code, 0);
    const line = r.text.split("\n").find((l) => /FAILED pythia/.test(l));
    assert.ok(line, r.text);
    assert.match(line!, /test\/pythia-tiny revision step1000/);
    assert.match(line!, /http:\/\/127\.0\.0\.1:9 is unreachable/);
  } finally {
    await Deno.remove(artifacts, { recursive: true });
  }
});

Deno.test("configs/pythia.yaml plans the paper's protocol: 29 instances, nothing fetched", async () => {
  const artifacts = await Deno.makeTempDir({ prefix: "pythia-plan-" });
  try {
    const config = new URL("../../configs/pythia.yaml", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", MAIN, "run", config, "--dry-run", "--artifacts", artifacts],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1", HF_ENDPOINT: "http://127.0.0.1:9", HF_HUB_CACHE: `${artifacts}/hf` },
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    // hub, corpus, tokens; lawa, ema, swa, 3 + 6 ablation averages; 13 evaluations; figures
    assert.match(text, /29 would run, 0 cached/);
    assert.match(text, /would run ablation-nu\[k=5 nu=10000\]/);
  } finally {
    await Deno.remove(artifacts, { recursive: true });
  }
});
