// The command line of the project: `deno task run|status|gc` land here. It hands the
// pipeline engine, which knows nothing about language models or tfjs, the registry of
// step kinds, the backends `--backend` may name and what each backend's numbers depend
// on (tfjs version, BLAS library and version: they go into cache keys).
import { STEP_KINDS } from "./steps/registry.ts";
import { cliMain } from "./pipeline/cli.ts";
import { BACKEND_NAMES, backendIdentity } from "./lm/backend/backend.ts";

if (import.meta.main) {
  await cliMain(STEP_KINDS, {
    backendIdentity,
    backends: BACKEND_NAMES,
    defaultBackend: "wasm",
  });
}
