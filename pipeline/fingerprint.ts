// The code part of a cache key: what a step kind's code *means*, not its bytes. Each
// module reached from the step's module is parsed with the TypeScript compiler's own
// parser (npm `typescript`, the reference grammar, so no construct is misread the way a
// regular expression misreads one) and reduced to its syntax tree without comments,
// formatting, type annotations, interfaces, type aliases or type-only imports. The
// module graph follows only imports that run: `import type`, `type` specifiers and
// imports whose bindings are used only as types (which the compiler itself erases) do
// not pull a module into a step's fingerprint. The pinned versions of the npm packages
// those modules import, and of the step's `extraPackages`, are hashed with it.
//
// A step kind may set `version`: it then stands in for its local source graph (the
// escape hatch for an edit its author knows does not change results; see the README).
//
// Parsing costs a few milliseconds per module, so meanings are cached by the sha256 of
// the source text: per process, and (optionally) in a JSON file, so that a rerun where
// nothing changed does not load the parser at all.
import { relative } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";
import type * as TS from "typescript";
import type { StepKind } from "./step.ts";
import { hashJson, sha256Hex } from "./hash.ts";
import { UserError } from "./errors.ts";

/** The part of a module that matters for its users' cache keys. */
export interface ModuleMeaning {
  /** sha256 of the normalized syntax tree. */
  hash: string;
  /** Specifiers of the imports that run (static value imports, re-exports, literal `import()`). */
  imports: string[];
}

/** Bumped when the normalization changes, so a persisted cache of older meanings is ignored. */
const MEANING_FORMAT = "ts-ast/1";
/** Past this many entries, a saved cache file keeps only the meanings last used. */
const MAX_PERSISTED = 5000;

let typescriptModule: Promise<typeof TS> | null = null;
/** The TypeScript compiler, loaded on first use (it takes a moment). */
export function loadTypescript(): Promise<typeof TS> {
  typescriptModule ??= import("typescript").then((m) => (m.default ?? m) as typeof TS);
  return typescriptModule;
}

/** Meanings by sha256 of the source text, shared by every Fingerprinter of the process. */
const processMeanings = new Map<string, ModuleMeaning>();

type Ts = typeof TS;

/** Modifiers that only the type checker reads. */
function typeOnlyModifier(ts: Ts, kind: TS.SyntaxKind, onParameter: boolean): boolean {
  switch (kind) {
    case ts.SyntaxKind.ReadonlyKeyword:
    case ts.SyntaxKind.OverrideKeyword:
    case ts.SyntaxKind.AbstractKeyword:
    case ts.SyntaxKind.DeclareKeyword:
      return !onParameter;
    case ts.SyntaxKind.PublicKeyword:
    case ts.SyntaxKind.PrivateKeyword:
    case ts.SyntaxKind.ProtectedKeyword:
      // On a constructor parameter they declare a property: that runs.
      return !onParameter;
    default:
      return false;
  }
}

function hasModifier(node: TS.Node, kind: TS.SyntaxKind): boolean {
  const mods = (node as { modifiers?: TS.NodeArray<TS.ModifierLike> }).modifiers;
  return mods?.some((m) => m.kind === kind) ?? false;
}

/** Parse a TypeScript or JavaScript module and reduce it to its meaning. */
export function moduleMeaning(ts: Ts, source: string, fileName: string): ModuleMeaning {
  const scriptKind = /\.m?js$/.test(fileName) ? ts.ScriptKind.JS : ts.ScriptKind.TS;
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, false, scriptKind);
  const out: string[] = [];
  const valueNames = new Set<string>();
  const dynamicImports: string[] = [];
  const K = ts.SyntaxKind;

  const isTypeOnlyNode = (node: TS.Node): boolean => {
    switch (node.kind) {
      case K.InterfaceDeclaration:
      case K.TypeAliasDeclaration:
      case K.IndexSignature:
        return true;
      case K.FunctionDeclaration:
      case K.MethodDeclaration:
      case K.Constructor:
        // Overload signatures have no body.
        return (node as TS.FunctionLikeDeclaration).body === undefined;
      case K.HeritageClause:
        return (node as TS.HeritageClause).token === K.ImplementsKeyword;
      case K.Parameter: {
        const name = (node as TS.ParameterDeclaration).name;
        return ts.isIdentifier(name) && name.text === "this";
      }
      case K.ExportDeclaration:
        return (node as TS.ExportDeclaration).isTypeOnly;
      case K.ExportSpecifier:
      case K.ImportSpecifier:
        return (node as TS.ExportSpecifier).isTypeOnly;
      default:
        return hasModifier(node, K.DeclareKeyword) && ts.isStatement(node);
    }
  };

  const visit = (node: TS.Node): void => {
    if (isTypeOnlyNode(node)) return;
    // `x as T`, `x satisfies T`, `<T>x`, `x!`: only `x` runs.
    if (
      ts.isAsExpression(node) || ts.isSatisfiesExpression(node) ||
      ts.isTypeAssertionExpression(node) || ts.isNonNullExpression(node)
    ) {
      return visit(node.expression);
    }
    out.push(ts.SyntaxKind[node.kind]);
    switch (node.kind) {
      case K.Identifier:
      case K.PrivateIdentifier:
        valueNames.add((node as TS.Identifier).text);
        out.push((node as TS.Identifier).text);
        return;
      case K.StringLiteral:
      case K.NoSubstitutionTemplateLiteral:
      case K.TemplateHead:
      case K.TemplateMiddle:
      case K.TemplateTail:
      case K.NumericLiteral:
      case K.BigIntLiteral:
      case K.RegularExpressionLiteral:
        out.push(JSON.stringify((node as TS.LiteralLikeNode).text));
        return;
    }
    if (
      ts.isCallExpression(node) && node.expression.kind === K.ImportKeyword &&
      node.arguments.length > 0 && ts.isStringLiteralLike(node.arguments[0])
    ) {
      dynamicImports.push(node.arguments[0].text);
    }
    const typed = node as {
      type?: TS.Node;
      typeParameters?: TS.NodeArray<TS.Node>;
      typeArguments?: TS.NodeArray<TS.Node>;
      questionToken?: TS.Node;
      exclamationToken?: TS.Node;
    };
    const isParameter = node.kind === K.Parameter;
    out.push("(");
    ts.forEachChild(
      node,
      (child) => {
        if (
          child === typed.type || child === typed.questionToken ||
          child === typed.exclamationToken
        ) return;
        if (ts.isModifier(child) && typeOnlyModifier(ts, child.kind, isParameter)) return;
        visit(child);
      },
      (children) => {
        if (children === typed.typeParameters || children === typed.typeArguments) return;
        for (const child of children) {
          if (ts.isModifier(child) && typeOnlyModifier(ts, child.kind, isParameter)) continue;
          visit(child);
        }
      },
    );
    out.push(")");
  };

  const imports: { specifier: string; statement: TS.Statement }[] = [];
  const reexports: string[] = [];
  for (const statement of file.statements) {
    if (ts.isImportDeclaration(statement)) {
      imports.push({ specifier: (statement.moduleSpecifier as TS.StringLiteral).text, statement });
      continue;
    }
    if (isTypeOnlyNode(statement)) continue;
    if (
      ts.isExportDeclaration(statement) && statement.moduleSpecifier &&
      ts.isStringLiteral(statement.moduleSpecifier)
    ) {
      reexports.push(statement.moduleSpecifier.text);
    }
    visit(statement);
  }

  // Imports last, once every name used as a value is known: the compiler erases an
  // import none of whose bindings is used as a value, and so does this.
  const head: string[] = [];
  const running: string[] = [];
  for (const { specifier, statement } of imports) {
    const clause = (statement as TS.ImportDeclaration).importClause;
    if (!clause) {
      running.push(specifier);
      head.push(`import ${JSON.stringify(specifier)}`);
      continue;
    }
    if (clause.phaseModifier === K.TypeKeyword) continue;
    const used: string[] = [];
    if (clause.name && valueNames.has(clause.name.text)) used.push(`default:${clause.name.text}`);
    const bindings = clause.namedBindings;
    if (bindings && ts.isNamespaceImport(bindings) && valueNames.has(bindings.name.text)) {
      used.push(`*:${bindings.name.text}`);
    } else if (bindings && ts.isNamedImports(bindings)) {
      for (const el of bindings.elements) {
        if (el.isTypeOnly || !valueNames.has(el.name.text)) continue;
        used.push(`${el.propertyName?.getText(file) ?? el.name.text}:${el.name.text}`);
      }
    }
    if (used.length === 0) continue;
    running.push(specifier);
    const attributes = (statement as TS.ImportDeclaration).attributes?.elements.map((a) =>
      `${a.name.getText(file)}=${a.value.getText(file)}`
    ) ?? [];
    head.push(`import ${JSON.stringify(specifier)} ${used.join(",")} ${attributes.join(",")}`);
  }
  const text = head.join("\n") + "\n" + out.join(" ");
  return { hash: sha256Hex(text), imports: [...running, ...reexports, ...dynamicImports] };
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
    if (url.endsWith(".json")) return { hash: sha256Hex(source), imports: [] };
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
      const path = relative(root, fromFileUrl(url));
      if (source === null) {
        files[path] = "missing";
        continue;
      }
      const meaning = await this.#meaning(url, source);
      files[path] = meaning.hash;
      for (const spec of meaning.imports) {
        if (spec.startsWith("./") || spec.startsWith("../")) pending.push(new URL(spec, url).href);
        else if (spec.startsWith("file:")) pending.push(spec);
        else resolvePackage(spec);
      }
    }
    for (const extra of kind.extraPackages ?? []) resolvePackage(extra);
    await this.save();
    if (kind.version !== undefined) {
      // The author vouches that the local code means `version`: only packages count.
      return hashJson({ version: kind.version, packages });
    }
    return hashJson({ files, packages });
  }
}
