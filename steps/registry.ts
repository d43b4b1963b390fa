// Every step kind a pipeline file may name. The engine gets this list from main.ts;
// it never imports step modules itself.
import type { StepKind } from "../pipeline/step.ts";

export const STEP_KINDS: StepKind[] = [];
