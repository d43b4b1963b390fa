// What one module's code means, for cache keys, read with the TypeScript compiler's own
// parser (npm `typescript`: the reference grammar, so no construct is misread the way a
// regular expression misreads one). A module becomes
// - its imports that run: `import type`, `type` specifiers and imports whose bindings are
//   used only as types are erased by the compiler, and here;
// - one unit per top-level statement: the hash of its syntax tree without comments,
//   formatting, type annotations, interfaces or type aliases, the names it declares,
//   the names it refers to, and whether loading the module runs it (a call, an
//   assignment: an "effect") or only defines something (a function, a class, a constant).
// fingerprint.ts follows, from a step's module, the effects of every module loaded and
// the declarations they reach, so editing a function no step calls reruns nothing.
import type * as TS from "typescript";
import { sha256Hex } from "./hash.ts";

type Ts = typeof TS;

/** One top-level statement. */
export interface Unit {
  /** sha256 of its normalized syntax tree. */
  hash: string;
  /** Top-level names it declares (`default` for `export default <expr>`). */
  declares: string[];
  /** Names it refers to in code that runs (an over-approximation: property names too). */
  refs: string[];
  /** Loading the module runs it (anything but a plain declaration). */
  effect: boolean;
}

/** How an imported binding is used: its local name, the module and what it imports. */
export interface ImportBinding {
  local: string;
  from: string;
  /** An export name, `default`, or `*` for a namespace import. */
  imported: string;
}

export interface ModuleMeaning {
  /** Specifiers of the modules loading this one loads (static, re-exports, `import()`). */
  imports: string[];
  /** Value bindings of static imports. */
  bindings: ImportBinding[];
  /** Exported name -> local name (local `export` and `export { a as b }`). */
  exports: Record<string, string>;
  /** Re-exports: `export { a as b } from` (names) and `export * from` (names: null). */
  reexports: { from: string; names: Record<string, string> | null }[];
  /** Modules loaded by literal `import()`: every unit of theirs counts. */
  dynamic: string[];
  /** sha256 of the import and export declarations (which module a name comes from). */
  head: string;
  units: Unit[];
}

/** Bumped when the normalization changes, so persisted meanings of older code are ignored. */
export const MEANING_FORMAT = "ts-units/1";

let typescriptModule: Promise<Ts> | null = null;
/** The TypeScript compiler, loaded on first use (it takes a moment). */
export function loadTypescript(): Promise<Ts> {
  typescriptModule ??= import("typescript").then((m) => (m.default ?? m) as Ts);
  return typescriptModule;
}

/** Modifiers that only the type checker reads (on a parameter, `private` declares a property). */
function typeOnlyModifier(ts: Ts, kind: TS.SyntaxKind, onParameter: boolean): boolean {
  switch (kind) {
    case ts.SyntaxKind.ReadonlyKeyword:
    case ts.SyntaxKind.OverrideKeyword:
    case ts.SyntaxKind.AbstractKeyword:
    case ts.SyntaxKind.DeclareKeyword:
    case ts.SyntaxKind.PublicKeyword:
    case ts.SyntaxKind.PrivateKeyword:
    case ts.SyntaxKind.ProtectedKeyword:
      return !onParameter;
    default:
      return false;
  }
}

function modifiers(node: TS.Node): readonly TS.ModifierLike[] {
  return (node as { modifiers?: TS.NodeArray<TS.ModifierLike> }).modifiers ?? [];
}

function isTypeOnlyStatement(ts: Ts, node: TS.Node): boolean {
  const K = ts.SyntaxKind;
  switch (node.kind) {
    case K.InterfaceDeclaration:
    case K.TypeAliasDeclaration:
      return true;
    case K.FunctionDeclaration:
      return (node as TS.FunctionDeclaration).body === undefined; // an overload signature
    case K.ExportDeclaration:
      return (node as TS.ExportDeclaration).isTypeOnly;
    default:
      return modifiers(node).some((m) => m.kind === K.DeclareKeyword);
  }
}

/** Whether evaluating `node` can do anything but compute a value (calls, assignments, ...). */
function isPure(ts: Ts, node: TS.Node | undefined): boolean {
  if (node === undefined) return true;
  const K = ts.SyntaxKind;
  const pure = (n: TS.Node | undefined) => isPure(ts, n);
  if (ts.isLiteralExpression(node) || ts.isIdentifier(node)) return true;
  switch (node.kind) {
    case K.TrueKeyword:
    case K.FalseKeyword:
    case K.NullKeyword:
    case K.ArrowFunction:
    case K.FunctionExpression:
    case K.RegularExpressionLiteral:
    case K.NoSubstitutionTemplateLiteral:
    case K.MetaProperty:
      return true;
  }
  if (
    ts.isParenthesizedExpression(node) || ts.isAsExpression(node) ||
    ts.isSatisfiesExpression(node) || ts.isNonNullExpression(node) ||
    ts.isTypeAssertionExpression(node) || ts.isSpreadElement(node) ||
    ts.isTypeOfExpression(node) || ts.isVoidExpression(node)
  ) {
    return pure(node.expression);
  }
  if (ts.isPropertyAccessExpression(node)) return pure(node.expression);
  if (ts.isElementAccessExpression(node)) {
    return pure(node.expression) && pure(node.argumentExpression);
  }
  if (ts.isPrefixUnaryExpression(node)) {
    return node.operator !== K.PlusPlusToken && node.operator !== K.MinusMinusToken &&
      pure(node.operand);
  }
  if (ts.isBinaryExpression(node)) {
    const op = node.operatorToken.kind;
    const assigns = op >= K.FirstAssignment && op <= K.LastAssignment;
    return !assigns && pure(node.left) && pure(node.right);
  }
  if (ts.isConditionalExpression(node)) {
    return pure(node.condition) && pure(node.whenTrue) && pure(node.whenFalse);
  }
  if (ts.isTemplateExpression(node)) return node.templateSpans.every((s) => pure(s.expression));
  if (ts.isArrayLiteralExpression(node)) return node.elements.every(pure);
  if (ts.isObjectLiteralExpression(node)) {
    return node.properties.every((p) => {
      if (p.name && ts.isComputedPropertyName(p.name) && !pure(p.name.expression)) return false;
      if (ts.isPropertyAssignment(p)) return pure(p.initializer);
      if (ts.isSpreadAssignment(p)) return pure(p.expression);
      return true; // shorthand, methods, accessors
    });
  }
  if (ts.isClassExpression(node) || ts.isClassDeclaration(node)) {
    return classIsPure(ts, node);
  }
  return false;
}

/** A class definition runs nothing but its heritage, decorators and static initializers. */
function classIsPure(ts: Ts, node: TS.ClassLikeDeclaration): boolean {
  if (modifiers(node).some((m) => m.kind === ts.SyntaxKind.Decorator)) return false;
  for (const clause of node.heritageClauses ?? []) {
    if (!clause.types.every((t) => isPure(ts, t.expression))) return false;
  }
  return node.members.every((m) => {
    if (ts.isClassStaticBlockDeclaration(m)) return false;
    if (modifiers(m).some((x) => x.kind === ts.SyntaxKind.Decorator)) return false;
    if (m.name && ts.isComputedPropertyName(m.name) && !isPure(ts, m.name.expression)) {
      return false;
    }
    const isStatic = modifiers(m).some((x) => x.kind === ts.SyntaxKind.StaticKeyword);
    return !(isStatic && ts.isPropertyDeclaration(m)) || isPure(ts, m.initializer);
  });
}

function bindingNames(ts: Ts, name: TS.BindingName, out: string[]): void {
  if (ts.isIdentifier(name)) out.push(name.text);
  else {
    for (const el of name.elements) {
      if (!ts.isOmittedExpression(el)) bindingNames(ts, el.name, out);
    }
  }
}

/** Parse a TypeScript or JavaScript module and reduce it to its meaning. */
export function moduleMeaning(ts: Ts, source: string, fileName: string): ModuleMeaning {
  const K = ts.SyntaxKind;
  const scriptKind = /\.m?js$/.test(fileName) ? ts.ScriptKind.JS : ts.ScriptKind.TS;
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, false, scriptKind);
  const allNames = new Set<string>();
  const dynamic: string[] = [];

  /** Append `node`'s normalized tree to `out` and the names it uses to `names`. */
  const emit = (node: TS.Node, out: string[], names: Set<string>): void => {
    const visit = (node: TS.Node): void => {
      switch (node.kind) {
        case K.InterfaceDeclaration:
        case K.TypeAliasDeclaration:
        case K.IndexSignature:
          return;
        case K.FunctionDeclaration:
        case K.MethodDeclaration:
        case K.Constructor:
          if ((node as TS.FunctionLikeDeclaration).body === undefined) return; // overload
          break;
        case K.HeritageClause:
          if ((node as TS.HeritageClause).token === K.ImplementsKeyword) return;
          break;
        case K.Parameter: {
          const name = (node as TS.ParameterDeclaration).name;
          if (ts.isIdentifier(name) && name.text === "this") return;
          break;
        }
        case K.ExportSpecifier:
        case K.ImportSpecifier:
          if ((node as TS.ExportSpecifier).isTypeOnly) return;
          break;
      }
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
        case K.PrivateIdentifier: {
          const text = (node as TS.Identifier).text;
          names.add(text);
          allNames.add(text);
          out.push(text);
          return;
        }
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
        dynamic.push(node.arguments[0].text);
      }
      const typed = node as {
        type?: TS.Node;
        typeParameters?: TS.NodeArray<TS.Node>;
        typeArguments?: TS.NodeArray<TS.Node>;
        questionToken?: TS.Node;
        exclamationToken?: TS.Node;
      };
      const onParameter = node.kind === K.Parameter;
      const keep = (child: TS.Node) =>
        !(ts.isModifier(child) && typeOnlyModifier(ts, child.kind, onParameter));
      out.push("(");
      ts.forEachChild(
        node,
        (child) => {
          if (
            child === typed.type || child === typed.questionToken ||
            child === typed.exclamationToken || !keep(child)
          ) return;
          visit(child);
        },
        (children) => {
          if (children === typed.typeParameters || children === typed.typeArguments) return;
          for (const child of children) if (keep(child)) visit(child);
        },
      );
      out.push(")");
    };
    visit(node);
  };

  const units: Unit[] = [];
  const exports: Record<string, string> = {};
  const reexports: ModuleMeaning["reexports"] = [];
  const reexported: string[] = [];
  const headParts: string[] = [];
  const importStatements: TS.ImportDeclaration[] = [];
  for (const statement of file.statements) {
    if (ts.isImportDeclaration(statement)) {
      importStatements.push(statement);
      continue;
    }
    if (isTypeOnlyStatement(ts, statement)) continue;
    if (ts.isExportDeclaration(statement)) {
      const clause = statement.exportClause;
      const names: Record<string, string> = {};
      if (clause && ts.isNamedExports(clause)) {
        for (const el of clause.elements) {
          if (el.isTypeOnly) continue;
          names[el.name.text] = el.propertyName?.getText(file) ?? el.name.text;
        }
      }
      const from = statement.moduleSpecifier && ts.isStringLiteral(statement.moduleSpecifier)
        ? statement.moduleSpecifier.text
        : null;
      if (from === null) {
        Object.assign(exports, names);
        for (const local of Object.values(names)) allNames.add(local);
      } else {
        reexported.push(from);
        const all = clause === undefined || ts.isNamespaceExport(clause);
        if (clause && ts.isNamespaceExport(clause)) exports[clause.name.text] = `*${from}`;
        reexports.push({ from, names: all ? null : names });
      }
      const out: string[] = [];
      emit(statement, out, new Set());
      headParts.push(out.join(" "));
      continue;
    }

    const out: string[] = [];
    const names = new Set<string>();
    emit(statement, out, names);
    const declares: string[] = [];
    let effect = true;
    const exported = modifiers(statement).some((m) => m.kind === K.ExportKeyword);
    const isDefault = modifiers(statement).some((m) => m.kind === K.DefaultKeyword);
    if (ts.isFunctionDeclaration(statement) || ts.isClassDeclaration(statement)) {
      const local = statement.name?.text ?? "default";
      declares.push(local);
      if (exported) exports[isDefault ? "default" : local] = local;
      effect = ts.isClassDeclaration(statement) && !classIsPure(ts, statement);
    } else if (ts.isVariableStatement(statement)) {
      for (const d of statement.declarationList.declarations) bindingNames(ts, d.name, declares);
      if (exported) { for (const n of declares) exports[n] = n; }
      effect = !statement.declarationList.declarations.every((d) => isPure(ts, d.initializer));
    } else if (ts.isEnumDeclaration(statement) || ts.isModuleDeclaration(statement)) {
      if (ts.isIdentifier(statement.name)) declares.push(statement.name.text);
      if (exported) { for (const n of declares) exports[n] = n; }
      effect = ts.isModuleDeclaration(statement);
    } else if (ts.isExportAssignment(statement)) {
      declares.push("default");
      exports.default = "default";
      effect = !isPure(ts, statement.expression);
    }
    units.push({ hash: sha256Hex(out.join(" ")), declares, refs: [...names], effect });
  }

  // Imports last, once every name used as a value is known: the compiler erases an
  // import none of whose bindings is used as a value, and so does this.
  const running: string[] = [];
  const bindings: ImportBinding[] = [];
  for (const statement of importStatements) {
    const from = (statement.moduleSpecifier as TS.StringLiteral).text;
    const clause = statement.importClause;
    if (!clause) {
      running.push(from);
      headParts.push(`import ${JSON.stringify(from)}`);
      continue;
    }
    if (clause.phaseModifier === K.TypeKeyword) continue;
    const used: ImportBinding[] = [];
    if (clause.name && allNames.has(clause.name.text)) {
      used.push({ local: clause.name.text, from, imported: "default" });
    }
    const named = clause.namedBindings;
    if (named && ts.isNamespaceImport(named) && allNames.has(named.name.text)) {
      used.push({ local: named.name.text, from, imported: "*" });
    } else if (named && ts.isNamedImports(named)) {
      for (const el of named.elements) {
        if (el.isTypeOnly || !allNames.has(el.name.text)) continue;
        used.push({
          local: el.name.text,
          from,
          imported: el.propertyName?.getText(file) ?? el.name.text,
        });
      }
    }
    if (used.length === 0) continue;
    running.push(from);
    bindings.push(...used);
    const attributes = statement.attributes?.elements.map((a) =>
      `${a.name.getText(file)}=${a.value.getText(file)}`
    ) ?? [];
    headParts.push(
      `import ${JSON.stringify(from)} ${
        used.map((b) => `${b.imported}:${b.local}`).join(",")
      } ` +
        attributes.join(","),
    );
  }
  return {
    imports: [...running, ...reexported, ...dynamic],
    bindings,
    exports,
    reexports,
    dynamic,
    head: sha256Hex(headParts.join("\n")),
    units,
  };
}
