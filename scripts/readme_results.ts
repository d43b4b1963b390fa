// Copies each pipeline's results.md (artifacts/figures/<pipeline>/results.md, written by
// the pipeline's `results` step) into the README's marked block for it, so the README
// quotes what a run produced instead of numbers typed by hand.
//
//   deno task readme-results [--artifacts DIR] [--check]
//
// --check changes nothing and exits 1 when the README differs from the results files.
import { parseArgs } from "node:util";
import { markedPipelines, replaceBetweenMarkers } from "../report/results_md.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    artifacts: { type: "string" },
    check: { type: "boolean" },
    readme: { type: "string" },
  },
});
const artifacts = values.artifacts ?? Deno.env.get("LAWA_ARTIFACTS") ?? "artifacts";
const readmePath = values.readme ?? "README.md";
const readme = await Deno.readTextFile(readmePath);
const pipelines = markedPipelines(readme);
if (pipelines.length === 0) {
  console.error(`error: ${readmePath} has no "<!-- results.md of <pipeline>: begin" block`);
  Deno.exit(1);
}
/** The text as `deno fmt` writes Markdown (tables padded), so the README stays fmt-clean. */
async function formatMarkdown(text: string): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--ext", "md", "-"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  if (!out.success) throw new Error(`deno fmt: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

let updated = readme;
for (const pipeline of pipelines) {
  const file = `${artifacts}/figures/${pipeline}/results.md`;
  let results: string;
  try {
    results = await Deno.readTextFile(file);
  } catch {
    console.error(`error: ${file} not found: run \`deno task run ${pipeline}\` first`);
    Deno.exit(1);
  }
  updated = replaceBetweenMarkers(updated, pipeline, results);
}
updated = await formatMarkdown(updated);
if (values.check) {
  if (updated !== readme) {
    console.error(
      `${readmePath} differs from ${pipelines.map((p) => `${p}/results.md`).join(", ")}`,
    );
    Deno.exit(1);
  }
  console.log(`${readmePath} quotes ${pipelines.join(", ")} as run`);
} else if (updated !== readme) {
  await Deno.writeTextFile(readmePath, updated);
  console.log(`${readmePath}: copied results.md of ${pipelines.join(", ")}`);
} else {
  console.log(`${readmePath}: already up to date`);
}
