// Why an instance would run (for --dry-run): its key parts are compared with those of
// the entries already in the cache for the same node and step kind, and the closest
// one names what changed (new, params changed, input changed, code changed, files
// changed, backend changed, seed changed). Manifests are scanned only when a dry run asks.
import type { KeyParts, Manifest, Store } from "./store.ts";
import type { InputValue, StepKind } from "./step.ts";
import { hashJson } from "./hash.ts";

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
      if (old.code !== parts.code) diff.push("code changed");
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
