// Training speed: tokens/s of a full step (forward, backward, Adam update) of lm/model/gpt.ts
// on a tfjs backend, beside the same model and batch in PyTorch on the same machine in
// the same run, and where the tfjs step spends its time, per kernel.
//
//   deno run --allow-all bench/train.ts [--backend wasm|cpu|webgpu] [--preset cpu-small]
//       [--vocab 8192] [--seq 128] [--tokens 4096] [--steps 3] [--no-torch] [--no-profile]
//
// PyTorch is Debian's python3-torch (1.13) at /usr/bin/python3 with 2 threads; without an
// optimised BLAS it runs ~18x slower, so the bench installs libopenblas0-pthread when it
// is missing (and says so) and prints the BLAS torch reports.
//
// What to expect on a 2-core x86 machine (cpu-small, vocab 8192, 4096 tokens/step):
// tfjs-wasm on 1 thread ~1,700-1,800 tok/s against PyTorch's ~4,300 (ratio ~0.4); with
// TFJS_WASM_THREADS=1 on an idle machine ~2,600. About 75% of the step is XNNPACK
// matmuls (the tied output head alone ~40%), which run at 20-40 GFLOP/s per thread.
import * as tf from "@tensorflow/tfjs-core";
import { backendInfo, type BackendName, setBackend } from "../lm/backend/backend.ts";
import { initWeights, meanLoss, modelConfig, trainableNames } from "../lm/model/gpt.ts";

const PYTHON = "/usr/bin/python3";

interface Args {
  backend: BackendName;
  preset: string;
  vocab: number;
  seq: number;
  tokens: number;
  steps: number;
  torch: boolean;
  profile: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = {
    backend: "wasm",
    preset: "cpu-small",
    vocab: 8192,
    seq: 128,
    tokens: 4096,
    steps: 3,
    torch: true,
    profile: true,
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
    else if (flag === "--no-torch") args.torch = false;
    else if (flag === "--no-profile") args.profile = false;
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

async function benchTfjs(a: Args): Promise<{ times: number[]; profile: string[] }> {
  const cfg = modelConfig(a.preset, a.vocab, { block_size: Math.max(a.seq, 1) });
  const B = a.tokens / a.seq;
  const w = initWeights(cfg, 0);
  const vars = trainableNames(cfg).map((n) => w[n]);
  const optimizer = tf.train.adam(1e-3);
  const { x, y } = batch(B, a.seq, a.vocab, 1);
  const idx = tf.tensor2d(x, [B, a.seq], "int32");
  const targets = tf.tensor2d(y, [B, a.seq], "int32");
  const step = async () => {
    const loss = optimizer.minimize(() => meanLoss(cfg, w, idx, targets), true, vars)!;
    const value = (await loss.data())[0];
    loss.dispose();
    if (!Number.isFinite(value)) throw new Error(`bench/train: loss became ${value}`);
  };
  await step(); // warm-up: kernel set-up, optimizer slots
  const times: number[] = [];
  for (let i = 0; i < a.steps; i++) {
    const t0 = performance.now();
    await step();
    times.push((performance.now() - t0) / 1000);
  }
  const profile: string[] = [];
  if (a.profile) {
    const info = await tf.profile(async () => await step());
    const byKernel = new Map<string, number>();
    let total = 0;
    for (const k of info.kernels) {
      const ms = typeof k.kernelTimeMs === "number" ? k.kernelTimeMs : 0;
      byKernel.set(k.name, (byKernel.get(k.name) ?? 0) + ms);
      total += ms;
    }
    const top = [...byKernel.entries()].sort((p, q) => q[1] - p[1]).slice(0, 12);
    for (const [name, ms] of top) {
      profile.push(
        `${name.padEnd(22)} ${ms.toFixed(0).padStart(7)} ms  ${
          (100 * ms / total).toFixed(1).padStart(5)
        } %`,
      );
    }
    profile.push(`${"(all kernels)".padEnd(22)} ${total.toFixed(0).padStart(7)} ms`);
  }
  optimizer.dispose();
  tf.dispose([idx, targets, ...Object.values(w)]);
  return { times, profile };
}

/** The same GPT-2 and Adam step in plain PyTorch; prints one JSON line. */
const TORCH_SCRIPT = String.raw`
import json, math, sys, time
import torch
import torch.nn.functional as F
L, H, C, V, T, TOK, STEPS = [int(a) for a in sys.argv[1:8]]
torch.set_num_threads(2)
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
step()
times = []
for _ in range(STEPS):
    t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
import re
blas = re.findall(r"(BLAS_INFO=[^,]*|LAPACK_INFO=[^,]*)", torch.__config__.show())
try:
    blas.append("libblas.so.3 -> " + __import__("os").path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3"))
except Exception:
    pass
print(json.dumps({"times": times, "torch": torch.__version__, "threads": torch.get_num_threads(), "blas": blas}))
`;

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

async function benchTorch(a: Args, L: number, H: number, C: number): Promise<
  { times: number[]; torch: string; threads: number; blas: string[] } | null
> {
  const script = await Deno.makeTempFile({ suffix: ".py" });
  try {
    await Deno.writeTextFile(script, TORCH_SCRIPT);
    const out = await new Deno.Command(PYTHON, {
      args: [script, ...[L, H, C, a.vocab, a.seq, a.tokens, a.steps].map(String)],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      console.log(
        `PyTorch baseline failed: ${new TextDecoder().decode(out.stderr).trim().split("\n").pop()}`,
      );
      return null;
    }
    return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
  } catch (e) {
    console.log(`PyTorch baseline unavailable (${PYTHON}): ${(e as Error).message}`);
    return null;
  } finally {
    await Deno.remove(script);
  }
}

async function main(): Promise<void> {
  const a = parseArgs(Deno.args);
  const be = await setBackend(a.backend);
  const info = backendInfo();
  const cfg = modelConfig(a.preset, a.vocab);
  console.log(
    `model: ${a.preset} (${cfg.n_layer} layers, ${cfg.n_head} heads, width ${cfg.n_embd}), vocab ${a.vocab}, ` +
      `seq ${a.seq}, ${a.tokens} tokens/step (batch ${
        a.tokens / a.seq
      }), ${a.steps} timed steps after 1 warm-up`,
  );
  console.log(`tfjs backend: ${be.name} ${be.version} (${info.detail})`);
  const tfjs = await benchTfjs(a);
  const ts = stats(tfjs.times);
  console.log(
    `tfjs-${be.name}: step min ${ts.min.toFixed(3)} s, median ${ts.median.toFixed(3)} s -> ` +
      `${(a.tokens / ts.min).toFixed(0)} tok/s (best), ${
        (a.tokens / ts.median).toFixed(0)
      } tok/s (median)`,
  );
  if (tfjs.profile.length > 0) {
    console.log(`where one tfjs-${be.name} step spends its time (kernel time, top 12):`);
    for (const line of tfjs.profile) console.log(`  ${line}`);
  }
  if (!a.torch) return;
  console.log(await ensureOpenBlas());
  const torch = await benchTorch(a, cfg.n_layer, cfg.n_head, cfg.n_embd);
  if (!torch) return;
  const tt = stats(torch.times);
  console.log(
    `PyTorch ${torch.torch}, ${torch.threads} threads, ${torch.blas.join("; ") || "BLAS unknown"}`,
  );
  console.log(
    `pytorch: step min ${tt.min.toFixed(3)} s, median ${tt.median.toFixed(3)} s -> ` +
      `${(a.tokens / tt.min).toFixed(0)} tok/s (best), ${
        (a.tokens / tt.median).toFixed(0)
      } tok/s (median)`,
  );
  console.log(
    `ratio tfjs-${be.name} / pytorch (tokens/s): ${(tt.min / ts.min).toFixed(2)} (best), ` +
      `${(tt.median / ts.median).toFixed(2)} (median)`,
  );
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error((e as Error).message);
    Deno.exit(1);
  }
}
