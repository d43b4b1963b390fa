// The command line of the project: `deno task run|status|gc` land here. It hands the
// pipeline engine, which knows nothing about language models or tfjs, the registry of
// step kinds, the backends `--backend` may name and what each backend's numbers depend
// on (for cache keys).
import { STEP_KINDS } from "./steps/registry.ts";
import { cliMain } from "./pipeline/cli.ts";
import * as backends from "./lm/backend/backend.ts";
import { version_core } from "@tensorflow/tfjs-core";

/** The backend's library versions; the tfjs version until backend.ts says more. */
const identity: (name: string) => string =
  (backends as { backendIdentity?: (name: string) => string }).backendIdentity ??
    ((name: string) => `${name} ${version_core}`);

if (import.meta.main) {
  await cliMain(STEP_KINDS, {
    backendIdentity: identity,
    backends: backends.BACKEND_NAMES,
    defaultBackend: "wasm",
  });
}
