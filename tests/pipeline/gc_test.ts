import assert from "node:assert/strict";
import { cli, toyProcess } from "./fault_helpers.ts";
import {
  cacheKeys,
  queryDb,
  tempDir,
  TOY_YAML,
  toyProject,
  writeConfig,
  writeOwner,
} from "./toy_helpers.ts";

Deno.test("status lists instances; gc drops only entries no config reaches", async () => {
  const { dir, configs, art, common } = await toyProject();
  assert.equal((await cli(["run", "toy", ...common])).code, 0);

  const status = await cli(["status", "toy", ...common]);
  assert.match(status.out, /^source\[offset=0\] +cached +[0-9a-f]{12} +\d+ B/m);
  assert.match(status.out, /5 of 5 instances cached/);

  // Change the sweep: the offset=10 branch and the old total become unreachable.
  await writeConfig(configs, "toy.yaml", TOY_YAML.replace("offset: [0, 10]", "offset: [0]"));
  assert.equal((await cli(["run", "toy", ...common])).code, 0);
  assert.equal((await cacheKeys(art)).length, 6);

  const dry = await cli(["gc", "--dry-run", ...common]);
  assert.equal((dry.out.match(/^would remove .*unreachable\)$/gm) ?? []).length, 3);
  assert.equal((await cacheKeys(art)).length, 6);

  const real = await cli(["gc", ...common]);
  assert.match(real.out, /removed 3 folders, .*; kept 3 entries/);
  assert.equal((await cacheKeys(art)).length, 3);
  const rerun = await cli(["run", "toy", ...common]);
  assert.match(rerun.out, /^0 ran, 3 cached/);
  const values = await queryDb(art, `SELECT count(*)::INTEGER AS n FROM "values"`);
  assert.equal(values[0].n, 6); // the removed entries' rows are gone too
  await Deno.remove(dir, { recursive: true });
});

/** Names of the work folders (`cache/.tmp/<key>`). */
async function tmpNames(art: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(`${art}/cache/.tmp`)) names.push(e.name);
  return names.sort();
}

Deno.test("gc keeps what --set and --seeds runs reached, until their records are cut", async () => {
  const { dir, art, common } = await toyProject();
  assert.equal((await cli(["run", "toy", ...common])).code, 0);
  const asWritten = await cacheKeys(art);
  assert.equal((await cli(["run", "toy", "--set", "source.n=4", ...common])).code, 0);
  assert.equal((await cli(["run", "toy", "--seeds", "3", ...common])).code, 0);
  const all = await cacheKeys(art);
  // n=4: five new entries; seeds 1 and 2: four sources, four squares, one 3-seed total.
  assert.equal(all.length, 5 + 5 + 9);

  // Configs are planned for every seed an entry was built with: only the 3-seed total
  // and the n=4 entries are the recorded runs' own.
  const dry = await cli(["gc", "--dry-run", ...common]);
  assert.match(dry.out, /^keep 13 entries \(.*\): config .*toy\.yaml$/m);
  assert.match(dry.out, /^keep 1 entry \(.*\): recorded run of .*: run toy --seeds 3$/m);
  assert.match(dry.out, /^keep 5 entries \(.*\): recorded run of .*: run toy --set source\.n=4$/m);
  const real = await cli(["gc", ...common]);
  assert.match(real.out, /removed 0 folders, 0 B; kept 19 entries/);
  assert.deepEqual(await cacheKeys(art), all);

  // Age the --set run's record past the cut: its entries go, the --seeds run's stay.
  const records = [...Deno.readDirSync(`${art}/runs`)].map((e) => `${art}/runs/${e.name}`);
  assert.equal(records.length, 3);
  const setRecord = records.find((p) => Deno.readTextFileSync(p).includes("source.n=4"))!;
  const record = JSON.parse(await Deno.readTextFile(setRecord));
  record.finished = new Date(Date.now() - 10 * 86_400_000).toISOString();
  await Deno.writeTextFile(setRecord, JSON.stringify(record));
  const cut = await cli(["gc", "--older-than", "7d", ...common]);
  assert.match(cut.out, /^dropped run record .* \(finished 1w ago\)$/m);
  assert.match(cut.out, /removed 5 folders, .*; kept 14 entries/);
  assert.equal(await Deno.stat(setRecord).catch(() => null), null);

  // --keep-runs 0: only the configs count, and no config reaches the 3-seed total.
  const configsOnly = await cli(["gc", "--keep-runs", "0", ...common]);
  assert.match(configsOnly.out, /removed 1 folders, .*; kept 13 entries/);
  for (const key of asWritten) assert.ok((await cacheKeys(art)).includes(key));
  await Deno.remove(dir, { recursive: true });
});

Deno.test("gc skips what a live cross-node lock holds; a dead owner blocks nothing", async () => {
  const dir = await tempDir();
  const configs = `${dir}/configs`;
  await Deno.mkdir(configs);
  const art = `${dir}/art`;
  const common = ["--artifacts", art, "--configs", configs];
  const outside = await writeConfig(dir, "toy.yaml", TOY_YAML);
  assert.equal((await cli(["run", outside, ...common])).code, 0);
  const [held, deadHere, silent, ...rest] = await cacheKeys(art);
  assert.equal(rest.length, 2);
  const writing = "f".repeat(64); // a work folder another node is writing into
  await Deno.mkdir(`${art}/cache/.tmp/${writing}`);
  await Deno.writeTextFile(`${art}/cache/.tmp/${writing}/part.bin`, "partial");

  const otherNode = `node-${crypto.randomUUID().slice(0, 8)}`;
  await writeOwner(art, held, otherNode, 4242);
  await writeOwner(art, writing, otherNode, 4243);
  const gone = new Deno.Command("true").spawn();
  const deadPid = gone.pid;
  await gone.status;
  await writeOwner(art, deadHere, Deno.hostname(), deadPid);
  await writeOwner(art, silent, otherNode, 4244, 120);

  // The config lies outside the configs folder and --keep-runs 0 ignores the run's record:
  // nothing reaches these entries, only the locks can keep them.
  const dry = await cli(["gc", "--dry-run", "--keep-runs", "0", ...common]);
  assert.match(
    dry.out,
    new RegExp(`^skipped .*/cache/${held}: in use by ${otherNode} pid 4242$`, "m"),
  );
  assert.match(dry.out, /would remove 4 folders/);
  const real = await cli(["gc", "--keep-runs", "0", ...common]);
  const skipped = real.out.split("\n").filter((l) => l.startsWith("skipped "));
  assert.deepEqual(skipped, [
    `skipped ${art}/cache/${held}: in use by ${otherNode} pid 4242`,
    `skipped ${art}/cache/.tmp/${writing}: in use by ${otherNode} pid 4243`,
  ]);
  assert.match(real.out, /removed 4 folders, .*; kept 1 entries/);
  assert.deepEqual(await cacheKeys(art), [held]);
  assert.deepEqual(await tmpNames(art), [writing]);
  // The live owners' files are theirs; the dead ones' were broken and gc's own released.
  const owners = [...Deno.readDirSync(`${art}/cache/.locks`)]
    .map((e) => e.name).filter((n) => n.endsWith(".owner")).sort();
  assert.deepEqual(owners, [`${held}.lock.owner`, `${writing}.lock.owner`].sort());
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a run in progress is on record: gc meanwhile keeps what it reached, even if it is killed", async () => {
  // The configs folder reaches other entries (n: 5) than the run (n: 3).
  const { dir, art, common } = await toyProject(TOY_YAML.replace("n: 3", "n: 5"));
  const marker = `${dir}/nap-started`;
  // Outside the configs folder: only the run's own record can keep its entries.
  const config = await writeConfig(
    dir,
    "nap.yaml",
    TOY_YAML + `  nap: { kind: sleep, inputs: { numbers: source }, params: ` +
      `{ marker: ${marker}, release: ${dir}/never } }\n`,
  );
  const child = toyProcess(["run", config, "--artifacts", art]).spawn();
  try {
    while (!(await Deno.stat(marker).catch(() => null))) {
      await new Promise((r) => setTimeout(r, 50));
    }
    // The sources are built (and their keys told to the record); nap holds its lock.
    const built = await cacheKeys(art);
    assert.ok(built.length >= 2, `built: ${built.join(", ")}`);
    await new Promise((r) => setTimeout(r, 1500)); // the record is rewritten within 1 s
    const records = [...Deno.readDirSync(`${art}/runs`)].map((e) => e.name);
    assert.equal(records.length, 1, records.join(", "));
    const record = JSON.parse(await Deno.readTextFile(`${art}/runs/${records[0]}`));
    assert.equal(record.inProgress, true);
    for (const key of built) assert.ok(record.keys.includes(key), `record lacks ${key}`);

    const gc = await cli(["gc", ...common]);
    assert.equal(gc.code, 0, gc.err);
    const kept = await cacheKeys(art);
    for (const key of built) assert.ok(kept.includes(key), `gc removed ${key}`);
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
  // Killed outright: the in-progress record stays, and so do the entries it names.
  const recorded = await cacheKeys(art);
  assert.equal((await cli(["gc", ...common])).code, 0);
  assert.deepEqual(await cacheKeys(art), recorded);
  // Cut by age like any record (its time is its last update).
  assert.equal((await cli(["gc", "--keep-runs", "0", ...common])).code, 0);
  assert.equal((await cacheKeys(art)).length, 0);
  await Deno.remove(dir, { recursive: true });
});
