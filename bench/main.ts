// `deno task bench [name ...]`: runs every benchmark script in this folder (or the
// named ones) one after another, each in its own process so that one's memory and
// threads do not disturb the next. Each script prints its own figures and ratios.
const here = new URL(".", import.meta.url);
const wanted = Deno.args.filter((a) => !a.startsWith("-"));
const passThrough = Deno.args.filter((a) => a.startsWith("-"));

const scripts: string[] = [];
for await (const entry of Deno.readDir(here)) {
  if (!entry.isFile || !entry.name.endsWith(".ts") || entry.name === "main.ts") continue;
  const name = entry.name.replace(/\.ts$/, "");
  if (wanted.length === 0 || wanted.includes(name)) scripts.push(entry.name);
}
scripts.sort();
if (scripts.length === 0) {
  console.error(`bench: no benchmark named ${wanted.join(", ")} in bench/`);
  Deno.exit(1);
}

let failed = 0;
for (const script of scripts) {
  console.log(`\n=== bench/${script} ===`);
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL(script, here).pathname, ...passThrough],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (code !== 0) {
    console.error(`bench/${script} exited with ${code}`);
    failed++;
  }
}
Deno.exit(failed === 0 ? 0 : 1);
