// A copy of the toy step modules in a temp folder, with step kinds whose `module`
// points at the copies: tests edit the copies and watch the code fingerprints.
import type { StepKind } from "../../pipeline/step.ts";
import { TOY_KINDS } from "../fixtures/toy/registry.ts";
import { TOY_DIR } from "./toy_helpers.ts";

export async function copyToyWithKinds(): Promise<{ dir: string; kinds: StepKind[] }> {
  const dir = await Deno.makeTempDir({ prefix: "toy-copy-" });
  await Deno.mkdir(`${dir}/steps`);
  for await (const e of Deno.readDir(`${TOY_DIR}steps`)) {
    await Deno.copyFile(`${TOY_DIR}steps/${e.name}`, `${dir}/steps/${e.name}`);
  }
  // The import map, so npm versions resolve as in the project.
  await Deno.copyFile(new URL("../../deno.json", import.meta.url), `${dir}/deno.json`);
  const kinds = TOY_KINDS.map((k) => ({
    ...k,
    module: new URL(`steps/${k.module.split("/").pop()}`, `file://${dir}/`).href,
  }));
  return { dir, kinds };
}
