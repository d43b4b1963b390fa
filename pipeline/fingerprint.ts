// The code part of a cache key: a hash over the source of a step's module and every
// local module it imports (transitively), plus the pinned versions of the npm packages
// those modules import and of the step's `extraPackages`. Editing a step, or a helper it
// imports, changes its instances' keys; editing an unrelated module does not.
// Imports are found with a regex over static `import ... from "x"`, `import "x"`,
// `export ... from "x"` and literal `import("x")`: enough for this code base, no parser.
import { relative } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import type { StepKind } from "./step.ts";
import { hashJson, sha256Hex } from "./hash.ts";
import { UserError } from "./errors.ts";

const IMPORT_RE =
  /(?:^|[;\s])(?:import|export)\s+(?:type\s+)?(?:[\w*\s{},$]*?\s+from\s+)?["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** Module specifiers imported by a source text, in order of appearance. */
export function importSpecifiers(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(IMPORT_RE)) out.push(m[1] ?? m[2]);
  return out;
}

interface ImportMap {
  root: string;
  imports: Record<string, string>;
}

/** Fingerprints computed once per process: source files, import maps, step kinds. */
export class Fingerprinter {
  #sources = new Map<string, Promise<string>>();
  #importMaps = new Map<string, Promise<ImportMap | null>>();
  #kinds = new Map<StepKind, Promise<string>>();

  /** Fingerprint of a step kind's code (hex sha256). */
  kind(kind: StepKind): Promise<string> {
    let fp = this.#kinds.get(kind);
    if (!fp) {
      fp = this.#computeKind(kind);
      this.#kinds.set(kind, fp);
    }
    return fp;
  }

  #source(url: string): Promise<string> {
    let s = this.#sources.get(url);
    if (!s) {
      // A specifier found in a comment may name no file: it then counts as "missing".
      s = Deno.readTextFile(fromFileUrl(url)).catch((e) => {
        if (e instanceof Deno.errors.NotFound) return "";
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
    const files: Record<string, string> = {};
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

    const pending = [kind.module];
    const seen = new Set<string>();
    while (pending.length) {
      const url = pending.pop()!;
      if (seen.has(url)) continue;
      seen.add(url);
      const source = await this.#source(url);
      files[relative(root, fromFileUrl(url))] = sha256Hex(source);
      for (const spec of importSpecifiers(source)) {
        if (spec.startsWith("./") || spec.startsWith("../")) pending.push(new URL(spec, url).href);
        else if (spec.startsWith("file:")) pending.push(spec);
        else resolvePackage(spec);
      }
    }
    for (const extra of kind.extraPackages ?? []) resolvePackage(extra);
    return hashJson({ files, packages });
  }
}
