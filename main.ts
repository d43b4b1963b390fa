// The command line of the project: `deno task run|status|gc` land here. It hands the
// registry of step kinds to the pipeline engine, which knows nothing about them.
import { STEP_KINDS } from "./steps/registry.ts";
import { cliMain } from "./pipeline/cli.ts";

if (import.meta.main) await cliMain(STEP_KINDS);
