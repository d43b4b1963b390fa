// Training speed: tokens/s of a full step (forward, backward, Adam update) of lm/model/gpt.ts
// on a tfjs backend against the same model and batch in PyTorch, at equal threads: 1
// against 1, and all cores against all cores. Each side is measured in the same run,
// alternating step by step (a PyTorch worker process waits on stdin), so that noise from
// other processes hits both alike. Then where the tfjs step spends its time, per kernel.
//
//   deno run --allow-all bench/train.ts [--backend wasm|cpu|webgpu] [--preset cpu-small]
//       [--vocab 8192] [--seq 128] [--tokens 4096] [--steps 5] [--threads 1,2]
//       [--no-torch] [--no-profile] [--plain]
//
// --plain also times plain wasm (the BLAS switched off in the same process, its products
// on XNNPACK as before the BLAS) on 1 thread, alternating with the BLAS steps.
//
// Threads: the wasm backend's matrix products run in the native BLAS (lm/backend/blas.ts),
// whose thread count is set per measurement; the rest of the wasm graph runs on one
// thread. PyTorch is Debian's python3-torch at /usr/bin/python3 with
// torch.set_num_threads; without an optimised BLAS it runs ~18x slower, so the bench
// installs libopenblas0-pthread when it is missing (and says so) and prints the BLAS
// torch reports.
import * as tf from "@tensorflow/tfjs-core";
import { backendInfo, type BackendName, setBackend } from "../lm/backend/backend.ts";
import { activeBlas, useBlas } from "../lm/backend/wasm_blas.ts";
import { initWeights, meanLoss, modelConfig, trainableNames } from "../lm/model/gpt.ts";

const PYTHON = "/usr/bin/python3";

interface Args {
  backend: BackendName;
  preset: string;
  vocab: number;
  seq: number;
  tokens: number;
  steps: number;
  threads: number[];
  torch: boolean;
  profile: boolean;
  plain: boolean;
}

function parseArgs(argv: string[]): Args {
  const cores = Math.max(1, navigator.hardwareConcurrency || 1);
  const args: Args = {
    backend: "wasm",
    preset: "cpu-small",
    vocab: 8192,
    seq: 128,
    tokens: 4096,
    steps: 5,
    threads: cores > 1 ? [1, cores] : [1],
    torch: true,
    profile: true,
    plain: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`bench/train: ${flag} needs a value`);
      return v;
    };
    if (flag === "--backend") args.backend = value() as BackendName;
    else if (flag === "--preset") args.preset = value();
    else if (flag === "--vocab") args.vocab = Number(value());
    else if (flag === "--seq") args.seq = Number(value());
    else if (flag === "--tokens") args.tokens = Number(value());
    else if (flag === "--steps") args.steps = Math.max(3, Number(value()));
    else if (flag === "--threads") {
      args.threads = value().split(",").map((t) => t === "all" ? cores : Number(t));
      if (!args.threads.every((t) => Number.isInteger(t) && t >= 1)) {
        throw new Error(`bench/train: --threads takes positive integers, e.g. 1,${cores}`);
      }
    } else if (flag === "--no-torch") args.torch = false;
    else if (flag === "--no-profile") args.profile = false;
    else if (flag === "--plain") args.plain = true;
    else throw new Error(`bench/train: unknown flag ${flag}`);
  }
  if (args.tokens % args.seq !== 0) {
    throw new Error(`bench/train: --tokens ${args.tokens} is not a multiple of --seq ${args.seq}`);
  }
  return args;
}

function stats(xs: number[]): { min: number; median: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)] };
}

/** Deterministic pseudo-random token ids (B, T) and their shifted targets. */
function batch(B: number, T: number, V: number, seed: number): { x: Int32Array; y: Int32Array } {
  const x = new Int32Array(B * T), y = new Int32Array(B * T);
  let s = seed >>> 0;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) % V;
  for (let b = 0; b < B; b++) {
    let prev = next();
    for (let t = 0; t < T; t++) {
      const cur = next();
      x[b * T + t] = prev;
      y[b * T + t] = cur;
      prev = cur;
    }
  }
  return { x, y };
}

/** One tfjs training step as a timed function, and its clean-up. */
function tfjsStep(a: Args): { step: () => Promise<number>; dispose: () => void } {
  const cfg = modelConfig(a.preset, a.vocab, { block_size: Math.max(a.seq, 1) });
  const B = a.tokens / a.seq;
  const w = initWeights(cfg, 0);
  const vars = trainableNames(cfg).map((n) => w[n]);
  const optimizer = tf.train.adam(1e-3);
  const { x, y } = batch(B, a.seq, a.vocab, 1);
  const idx = tf.tensor2d(x, [B, a.seq], "int32");
  const targets = tf.tensor2d(y, [B, a.seq], "int32");
  const step = async () => {
    const t0 = performance.now();
    const loss = optimizer.minimize(() => meanLoss(cfg, w, idx, targets), true, vars)!;
    const value = (await loss.data())[0];
    loss.dispose();
    if (!Number.isFinite(value)) throw new Error(`bench/train: loss became ${value}`);
    return (performance.now() - t0) / 1000;
  };
  return {
    step,
    dispose: () => {
      optimizer.dispose();
      tf.dispose([idx, targets, ...Object.values(w)]);
    },
  };
}

/** Kernel time of one step, matrix products summed under one line, as printable rows. */
async function profileStep(step: () => Promise<number>): Promise<string[]> {
  const info = await tf.profile(async () => await step());
  const byKernel = new Map<string, number>();
  let total = 0;
  for (const k of info.kernels) {
    // tf.customGrad's "forward" wraps kernels that are listed on their own too.
    if (k.name === "forward") continue;
    const ms = typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
    const name = k.name === "BatchMatMul" || k.name === "_FusedMatMul" ? "matmul (all)" : k.name;
    byKernel.set(name, (byKernel.get(name) ?? 0) + ms);
    total += ms;
  }
  const rows = [...byKernel.entries()].sort((p, q) => q[1] - p[1]).slice(0, 10).map((
    [name, ms],
  ) =>
    `${name.padEnd(16)} ${ms.toFixed(0).padStart(6)} ms ${
      (100 * ms / total).toFixed(1).padStart(5)
    } %`
  );
  rows.push(`${"(all kernels)".padEnd(16)} ${total.toFixed(0).padStart(6)} ms`);
  return rows;
}

/**
 * The same GPT-2 and Adam step in plain PyTorch, as a worker: prints one JSON line of
 * set-up facts, then answers each stdin line "threads N" (set, reply) or "step" (one
 * timed step, reply with its seconds).
 */
const TORCH_WORKER = String.raw`
import json, math, os, re, sys, time
import torch
import torch.nn.functional as F
L, H, C, V, T, TOK = [int(a) for a in sys.argv[1:7]]
torch.manual_seed(0)
B = TOK // T
def p(*shape, std=0.02):
    return torch.nn.Parameter(torch.randn(*shape) * std)
wte, wpe = p(V, C), p(T, C)
layers = [dict(ln1=torch.nn.Parameter(torch.ones(C)), attn=p(C, 3 * C), proj=p(C, C, std=0.02 / math.sqrt(2 * L)),
               ln2=torch.nn.Parameter(torch.ones(C)), fc=p(C, 4 * C), mproj=p(4 * C, C, std=0.02 / math.sqrt(2 * L)))
          for _ in range(L)]
lnf = torch.nn.Parameter(torch.ones(C))
params = [wte, wpe, lnf] + [t for l in layers for t in l.values()]
opt = torch.optim.Adam(params, lr=1e-3)
mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
def loss_fn(idx, tgt):
    x = wte[idx] + wpe[:T]
    for l in layers:
        h = F.layer_norm(x, (C,), l["ln1"], None, 1e-5)
        q, k, v = (h @ l["attn"]).split(C, dim=2)
        q, k, v = [t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v)]
        att = ((q @ k.transpose(-2, -1)) / math.sqrt(C // H)).masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + (att @ v).transpose(1, 2).reshape(B, T, C) @ l["proj"]
        h = F.layer_norm(x, (C,), l["ln2"], None, 1e-5)
        x = x + F.gelu(h @ l["fc"], approximate="tanh") @ l["mproj"]
    x = F.layer_norm(x, (C,), lnf, None, 1e-5)
    return F.cross_entropy((x @ wte.T).view(-1, V), tgt.view(-1))
idx = torch.randint(0, V, (B, T)); tgt = torch.randint(0, V, (B, T))
def step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(idx, tgt); loss.backward(); opt.step()
    return float(loss)
blas = re.findall(r"(BLAS_INFO=[^,]*|LAPACK_INFO=[^,]*)", torch.__config__.show())
lib = "/usr/lib/x86_64-linux-gnu/libblas.so.3"
if os.path.exists(lib):
    blas.append("libblas.so.3 -> " + os.path.realpath(lib))
openblas = None
if os.path.exists(lib):
    import ctypes
    try:
        openblas = ctypes.CDLL(os.path.realpath(lib))
        openblas.openblas_get_num_threads()
    except (OSError, AttributeError):
        openblas = None
print(json.dumps({"torch": torch.__version__, "blas": blas}), flush=True)
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "threads":
        torch.set_num_threads(int(cmd[1]))
        # A "generic" BLAS (Debian's build) is not told torch's thread count: OpenBLAS
        # keeps its own pool of all cores unless set here, in the library torch loaded.
        if openblas is not None:
            openblas.openblas_set_num_threads(int(cmd[1]))
        print(json.dumps({"threads": torch.get_num_threads(),
                          "blas_threads": openblas.openblas_get_num_threads() if openblas else None}), flush=True)
    elif cmd[0] == "step":
        t0 = time.perf_counter(); step()
        print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)
`;

/** A PyTorch worker process driven line by line. */
class TorchWorker {
  private lines: AsyncIterator<string>;
  private constructor(
    private child: Deno.ChildProcess,
    private stdin: WritableStreamDefaultWriter<Uint8Array>,
    private script: string,
  ) {
    this.lines = child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(lineSplitter())
      [Symbol.asyncIterator]();
  }

  static async start(a: Args, L: number, H: number, C: number): Promise<TorchWorker> {
    const script = await Deno.makeTempFile({ suffix: ".py" });
    await Deno.writeTextFile(script, TORCH_WORKER);
    const child = new Deno.Command(PYTHON, {
      args: [script, ...[L, H, C, a.vocab, a.seq, a.tokens].map(String)],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    return new TorchWorker(child, child.stdin.getWriter(), script);
  }

  async reply(): Promise<Record<string, unknown>> {
    const next = await this.lines.next();
    if (next.done) throw new Error("the PyTorch worker exited (its error is above)");
    return JSON.parse(next.value);
  }

  async ask(command: string): Promise<Record<string, unknown>> {
    await this.stdin.write(new TextEncoder().encode(`${command}\n`));
    return await this.reply();
  }

  async close(): Promise<void> {
    await this.stdin.close().catch(() => {});
    await this.child.status;
    await Deno.remove(this.script).catch(() => {});
  }
}

function lineSplitter(): TransformStream<string, string> {
  let buffer = "";
  return new TransformStream({
    transform(chunk, controller) {
      buffer += chunk;
      const parts = buffer.split("\n");
      buffer = parts.pop()!;
      for (const line of parts) if (line.trim()) controller.enqueue(line);
    },
    flush(controller) {
      if (buffer.trim()) controller.enqueue(buffer);
    },
  });
}

async function ensureOpenBlas(): Promise<string> {
  const probe = await new Deno.Command("dpkg", {
    args: ["-s", "libopenblas0-pthread"],
    stdout: "null",
    stderr: "null",
  })
    .output().catch(() => null);
  if (probe?.success) return "libopenblas0-pthread present";
  console.log("libopenblas0-pthread is missing: installing it with apt-get (PyTorch's BLAS) ...");
  const install = await new Deno.Command("apt-get", {
    args: ["install", "-y", "libopenblas0-pthread"],
    stdout: "inherit",
    stderr: "inherit",
  }).output().catch(() => null);
  return install?.success
    ? "libopenblas0-pthread installed by this bench"
    : "libopenblas0-pthread missing and could not be installed: PyTorch runs on the reference BLAS";
}

const rate = (tokens: number, seconds: number) => (tokens / seconds).toFixed(0).padStart(6);

async function main(): Promise<void> {
  const a = parseArgs(Deno.args);
  const be = await setBackend(a.backend);
  const info = backendInfo();
  const cfg = modelConfig(a.preset, a.vocab);
  console.log(
    `model: ${a.preset} (${cfg.n_layer} layers, ${cfg.n_head} heads, width ${cfg.n_embd}), vocab ${a.vocab}, ` +
      `seq ${a.seq}, ${a.tokens} tokens/step (batch ${a.tokens / a.seq}); per thread count: ` +
      `1 warm-up step each side, then ${a.steps} steps each, alternating tfjs and PyTorch`,
  );
  console.log(`tfjs backend: ${be.name} ${be.version} (${info.detail})`);
  let torch: TorchWorker | null = null;
  if (a.torch) {
    console.log(await ensureOpenBlas());
    torch = await TorchWorker.start(a, cfg.n_layer, cfg.n_head, cfg.n_embd);
    const facts = await torch.reply() as { torch: string; blas: string[] };
    console.log(`PyTorch ${facts.torch}, ${facts.blas.join("; ") || "BLAS unknown"}`);
  }
  const blas = activeBlas();
  if (!blas) {
    console.log(
      `(tfjs threads are fixed when the backend starts: ${info.threads}; the thread counts ` +
        `below apply to PyTorch only)`,
    );
  }
  const tfjs = tfjsStep(a);
  const summary: string[] = [];
  try {
    for (const threads of a.threads) {
      const inEffect = blas ? blas.setThreads(threads) : info.threads;
      const set = torch ? await torch.ask(`threads ${threads}`) : null;
      if (set) {
        console.log(
          `  pytorch: ${set.threads} intra-op thread(s), BLAS ${set.blas_threads ?? "?"} thread(s)`,
        );
      }
      await tfjs.step(); // warm-up: kernel set-up, optimizer slots, BLAS buffers
      if (torch) await torch.ask("step");
      const withPlain = a.plain && blas !== null && threads === 1;
      if (withPlain) {
        useBlas(null);
        await tfjs.step(); // warm-up of the wasm kernels
        useBlas(blas);
      }
      const mine: number[] = [], theirs: number[] = [], plain: number[] = [];
      for (let i = 0; i < a.steps; i++) {
        mine.push(await tfjs.step());
        if (torch) theirs.push((await torch.ask("step")).seconds as number);
        if (withPlain) {
          useBlas(null);
          plain.push(await tfjs.step());
          useBlas(blas);
        }
      }
      const m = stats(mine);
      const label = `${threads} thread(s)`;
      console.log(`\n${label}: tfjs-${be.name} BLAS threads ${inEffect}`);
      console.log(
        `  tfjs-${be.name}: step min ${m.min.toFixed(3)} s, median ${m.median.toFixed(3)} s -> ` +
          `${rate(a.tokens, m.min)} tok/s (best), ${rate(a.tokens, m.median)} tok/s (median)`,
      );
      if (withPlain) {
        const p = stats(plain);
        console.log(
          `  plain wasm (no BLAS): step min ${p.min.toFixed(3)} s, median ${
            p.median.toFixed(3)
          } s -> ${rate(a.tokens, p.min)} tok/s (best), ${rate(a.tokens, p.median)} tok/s ` +
            `(median); BLAS / plain: ${(p.min / m.min).toFixed(2)} (best), ${
              (p.median / m.median).toFixed(2)
            } (median)`,
        );
      }
      if (torch) {
        const t = stats(theirs);
        console.log(
          `  pytorch:   step min ${t.min.toFixed(3)} s, median ${t.median.toFixed(3)} s -> ` +
            `${rate(a.tokens, t.min)} tok/s (best), ${rate(a.tokens, t.median)} tok/s (median)`,
        );
        const line = `ratio tfjs-${be.name} / pytorch at ${label}: ${
          (t.min / m.min).toFixed(2)
        } (best), ${(t.median / m.median).toFixed(2)} (median)`;
        console.log(`  ${line}`);
        summary.push(line);
      }
      if (a.profile) {
        console.log(`  where one tfjs-${be.name} step spends its time (kernel time, top 10):`);
        for (const row of await profileStep(tfjs.step)) console.log(`    ${row}`);
      }
    }
  } finally {
    tfjs.dispose();
    await torch?.close();
  }
  if (summary.length > 0) console.log(`\n${summary.join("\n")}`);
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error((e as Error).message);
    Deno.exit(1);
  }
}
