// The code part of a cache key: what a step kind's code *means*, not its bytes.
// Modules are read with the TypeScript compiler's parser (code_meaning.ts; npm
// `typescript`, pinned in deno.json: the language's reference parser, kept in step with
// the language, where regular expressions misread imports in strings and comments and
// cannot tell a type from a value): comments, formatting, type annotations, interfaces,
// type aliases and type-only imports do not count. From the step's module, the fingerprint follows what runs: every module loaded
// through imports that run (value imports, re-exports, literal `import()`), and in each,
// the top-level statements that loading it runs (calls, assignments, initializers that
// compute) plus, transitively, the declarations those and the step's own code refer to,
// across imports by name. A function, class or constant nothing reached refers to does
// not count, so editing a helper used only by averaging does not retrain. The pinned
// versions of the npm packages those modules import, and of the step's `extraPackages`,
// count too.
//
// The reach is an over-approximation by name (a property `x.foo` counts as a use of a
// top-level `foo`; shadowing is ignored): it may rerun too much, never too little, as
// long as code is reached through names (nothing is looked up with `eval` or by a
// computed import specifier).
//
// A step kind may set `version`: it then stands in for its local source files (the
// escape hatch for an edit its author knows does not change results; see the README).
//
// Parsing costs a few milliseconds per module, so meanings are cached by the sha256 of
// the source text: per process, and (optionally) in a JSON file, so that a rerun where
// nothing changed does not load the parser at all.
//
// Beside each fingerprint, its parts are kept compactly (`CodeParts`: a short hash per
// reached declaration of each module, the package versions), so that a cache entry's
// manifest can record them and --dry-run can say which module and declaration changed.
import { relative } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import type { StepKind } from "./step.ts";
import { hashJson, sha256Hex } from "./hash.ts";
import { UserError } from "./errors.ts";
import {
  loadTypescript,
  MEANING_FORMAT,
  type ModuleMeaning,
  moduleMeaning,
} from "./code_meaning.ts";

export { loadTypescript, moduleMeaning };
export type { ModuleMeaning };

/** Past this many entries, a saved cache file keeps only the meanings last used. */
const MAX_PERSISTED = 5000;

/** Meanings by sha256 of the source text, shared by every Fingerprinter of the process. */
const processMeanings = new Map<string, ModuleMeaning>();

/** Hex digits kept of each declaration's hash in `CodeParts` (enough to tell an edit). */
const SHORT_HASH = 8;

/**
 * What a code fingerprint was computed from, for telling which code changed. Modules by
 * path from the project root, each as one line of `name:hash` pairs: a short hash per
 * top-level declaration reached, `(imports)` for its import and export lines, `(load)`
 * for statements that run on load and declare nothing. Packages by name (`npm:zod`)
 * with their pinned version ("" when unpinned).
 */
export interface CodeParts {
  modules: Record<string, string>;
  packages: Record<string, string>;
  /** The step kind's `version`, when it stands in for the local modules (then empty). */
  version?: string;
}

/** Name of the import and export lines of a module in `CodeParts`. */
export const IMPORTS_PART = "(imports)";
/** Name of the top-level statements that run on load and declare nothing. */
export const LOAD_PART = "(load)";
/** The whole entry of a module that could not be read. */
export const MISSING_PART = "(missing)";

/** Parts of the fingerprints computed in this process, by fingerprint. */
const partsByFingerprint = new Map<string, CodeParts>();

/** The parts of a code fingerprint computed in this process (undefined for any other). */
export function codePartsOf(fingerprint: string): CodeParts | undefined {
  return partsByFingerprint.get(fingerprint);
}

/** A module's line of `CodeParts` as declaration name -> short hash. */
export function declarationHashes(line: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const pair of line.split(" ")) {
    const colon = pair.lastIndexOf(":");
    if (colon > 0) out.set(pair.slice(0, colon), pair.slice(colon + 1));
  }
  return out;
}

/** `npm:@scope/name@1.2.3/sub` -> [`npm:@scope/name`, `1.2.3`]; no version -> "". */
export function packageVersion(resolved: string): [string, string] {
  const scheme = /^(npm|jsr):/.exec(resolved)?.[0] ?? "";
  const rest = resolved.slice(scheme.length);
  const at = rest.indexOf("@", 1);
  if (at < 0) return [resolved, ""];
  return [scheme + rest.slice(0, at), rest.slice(at + 1).split("/")[0]];
}

/** One module's line in `CodeParts`: its head, then the reached units by declared name. */
function moduleParts(m: ModuleMeaning, reached: number[]): string {
  const hashes = new Map<string, string[]>([[IMPORTS_PART, [m.head]]]);
  for (const i of reached) {
    const unit = m.units[i];
    const name = unit.declares.length ? unit.declares.join("/") : LOAD_PART;
    hashes.set(name, [...hashes.get(name) ?? [], unit.hash]);
  }
  return [...hashes].map(([name, list]) =>
    `${name}:${(list.length === 1 ? list[0] : sha256Hex(list.join(" "))).slice(0, SHORT_HASH)}`
  ).join(" ");
}

/** A module whose meaning stands for a JSON file: its bytes, as one effect. */
function jsonMeaning(source: string): ModuleMeaning {
  return {
    imports: [],
    bindings: [],
    exports: { default: "default" },
    reexports: [],
    dynamic: [],
    head: "",
    units: [{ hash: sha256Hex(source), declares: ["default"], refs: [], effect: true }],
  };
}

/** Which units of which modules run: the effects of loaded modules and what they reach. */
export function reachedUnits(
  root: string,
  meanings: Map<string, ModuleMeaning>,
  resolve: (spec: string, from: string) => string | null,
): Map<string, Set<number>> {
  const needed = new Map<string, Set<number>>();
  const exportsDone = new Set<string>();
  const whole = new Set<string>();
  const pending: (() => void)[] = [];

  const include = (url: string, index: number) => {
    let set = needed.get(url);
    if (!set) needed.set(url, set = new Set());
    if (set.has(index)) return;
    set.add(index);
    for (const ref of meanings.get(url)!.units[index].refs) pending.push(() => local(url, ref));
  };
  /** A name used in `url`: its declaration there, or the export it imports. */
  const localsDone = new Set<string>();
  const local = (url: string, name: string) => {
    const id = `${url}\u0000${name}`;
    if (localsDone.has(id)) return;
    localsDone.add(id);
    const m = meanings.get(url)!;
    m.units.forEach((u, i) => {
      if (u.declares.includes(name)) include(url, i);
    });
    for (const b of m.bindings) {
      if (b.local !== name) continue;
      const target = resolve(b.from, url);
      if (target === null) continue;
      if (b.imported === "*") wholeModule(target);
      else exported(target, b.imported);
    }
  };
  const exported = (url: string, name: string) => {
    const id = `${url}\u0000${name}`;
    const m = meanings.get(url);
    if (!m || exportsDone.has(id)) return;
    exportsDone.add(id);
    const localName = m.exports[name];
    if (localName?.startsWith("*")) {
      const target = resolve(localName.slice(1), url);
      if (target !== null) wholeModule(target);
    } else if (localName !== undefined) {
      local(url, localName);
    }
    for (const r of m.reexports) {
      const target = resolve(r.from, url);
      if (target === null) continue;
      if (r.names === null && name !== "default") exported(target, name);
      else if (r.names && name in r.names) exported(target, r.names[name]);
    }
  };
  const wholeModule = (url: string) => {
    const m = meanings.get(url);
    if (!m || whole.has(url)) return;
    whole.add(url);
    m.units.forEach((_, i) => include(url, i));
    for (const r of m.reexports) {
      const target = resolve(r.from, url);
      if (target !== null) wholeModule(target);
    }
  };

  for (const [url, m] of meanings) {
    if (url === root) wholeModule(url);
    m.units.forEach((u, i) => {
      if (u.effect) include(url, i);
    });
    for (const spec of m.dynamic) {
      const target = resolve(spec, url);
      if (target !== null) wholeModule(target);
    }
  }
  while (pending.length) pending.pop()!();
  return needed;
}

interface ImportMap {
  root: string;
  imports: Record<string, string>;
}

/** Persisted meanings: `{format, meanings: {sourceSha: ModuleMeaning}}`. */
interface MeaningCacheFile {
  format: string;
  meanings: Record<string, ModuleMeaning>;
}

export interface FingerprinterOptions {
  /** A JSON file keeping module meanings between processes (created when missing). */
  cacheFile?: string;
}

/** Fingerprints computed once per process: source files, import maps, step kinds. */
export class Fingerprinter {
  #sources = new Map<string, Promise<string | null>>();
  #importMaps = new Map<string, Promise<ImportMap | null>>();
  #kinds = new Map<StepKind, Promise<string>>();
  #cacheFile?: string;
  #persisted: Promise<Record<string, ModuleMeaning>> | null = null;
  #used: Record<string, ModuleMeaning> = {};
  #unsaved = false;

  constructor(opts: FingerprinterOptions = {}) {
    this.#cacheFile = opts.cacheFile;
  }

  /** Fingerprint of a step kind's code (hex sha256). */
  kind(kind: StepKind): Promise<string> {
    let fp = this.#kinds.get(kind);
    if (!fp) {
      fp = this.#computeKind(kind);
      this.#kinds.set(kind, fp);
    }
    return fp;
  }

  /** Write the meanings this fingerprinter used to the cache file (no-op without one). */
  async save(): Promise<void> {
    if (!this.#cacheFile || !this.#unsaved) return;
    const persisted = await this.#loadPersisted();
    // Old entries are kept (another pipeline may use them) until the file grows large.
    const keep = Object.keys(persisted).length > MAX_PERSISTED ? {} : persisted;
    const body: MeaningCacheFile = { format: MEANING_FORMAT, meanings: { ...keep, ...this.#used } };
    const tmp = `${this.#cacheFile}.tmp-${crypto.randomUUID().slice(0, 8)}`;
    try {
      await Deno.writeTextFile(tmp, JSON.stringify(body));
      await Deno.rename(tmp, this.#cacheFile);
      this.#persisted = Promise.resolve(body.meanings);
      this.#unsaved = false;
    } catch {
      await Deno.remove(tmp).catch(() => {}); // a cache: losing it costs time only
    }
  }

  #loadPersisted(): Promise<Record<string, ModuleMeaning>> {
    this.#persisted ??= (async () => {
      if (!this.#cacheFile) return {};
      try {
        const body = JSON.parse(await Deno.readTextFile(this.#cacheFile)) as MeaningCacheFile;
        return body.format === MEANING_FORMAT && body.meanings ? body.meanings : {};
      } catch {
        return {};
      }
    })();
    return this.#persisted;
  }

  async #meaning(url: string, source: string): Promise<ModuleMeaning> {
    if (url.endsWith(".json")) return jsonMeaning(source);
    const sourceSha = sha256Hex(source);
    const persisted = await this.#loadPersisted();
    let meaning = processMeanings.get(sourceSha) ?? persisted[sourceSha];
    meaning ??= moduleMeaning(await loadTypescript(), source, fromFileUrl(url));
    processMeanings.set(sourceSha, meaning);
    this.#used[sourceSha] = meaning;
    if (!persisted[sourceSha]) this.#unsaved = true;
    return meaning;
  }

  #source(url: string): Promise<string | null> {
    let s = this.#sources.get(url);
    if (!s) {
      s = Deno.readTextFile(fromFileUrl(url)).catch((e) => {
        if (e instanceof Deno.errors.NotFound) return null;
        throw new UserError(`cannot read module ${url} for its code fingerprint: ${e.message}`);
      });
      this.#sources.set(url, s);
    }
    return s;
  }

  /** The nearest deno.json above `dir`, for resolving bare specifiers to pinned versions. */
  #importMap(dir: string): Promise<ImportMap | null> {
    let m = this.#importMaps.get(dir);
    if (!m) {
      m = (async () => {
        try {
          const json = JSON.parse(await Deno.readTextFile(`${dir}/deno.json`));
          return { root: dir, imports: json.imports ?? {} };
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
          const parent = dir.replace(/\/[^/]*$/, "");
          return parent && parent !== dir ? await this.#importMap(parent) : null;
        }
      })();
      this.#importMaps.set(dir, m);
    }
    return m;
  }

  async #computeKind(kind: StepKind): Promise<string> {
    if (!kind.module.startsWith("file:")) {
      throw new UserError(
        `step kind "${kind.name}": module must be a file: URL, got ${kind.module}`,
      );
    }
    const modulePath = fromFileUrl(kind.module);
    const map = await this.#importMap(modulePath.replace(/\/[^/]*$/, ""));
    const root = map?.root ?? modulePath.replace(/\/[^/]*$/, "");
    const packages: Record<string, string> = {};
    const resolvePackage = (spec: string) => {
      if (spec.startsWith("node:")) return;
      if (spec.startsWith("npm:") || spec.startsWith("jsr:")) {
        packages[spec] = spec;
        return;
      }
      const imports = map?.imports ?? {};
      // Exact entry, else the longest "prefix/" entry, else the bare name as written.
      if (imports[spec]) {
        packages[spec] = imports[spec];
        return;
      }
      const prefix =
        Object.keys(imports).filter((k) => spec.startsWith(k.endsWith("/") ? k : k + "/"))
          .sort((a, b) => b.length - a.length)[0];
      packages[spec] = prefix ? imports[prefix] : spec;
    };

    // Every module loading the step's module loads, with its meaning.
    const meanings = new Map<string, ModuleMeaning>();
    const missing: string[] = [];
    const resolveLocal = (spec: string, from: string): string | null =>
      spec.startsWith("./") || spec.startsWith("../")
        ? new URL(spec, from).href
        : spec.startsWith("file:")
        ? spec
        : null;
    const pending = [kind.module];
    const seen = new Set<string>();
    while (pending.length) {
      const url = pending.pop()!;
      if (seen.has(url)) continue;
      seen.add(url);
      const source = await this.#source(url);
      if (source === null) {
        missing.push(relative(root, fromFileUrl(url)));
        continue;
      }
      const meaning = await this.#meaning(url, source);
      meanings.set(url, meaning);
      for (const spec of meaning.imports) {
        const target = resolveLocal(spec, url);
        if (target !== null) pending.push(target);
        else resolvePackage(spec);
      }
    }
    const files: Record<string, { head: string; units: string[] }> = {};
    const modules: CodeParts["modules"] = {};
    const reached = reachedUnits(kind.module, meanings, (spec, from) => {
      const target = resolveLocal(spec, from);
      return target !== null && meanings.has(target) ? target : null;
    });
    for (const [url, indices] of reached) {
      const m = meanings.get(url)!;
      const sorted = [...indices].sort((a, b) => a - b);
      const path = relative(root, fromFileUrl(url));
      files[path] = { head: m.head, units: sorted.map((i) => m.units[i].hash) };
      modules[path] = moduleParts(m, sorted);
    }
    for (const path of missing) {
      files[path] = { head: "missing", units: [] };
      modules[path] = MISSING_PART;
    }
    for (const extra of kind.extraPackages ?? []) resolvePackage(extra);
    await this.save();
    const versions = Object.fromEntries(Object.values(packages).map(packageVersion));
    let fingerprint: string;
    let parts: CodeParts;
    if (kind.version !== undefined) {
      // The author vouches that the local code means `version`: only packages count.
      fingerprint = hashJson({ version: kind.version, packages });
      parts = { modules: {}, packages: versions, version: kind.version };
    } else {
      fingerprint = hashJson({ format: MEANING_FORMAT, files, packages });
      parts = { modules, packages: versions };
    }
    partsByFingerprint.set(fingerprint, parts);
    return fingerprint;
  }
}
