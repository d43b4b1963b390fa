// Why an instance would run (for --dry-run): its key parts are compared with those of
// the entries already in the cache for the same node and step kind, and the closest
// one names what changed (new, params changed, input changed, code changed, files
// changed, backend changed, seed changed). Manifests are scanned only when a dry run asks.
// "code changed" names what changed when the entry's manifest recorded its code parts
// (fingerprint.ts): up to three modules with the declarations edited in each, and the
// packages whose pinned version moved (`code changed: lm/model/gpt.ts (attention),
// npm:@tensorflow/tfjs-core 4.22.0 -> 4.23.0`). An older manifest without them says
// just "code changed".
import type { KeyParts, Manifest, Store } from "./store.ts";
import type { InputValue, StepKind } from "./step.ts";
import { hashJson } from "./hash.ts";
import { type CodeParts, codePartsOf, declarationHashes, MISSING_PART } from "./fingerprint.ts";

/** Most modules, declarations per module and packages a reason names before "+N more". */
const MAX_NAMED = 3;

/** The first `MAX_NAMED` items, then "+N more <what>" for the rest. */
function firstFew(items: string[], what: string): string[] {
  if (items.length <= MAX_NAMED) return items;
  return [...items.slice(0, MAX_NAMED), `+${items.length - MAX_NAMED} more${what}`];
}

/** Declarations of one module whose hash differs (or that only one side reaches). */
function changedDeclarations(before: string, after: string): string[] {
  const old = declarationHashes(before);
  const now = declarationHashes(after);
  const names = new Set([...old.keys(), ...now.keys()]);
  return [...names].filter((name) => old.get(name) !== now.get(name));
}

/** What changed between two modules' parts, as `path (declarations)`, sorted by path. */
function moduleChanges(before: CodeParts["modules"], after: CodeParts["modules"]): string[] {
  const paths = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  const out: string[] = [];
  for (const path of paths) {
    const old = before[path];
    const now = after[path];
    if (old === now) continue;
    if (old === undefined) out.push(`${path} (now reached)`);
    else if (now === undefined) out.push(`${path} (no longer reached)`);
    else if (now === MISSING_PART) out.push(`${path} (missing)`);
    else if (old === MISSING_PART) out.push(`${path} (found)`);
    else {
      const names = changedDeclarations(old, now);
      out.push(names.length ? `${path} (${firstFew(names, "").join(", ")})` : path);
    }
  }
  return out;
}

/** Packages whose pinned version differs, as `name old -> new`. */
function packageChanges(before: CodeParts["packages"], after: CodeParts["packages"]): string[] {
  const shown = (version: string | undefined) =>
    version === undefined ? "(none)" : version || "(unpinned)";
  const names = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  return names.filter((name) => before[name] !== after[name])
    .map((name) => `${name} ${shown(before[name])} -> ${shown(after[name])}`);
}

/**
 * "code changed", followed by what changed when both sides' code parts are known:
 * the step kind's `version`, else up to three modules, then the packages.
 */
export function codeChangeReason(before?: CodeParts, after?: CodeParts): string {
  if (!before || !after) return "code changed";
  const named: string[] = [];
  if (before.version !== after.version) {
    named.push(`version ${before.version ?? "(none)"} -> ${after.version ?? "(none)"}`);
  } else {
    named.push(...firstFew(moduleChanges(before.modules, after.modules), " modules"));
  }
  named.push(...firstFew(packageChanges(before.packages, after.packages), " packages"));
  return named.length ? `code changed: ${named.join(", ")}` : "code changed";
}

/** Key parts with the inputs unknown when an upstream instance has not been built yet. */
export type PartialKeyParts = Omit<KeyParts, "inputs"> & { inputs: KeyParts["inputs"] | null };

export class Explainer {
  #byIdentity: Promise<Map<string, Manifest[]>> | null = null;
  constructor(private readonly store: Store) {}

  #load(): Promise<Map<string, Manifest[]>> {
    this.#byIdentity ??= (async () => {
      const map = new Map<string, Manifest[]>();
      for (const key of await this.store.listKeys()) {
        const m = await this.store.readManifest(key).catch(() => null);
        if (!m?.keyParts) continue;
        const id = `${m.node}\u0000${m.step}`;
        if (!map.has(id)) map.set(id, []);
        map.get(id)!.push(m);
      }
      return map;
    })();
    return this.#byIdentity;
  }

  /** Reasons this instance is not in the cache, most specific first. */
  async reasons(node: string, parts: PartialKeyParts): Promise<string[]> {
    const previous = (await this.#load()).get(`${node}\u0000${parts.step}`) ?? [];
    if (previous.length === 0) return ["new"];
    let best: string[] | null = null;
    let bestFinished = "";
    for (const m of previous) {
      const old = m.keyParts;
      const diff: string[] = [];
      if (old.code !== parts.code) {
        diff.push(codeChangeReason(m.codeParts, codePartsOf(parts.code)));
      }
      if (hashJson(old.params) !== hashJson(parts.params)) diff.push("params changed");
      if (parts.inputs === null || hashJson(old.inputs) !== hashJson(parts.inputs)) {
        diff.push("input changed");
      }
      if (hashJson(old.files ?? {}) !== hashJson(parts.files ?? {})) diff.push("files changed");
      if (old.backend !== parts.backend) diff.push("backend changed");
      if (old.seed !== parts.seed) diff.push("seed changed");
      if (
        best === null || diff.length < best.length ||
        (diff.length === best.length && m.finished > bestFinished)
      ) {
        best = diff;
        bestFinished = m.finished;
      }
    }
    return best && best.length ? best : ["new"];
  }
}

/**
 * " · <estimate>" from the step kind's `estimate` hook for a dry-run line, or "" when it
 * has none. An estimate that fails says so instead of stopping the dry run.
 */
export async function estimateSuffix(
  kind: StepKind,
  params: unknown,
  inputs: Record<string, InputValue> | null,
  env: { backend: string; artifacts: string },
): Promise<string> {
  if (!kind.estimate) return "";
  try {
    const text = await kind.estimate(params, inputs, env);
    return text ? ` · ${text}` : "";
  } catch (e) {
    return ` · no estimate (${String((e as Error).message ?? e).split("\n")[0]})`;
  }
}
