// `deno task score` run as a user runs it, on the random GPT-NeoX fixture folders,
// against the independent numpy forward (tests/fixtures/neox/make_fixture.py).
import assert from "node:assert/strict";
import { parseScoreArgs } from "../../cli/score.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const FIXTURE = `${ROOT}tests/fixtures/neox`;
const expected = JSON.parse(await Deno.readTextFile(`${FIXTURE}/expected.json`));

async function scoreCli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "score", ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
}

Deno.test("deno task score: a .bin token file equals the numpy forward to 1e-4", async () => {
  const r = await scoreCli(`${FIXTURE}/repo/step6000`, `${FIXTURE}/tokens.bin`, "--seq-len", "16");
  assert.equal(r.code, 0, r.err);
  const lines = r.out.trim().split("\n");
  assert.equal(lines.length, 1, r.out);
  const row = JSON.parse(lines[0]);
  assert.ok(Math.abs(row.loss - expected.revisions.step6000.loss) < 1e-4, lines[0]);
  assert.equal(row.tokens, 96);
  assert.equal(row.model_type, "gpt_neox");
});

Deno.test("deno task score: a text file goes through the folder's tokenizer.json", async () => {
  const r = await scoreCli(`${FIXTURE}/repo/main`, `${FIXTURE}/sample.txt`, "--seq-len", "8");
  assert.equal(r.code, 0, r.err);
  const row = JSON.parse(r.out);
  assert.equal(row.tokens, expected.sample_tokens_step6000);
  assert.ok(Math.abs(row.loss - expected.sample_loss_step6000) < 1e-4, r.out);
});

Deno.test("deno task score: one-line errors", async () => {
  const tooLong = await scoreCli(
    `${FIXTURE}/repo/main`,
    `${FIXTURE}/tokens.bin`,
    "--seq-len",
    "65",
  );
  assert.equal(tooLong.code, 1);
  assert.match(tooLong.err.trim(), /^score: seq-len 65 exceeds the model's context of 64 tokens$/);
  const noWeights = await scoreCli(`${FIXTURE}`, `${FIXTURE}/tokens.bin`);
  assert.equal(noWeights.code, 1);
  assert.match(noWeights.err, /no config\.json/);
  assert.throws(() => parseScoreArgs(["a"]), /expected <model-dir> <file>/);
  assert.throws(() => parseScoreArgs(["a", "b", "--seq-len", "0"]), /positive integer/);
});
