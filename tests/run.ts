// `deno task test`: runs every tests/**/*_test.ts file with `deno test`, each in its own
// process, two at a time, and exits non-zero if any fails.
//
// Why not one `deno test tests/`: with DuckDB's native addon loaded, a process that ran
// many test modules sometimes dies with SIGSEGV while it exits, after every test passed
// (seen with the safetensors and gc tests in one process; never with one module per
// process). One process per file keeps a real failure distinguishable from that.
// Extra arguments are passed to `deno test` (e.g. `--filter lawa`).
const root = new URL(".", import.meta.url).pathname;
const extra = Deno.args;

async function testFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}${e.name}`;
    if (e.isDirectory && e.name !== "fixtures") out.push(...await testFiles(`${path}/`));
    else if (e.isFile && e.name.endsWith("_test.ts")) out.push(path);
  }
  return out.sort();
}

const files = await testFiles(root);
const jobs = Math.max(1, Math.min(2, navigator.hardwareConcurrency));
const failed: string[] = [];
let passed = 0;
const started = performance.now();
let next = 0;

async function worker(): Promise<void> {
  while (next < files.length) {
    const file = files[next++];
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["test", "--allow-all", ...extra, file],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const name = file.slice(root.length);
    if (out.success) {
      passed++;
      const summary = text.match(/ok \| (\d+) passed[^\n]*/)?.[0] ?? "ok";
      console.log(`ok     tests/${name}  (${summary})`);
    } else {
      failed.push(name);
      console.log(`FAILED tests/${name} (exit ${out.code}${out.signal ? `, ${out.signal}` : ""})`);
      console.log(text);
    }
  }
}

await Promise.all(Array.from({ length: jobs }, worker));
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(`\n${passed} test files passed, ${failed.length} failed, in ${seconds} s`);
for (const f of failed) console.log(`  failed: tests/${f}`);
Deno.exit(failed.length === 0 ? 0 : 1);
