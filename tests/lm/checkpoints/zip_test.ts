// The zip reader on a real torch.save archive (tests/fixtures/neox): entry names and
// sizes, a compressed entry refused, a cut archive refused.
import assert from "node:assert/strict";
import { entryBytes, readZipEntries } from "../../../lm/checkpoints/zip.ts";

const BIN =
  new URL("../../fixtures/neox/repo/step1000/pytorch_model.bin", import.meta.url).pathname;

Deno.test("zip: the entries of a torch.save archive, stored, with their bytes", () => {
  const buf = Deno.readFileSync(BIN);
  const entries = readZipEntries(buf, "step1000");
  assert.ok(entries.has("pytorch_model/data.pkl"));
  const embed = entries.get("pytorch_model/data/0")!; // gpt_neox.embed_in.weight, fp16
  assert.equal(embed.size, 288 * 32 * 2);
  assert.equal(entryBytes(buf, embed, "step1000").length, embed.size);
  const pkl = entryBytes(buf, entries.get("pytorch_model/data.pkl")!, "step1000");
  assert.equal(pkl[0], 0x80); // a pickle's PROTO opcode
});

Deno.test("zip: compressed entries and cut archives are refused", () => {
  const buf = Deno.readFileSync(BIN).slice();
  const entries = readZipEntries(buf, "x");
  const pkl = entries.get("pytorch_model/data.pkl")!;
  assert.throws(() => entryBytes(buf, { ...pkl, method: 8 }, "x.bin"), /compressed \(method 8\)/);
  assert.throws(() => readZipEntries(buf.subarray(0, buf.length - 30), "cut.bin"), /not a zip/);
});
