import assert from "node:assert/strict";
import { readJsonLog } from "../../pipeline/jsonl.ts";

Deno.test("readJsonLog: a missing log is empty; blank lines and a line cut by a crash are skipped", async () => {
  const dir = await Deno.makeTempDir({ prefix: "jsonl-" });
  try {
    assert.deepEqual(await readJsonLog(`${dir}/none.jsonl`), []);
    const path = `${dir}/log.jsonl`;
    await Deno.writeTextFile(path, '{"step":1}\n\n{"step":2}\n{"step":3,"lo');
    assert.deepEqual(await readJsonLog(path), [{ step: 1 }, { step: 2 }]);
    await Deno.mkdir(`${dir}/folder.jsonl`);
    await assert.rejects(() => readJsonLog(`${dir}/folder.jsonl`)); // not a file: not "missing"
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
