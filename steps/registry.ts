// Every step kind a pipeline file may name. The engine gets this list from main.ts;
// it never imports step modules itself.
import type { StepKind } from "../pipeline/step.ts";
import { corpusStep } from "./corpus.ts";
import { tokenizeStep } from "./tokenize.ts";
import { tokensStep } from "./tokens.ts";
import { trainStep } from "./train.ts";
import { averageStep } from "./average.ts";
import { evaluateStep } from "./evaluate.ts";
import { savingsStep } from "./savings.ts";
import { lmcStep } from "./lmc.ts";
import { plotStep } from "./plot.ts";
import { intervalsStep } from "./intervals.ts";
import { resultsStep } from "./results.ts";
import { hubStep } from "./hub.ts";
import { hfTokenizeStep } from "./hf_tokenize.ts";

export const STEP_KINDS: StepKind[] = [
  corpusStep,
  tokenizeStep,
  tokensStep,
  trainStep,
  averageStep,
  evaluateStep,
  savingsStep,
  lmcStep,
  plotStep,
  intervalsStep,
  resultsStep,
  hubStep,
  hfTokenizeStep,
] as StepKind[];
