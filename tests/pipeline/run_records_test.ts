import assert from "node:assert/strict";
import {
  chooseRuns,
  commandLine,
  parseAge,
  readRunRecords,
  recordRun,
  type RunRecord,
  type StoredRunRecord,
} from "../../pipeline/run_records.ts";
import { UserError } from "../../pipeline/errors.ts";
import { tempDir } from "./toy_helpers.ts";

const DAY = 86_400_000;
const NOW = new Date("2030-01-31T00:00:00Z");

function stored(name: string, args: string[], daysAgo: number, complete = true): StoredRunRecord {
  const record: RunRecord = {
    format: "run-record/1",
    pipeline: "configs/toy.yaml",
    args,
    backend: "cpu",
    seeds: [0],
    started: new Date(NOW.getTime() - daysAgo * DAY - 1000).toISOString(),
    finished: new Date(NOW.getTime() - daysAgo * DAY).toISOString(),
    complete,
    keys: [name],
    resumable: [],
  };
  return { path: name, record };
}

Deno.test("a complete run supersedes older runs of its command line only", () => {
  const runs = [
    stored("old", ["--seeds", "3"], 5),
    stored("other", ["--set", "a.b=1"], 4),
    stored("new", ["--seeds", "3"], 3),
    stored("failed", ["--seeds", "3"], 1, false),
  ];
  const { counted, dropped } = chooseRuns(runs, { now: NOW });
  assert.deepEqual(counted.map((r) => r.path), ["other", "new", "failed"]);
  assert.deepEqual(dropped.map((d) => d.path), ["old"]);
  assert.match(dropped[0].why, /^superseded by the run of 2030-01-28/);
  assert.equal(commandLine(runs[1].record), "run toy --set a.b=1");
});

Deno.test("--older-than and --keep-runs cut the oldest records", () => {
  const runs = [stored("a", ["--seed", "1"], 9), stored("b", ["--seed", "2"], 2)];
  const byAge = chooseRuns(runs, { now: NOW, olderThanMs: parseAge("7d") });
  assert.deepEqual(byAge.counted.map((r) => r.path), ["b"]);
  assert.deepEqual(byAge.dropped, [{ path: "a", why: "finished 1w ago" }]);
  const byCount = chooseRuns(runs, { now: NOW, keepRuns: 1 });
  assert.deepEqual(byCount.counted.map((r) => r.path), ["b"]);
  assert.deepEqual(chooseRuns(runs, { now: NOW, keepRuns: 0 }).counted, []);
  assert.equal(parseAge("12h"), 12 * 3_600_000);
  assert.throws(() => parseAge("7 days"), /--older-than: expected an age like 30m/);
});

Deno.test("records read back oldest first; a garbled one stops the reader", async () => {
  const dir = await tempDir();
  try {
    assert.deepEqual(await readRunRecords(dir), []); // no runs folder yet
    const { format: _, ...later } = stored("k2", [], 1).record;
    const { format: __, ...earlier } = stored("k1", [], 2).record;
    await recordRun(dir, later);
    await recordRun(dir, earlier);
    const back = await readRunRecords(dir);
    assert.deepEqual(back.map((r) => r.record.keys), [["k1"], ["k2"]]);
    await Deno.writeTextFile(`${dir}/runs/cut.json`, '{"format": "run-rec');
    await assert.rejects(
      () => readRunRecords(dir),
      (e) => e instanceof UserError && /run record .*cut\.json: not a run record/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
