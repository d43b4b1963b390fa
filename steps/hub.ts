// The `hub` step: revisions of a Hugging Face model repo (Pythia's `step{N}` branches)
// as a checkpoint series in the cache, which the average, evaluate and plot steps take
// like a training run's. Each revision's config.json and weights are downloaded with
// @huggingface/hub (lm/hub/download.ts: resumable, size and hash checked, HF_ENDPOINT
// and HF_TOKEN honoured) and written as one safetensors file per step
// (lm/hub/revisions.ts); tokenizer.json and config.json of the first revision sit at the
// top of the output for the hf_tokenize step and for users.
//
// Downloads are kept in the Hugging Face cache (lm/hub/hf_cache.ts; HF_HUB_CACHE, else
// HF_HOME/hub, else ~/.cache/huggingface/hub, created when missing), not in this step's
// cache entry: another revision list or range is another instance of this step, and it
// fetches only the revisions the cache lacks; offline, the cache serves what it holds.
// Every file taken from there is size and hash checked like a download. With
// LAWA_HF_CACHE=off (or a cache folder that cannot be written) the files stay in this
// step's work folder and are removed as each revision is written.
//
// Identical weights across revisions (some Pythia branches hold the same files) are
// detected from the hub's sha256 etags and reported; only the first revision with those
// weights enters the series, so a LAWA window never counts one set of weights twice (a
// window needing a dropped step is skipped, as for any missing checkpoint).
//
// Output: series.json (method "original"), step-NNNNNN.safetensors, config.json,
// tokenizer.json (when the repo has one), revisions.json. The step is resumable: a
// crashed run keeps its finished revisions and partial downloads.
import { z } from "zod";
import { defineStep } from "../pipeline/step.ts";
import {
  fetchVerified,
  type HubAccess,
  hubAccessFromEnv,
  listRevision,
  type RemoteFile,
  remoteFile,
  type RevisionListing,
} from "../lm/hub/download.ts";
import { addToSnapshot, blobPath, prepareHfCache } from "../lm/hub/hf_cache.ts";
import {
  chooseWeights,
  selectRevisions,
  shardsOfIndex,
  stepOfRevision,
  type WeightFormat,
  writeCheckpoint,
} from "../lm/hub/revisions.ts";
import { checkpointFileName, writeSeriesInfo } from "../lm/checkpoints/series.ts";
import { configFromHfJson, type ModelConfig } from "../lm/model/model.ts";
import { appendRows, HUB_REVISIONS, tablesOf } from "./tables.ts";

export const HubParams = z.object({
  /** Model repo, e.g. EleutherAI/pythia-160m. */
  repo: z.string().regex(/^[\w.-]+\/[\w.-]+$/, "repo must look like owner/name"),
  /** Revisions by name (step<N>). */
  revisions: z.array(z.string().min(1)).optional(),
  /** Or a range of step<N> revisions: from, to (inclusive), every. */
  from: z.number().int().nonnegative().optional(),
  to: z.number().int().nonnegative().optional(),
  every: z.number().int().positive().optional(),
  /** Training tokens per step, for the series' token counts (Pythia: 1024 x 2048). */
  tokens_per_step: z.number().int().positive().default(2_097_152),
}).strict();
export type HubParams = z.infer<typeof HubParams>;

/** One revision as it went into (or stayed out of) the series. */
export interface RevisionRecord {
  revision: string;
  step: number;
  commit: string;
  format: WeightFormat;
  /** Weight files and their hub etags (sha256 for LFS files). */
  weights: Record<string, string>;
  bytes: number;
  /** The earlier revision with byte-identical weights, when there is one. */
  duplicate_of: string | null;
}

const WORK = ".hub";

async function readJson<T>(path: string): Promise<T | null> {
  try {
    return JSON.parse(await Deno.readTextFile(path)) as T;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** Sizes and etags of some files of a revision (one small request each, no download). */
async function describe(
  listing: RevisionListing,
  paths: string[],
  access: HubAccess,
): Promise<RemoteFile[]> {
  const out: RemoteFile[] = [];
  for (const path of paths) {
    if (!listing.files.includes(path)) {
      throw new Error(`hub: ${listing.repo} revision ${listing.revision} has no file ${path}`);
    }
    out.push(await remoteFile(listing, path, access));
  }
  return out;
}

/** Where a revision's files are gathered under their own names. */
function stageOf(outDir: string, revision: string): string {
  return `${outDir}/${WORK}/stage/${revision}`;
}

/** Bytes of a run's files that came over the network, and those found already verified. */
interface Tally {
  downloaded: number;
  reused: number;
}

/** Fetch (verified) files of a revision into its stage folder under their own names. */
async function stageFiles(
  listing: RevisionListing,
  files: RemoteFile[],
  outDir: string,
  access: HubAccess,
  tally: Tally,
  log: (m: string) => void,
  signal: AbortSignal,
  show: (info: string) => void = () => {},
): Promise<void> {
  const stage = stageOf(outDir, listing.revision);
  await Deno.mkdir(stage, { recursive: true });
  const mb = (n: number) => (n / 1e6).toFixed(0);
  for (const file of files) {
    let shown = 0;
    const onBytes = (bytes: number) => {
      if (bytes - shown < 8e6 && bytes < file.size) return; // a line every 8 MB
      shown = bytes;
      show(`${listing.revision} ${file.path} ${mb(bytes)}/${mb(file.size)} MB`);
    };
    const got = await fetchVerified(listing, file, `${outDir}/${WORK}/blobs`, access, {
      log,
      signal,
      onBytes,
    });
    tally.downloaded += got.downloaded;
    tally.reused += file.size - got.downloaded;
    const dest = `${stage}/${file.path}`;
    await Deno.remove(dest).catch(() => {});
    await Deno.link(got.path, dest).catch(() => Deno.copyFile(got.path, dest));
  }
}

/**
 * A revision whose weights are those of an earlier one: name the cached blobs in its
 * snapshot too, so that a run offline that lists this revision finds it complete.
 */
async function addTwinToCache(listing: RevisionListing, files: RemoteFile[], cache: string) {
  for (const file of files) {
    const blob = await Deno.stat(blobPath(cache, listing.repo, file.etag)).catch(() => null);
    if (blob?.size === file.size) await addToSnapshot(cache, listing, file.path, file.etag);
  }
}

/** Weights are the same when their files' etags (sha256) are. */
function weightsFingerprint(weights: Record<string, string>): string {
  return JSON.stringify(Object.values(weights).sort());
}

function sameArchitecture(a: ModelConfig, b: ModelConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export const hubStep = defineStep({
  name: "hub",
  module: import.meta.url,
  params: HubParams,
  inputs: [],
  resumable: true,
  // Downloads are checked against the hub's hashes: the backend and seed change nothing.
  uses: { backend: false, seed: false },
  tables: tablesOf(HUB_REVISIONS),
  async run(ctx, params) {
    const revisions = selectRevisions(params);
    const steps = revisions.map(stepOfRevision);
    const log = (m: string) => ctx.progress.log(m);
    const fromEnv = hubAccessFromEnv();
    const access = { ...fromEnv, hfCache: await prepareHfCache(fromEnv.hfCache, params.repo, log) };
    const tally: Tally = { downloaded: 0, reused: 0 };
    ctx.progress.start(`hub ${params.repo}`, revisions.length, "rev");
    await Deno.mkdir(`${ctx.outDir}/${WORK}/done`, { recursive: true });

    let config: ModelConfig | null = null;
    const records: RevisionRecord[] = [];
    for (const [i, revision] of revisions.entries()) {
      ctx.signal.throwIfAborted();
      const donePath = `${ctx.outDir}/${WORK}/done/${revision}.json`;
      const done = await readJson<RevisionRecord & { config: string }>(donePath);
      if (done) {
        const { config: text, ...record } = done;
        records.push(record);
        config ??= configFromHfJson(JSON.parse(text), `${revision}/config.json`);
        ctx.progress.update(i + 1, `${revision} (kept from an interrupted run)`);
        continue;
      }
      const listing = await listRevision(params.repo, revision, access);
      const where = `${params.repo} revision ${revision}`;
      const { format, entry } = chooseWeights(listing.files, where);
      const sharded = format.endsWith("sharded");
      const small = await describe(
        listing,
        sharded ? ["config.json", entry] : ["config.json"],
        access,
      );
      const stage = stageOf(ctx.outDir, revision);
      await stageFiles(listing, small, ctx.outDir, access, tally, log, ctx.signal);
      const revConfigText = await Deno.readTextFile(`${stage}/config.json`);
      const revConfig = configFromHfJson(JSON.parse(revConfigText), `${where}: config.json`);
      if (config && !sameArchitecture(config, revConfig)) {
        throw new Error(`hub: ${where} has a different architecture from ${revisions[0]}`);
      }
      // The first revision's tokenizer goes to the output. With the cache, every
      // revision's is fetched (one blob for all when they are the same file), so that a
      // later run starting at any of them finds it, offline too.
      const hasTokenizer = listing.files.includes("tokenizer.json");
      if (hasTokenizer && (!config || access.hfCache)) {
        const tok = await describe(listing, ["tokenizer.json"], access);
        await stageFiles(listing, tok, ctx.outDir, access, tally, log, ctx.signal);
      }
      if (!config) {
        config = revConfig;
        await Deno.writeTextFile(`${ctx.outDir}/config.json`, revConfigText);
        if (hasTokenizer) {
          await Deno.copyFile(`${stage}/tokenizer.json`, `${ctx.outDir}/tokenizer.json`);
        } else {
          log(`hub: ${where} has no tokenizer.json`);
        }
      }
      const weightFiles = await describe(
        listing,
        sharded ? await shardsOfIndex(`${stage}/${entry}`) : [entry],
        access,
      );
      const weights = Object.fromEntries(weightFiles.map((f) => [f.path, f.etag]));
      const twin = records.find((r) =>
        weightsFingerprint(r.weights) === weightsFingerprint(weights)
      );
      const record: RevisionRecord = {
        revision,
        step: steps[i],
        commit: listing.commit,
        format,
        weights,
        bytes: weightFiles.reduce((n, f) => n + f.size, 0),
        duplicate_of: twin ? twin.revision : null,
      };
      if (twin) {
        log(
          `hub: ${revision} holds the same weights as ${twin.revision} (identical files, sha256 ${
            Object.values(weights)[0].slice(0, 12)
          }...); left out of the series, not downloaded again`,
        );
        if (access.hfCache) await addTwinToCache(listing, weightFiles, access.hfCache);
      } else {
        const show = (info: string) => ctx.progress.update(i, info);
        await stageFiles(listing, weightFiles, ctx.outDir, access, tally, log, ctx.signal, show);
        const dest = `${ctx.outDir}/${checkpointFileName(steps[i])}`;
        await writeCheckpoint(stage, format, entry, dest);
      }
      await Deno.writeTextFile(donePath, JSON.stringify({ ...record, config: revConfigText }));
      await Deno.remove(stage, { recursive: true });
      await Deno.remove(`${ctx.outDir}/${WORK}/blobs`, { recursive: true }).catch(() => {});
      records.push(record);
      ctx.progress.update(i + 1, `${revision} ${format} ${(record.bytes / 1e6).toFixed(1)} MB`);
    }
    if (!config) throw new Error(`hub: no revisions of ${params.repo}`);

    const kept = records.filter((r) => r.duplicate_of === null);
    await writeSeriesInfo(ctx.outDir, {
      format: "checkpoint-series/1",
      label: "original",
      method: "original",
      params: {
        repo: params.repo,
        revisions,
        tokens_per_step: params.tokens_per_step,
        duplicates: records.filter((r) => r.duplicate_of).map((r) => ({
          revision: r.revision,
          same_as: r.duplicate_of,
        })),
        train: { source: "hub", repo: params.repo },
      },
      model: { ...config },
      checkpoints: kept.map((r) => ({
        step: r.step,
        tokens: r.step * params.tokens_per_step,
        file: checkpointFileName(r.step),
      })),
    });
    await Deno.writeTextFile(
      `${ctx.outDir}/revisions.json`,
      JSON.stringify(records, null, 1) + "\n",
    );
    appendRows(
      ctx.results,
      HUB_REVISIONS,
      records.map((r) => ({
        repo: params.repo,
        revision: r.revision,
        step: r.step,
        commit: r.commit,
        format: r.format,
        bytes: r.bytes,
        duplicate_of: r.duplicate_of,
      })),
    );
    await Deno.remove(`${ctx.outDir}/${WORK}`, { recursive: true });
    const dupes = records.length - kept.length;
    const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
    log(
      `hub: ${params.repo}: ${kept.length} checkpoints from ${records.length} revisions` +
        (dupes > 0 ? ` (${dupes} identical to an earlier revision, left out)` : "") +
        `; ${mb(tally.downloaded)} downloaded, ${mb(tally.reused)} already there ` +
        (access.hfCache ? `in the Hugging Face cache ${access.hfCache}` : "in this step's folder"),
    );
  },
});
