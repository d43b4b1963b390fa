// `deno task score <model-dir> <file> [--seq-len T]`: the mean next-token loss of a
// Hugging Face GPT-2 or GPT-NeoX folder (config.json + weights, any layout) on a token
// file or a text file, printed as one JSON line. For users checking a model (e.g. a
// Pythia revision against its published loss) and for checks of the model code.
import { parseArgs } from "node:util";
import { loadModel } from "../lm/model/model.ts";
import { disposeWeights } from "../lm/eval/loss.ts";
import { scoreTokens } from "../lm/eval/score.ts";
import { loadHfTokenizer } from "../lm/data/hf_tokenizer.ts";
import { type BackendName, setBackend } from "../lm/backend/backend.ts";

export const HELP = `Mean next-token loss of a Hugging Face GPT-2 / GPT-NeoX folder.

Usage: deno task score <model-dir> <file> [options]

  <model-dir>  config.json (model_type gpt2 or gpt_neox) and weights: model.safetensors,
               model.safetensors.index.json + shards, pytorch_model.bin or
               pytorch_model.bin.index.json + shards; tokenizer.json for text files.
  <file>       *.bin: token ids in nanoGPT's layout (raw little-endian uint16, or uint32
               with --dtype uint32 or when a meta.json beside it says so);
               anything else: UTF-8 text, tokenized with the folder's tokenizer.json.

Options:
  --seq-len T       window length (default: the model's context length). Window i reads
                    tokens i*T .. i*T+T-1 and predicts i*T+1 .. i*T+T; every full window.
  --dtype D         uint16 | uint32 for a .bin file
  --batch-size N    windows per forward pass (default: 2048 tokens' worth, at least 1)
  --backend B       wasm (default) | cpu | webgpu | tensorflow
  -h, --help        this text

Prints one JSON line: {"loss", "tokens", "windows", "seq_len", "model_type", ...}.
`;

export interface ScoreOptions {
  modelDir: string;
  file: string;
  seqLen: number | null;
  dtype: "uint16" | "uint32" | null;
  batchSize: number;
  backend: BackendName;
}

function positiveInt(flag: string, v: string | undefined): number | null {
  if (v === undefined) return null;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) {
    throw new Error(`${flag} must be a positive integer, got "${v}"`);
  }
  return n;
}

export function parseScoreArgs(args: string[]): ScoreOptions | "help" {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      "seq-len": { type: "string" },
      dtype: { type: "string" },
      "batch-size": { type: "string" },
      backend: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) return "help";
  if (positionals.length !== 2) {
    throw new Error(
      `expected <model-dir> <file>, got ${positionals.length} argument(s); see --help`,
    );
  }
  const dtype = values.dtype ?? null;
  if (dtype !== null && dtype !== "uint16" && dtype !== "uint32") {
    throw new Error(`--dtype must be uint16 or uint32, got "${dtype}"`);
  }
  return {
    modelDir: positionals[0].replace(/\/+$/, ""),
    file: positionals[1],
    seqLen: positiveInt("--seq-len", values["seq-len"]),
    dtype,
    batchSize: positiveInt("--batch-size", values["batch-size"]) ?? 0,
    backend: (values.backend ?? "wasm") as BackendName,
  };
}

/** The token ids of a .bin file (dtype from the flag, a meta.json beside it, or uint16). */
async function readTokenFile(
  path: string,
  flag: "uint16" | "uint32" | null,
): Promise<Uint16Array | Uint32Array> {
  let dtype = flag;
  if (!dtype) {
    const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
    try {
      const meta = JSON.parse(await Deno.readTextFile(`${dir}/meta.json`));
      if (meta.dtype === "uint32" || meta.dtype === "uint16") dtype = meta.dtype;
    } catch { /* no meta.json: nanoGPT's default */ }
  }
  const bytes = await Deno.readFile(path);
  const size = dtype === "uint32" ? 4 : 2;
  if (bytes.length % size !== 0) {
    throw new Error(
      `${path}: ${bytes.length} bytes is not a whole number of ${dtype ?? "uint16"} ids`,
    );
  }
  const copy = bytes.slice().buffer;
  return size === 4 ? new Uint32Array(copy) : new Uint16Array(copy);
}

export async function score(opts: ScoreOptions): Promise<Record<string, unknown>> {
  await setBackend(opts.backend);
  const model = await loadModel(opts.modelDir);
  try {
    let tokens: ArrayLike<number>;
    if (opts.file.endsWith(".bin")) {
      tokens = await readTokenFile(opts.file, opts.dtype);
    } else {
      if (!model.tokenizerPath) {
        throw new Error(
          `${opts.modelDir}: no tokenizer.json to tokenize the text file ${opts.file}`,
        );
      }
      const tok = await loadHfTokenizer(model.tokenizerPath);
      tokens = tok.encode(await Deno.readTextFile(opts.file));
    }
    const seqLen = opts.seqLen ?? model.config.block_size;
    const t0 = performance.now();
    // Default: about 2048 tokens per forward pass (attention memory grows with B*T*T).
    const batch = opts.batchSize || Math.max(1, Math.floor(2048 / seqLen));
    const r = await scoreTokens(model.config, model.weights, tokens, seqLen, batch);
    const seconds = (performance.now() - t0) / 1000;
    return {
      ...r,
      model_type: "arch" in model.config ? model.config.arch : "gpt2",
      model: opts.modelDir,
      file: opts.file,
      backend: opts.backend,
      seconds: Number(seconds.toFixed(3)),
      tokens_per_s: Math.round(r.tokens / seconds),
    };
  } finally {
    disposeWeights(model.weights);
  }
}

if (import.meta.main) {
  try {
    const opts = parseScoreArgs(Deno.args);
    if (opts === "help") {
      console.log(HELP);
    } else {
      console.log(JSON.stringify(await score(opts)));
    }
  } catch (e) {
    console.error(`score: ${e instanceof Error ? e.message : String(e)}`);
    Deno.exit(1);
  }
}
