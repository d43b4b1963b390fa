// Benchmark of one optimizer update (lm/train/optim.ts: global-norm clipping + AdamW with a
// decay mask + reading the gradient norm back) on the parameters of a CPU-scale GPT
// (cpu-small, vocab 8192: about 1.8M parameters), against tfjs's own tf.train.adam on the
// same gradients in the same run (a baseline without clipping or weight decay), and,
// when Debian's python3-torch is present, torch.optim.AdamW + clip_grad_norm_ with 2
// threads on the same shapes.
// Usage: deno run --allow-all bench/optim.ts [--backend wasm|cpu|webgpu] [--repeats R]
import * as tf from "@tensorflow/tfjs-core";
import { type BackendName, setBackend } from "../lm/backend/backend.ts";
import { isDecayed, modelConfig, parameterShapes } from "../lm/model/gpt.ts";
import { AdamW, type Grads, type Params } from "../lm/train/optim.ts";

const args = Deno.args;
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const BACKEND = flag("backend", "wasm");
const REPEATS = Math.max(3, Number(flag("repeats", "10")));
const PRESET = "cpu-small";
const VOCAB = 8192;

function stats(xs: number[]): { min: number; median: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)] };
}

/** Seconds per call of `run` (after one warm-up call), min and median of REPEATS. */
async function timeIt(
  label: string,
  run: () => Promise<void>,
): Promise<{ min: number; median: number }> {
  await run();
  const times: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    const t0 = performance.now();
    await run();
    times.push((performance.now() - t0) / 1000);
  }
  const s = stats(times);
  console.log(
    `  ${label.padEnd(40)} min ${(s.min * 1e3).toFixed(2)} ms  median ${
      (s.median * 1e3).toFixed(2)
    } ms`,
  );
  return s;
}

/** torch.optim.AdamW + clip_grad_norm_ on the same shapes; null when torch is missing. */
async function torchTimes(
  shapes: [string, number[]][],
): Promise<{ min: number; median: number } | null> {
  const script = `
import json, sys, time, torch
torch.set_num_threads(2)
shapes = json.loads(sys.argv[1]); repeats = int(sys.argv[2])
decayed = set(json.loads(sys.argv[3]))
g = torch.Generator().manual_seed(0)
ps = {n: torch.nn.Parameter(torch.randn(s, generator=g) * 0.02) for n, s in shapes}
for n, p in ps.items(): p.grad = torch.randn(p.shape, generator=g) * 1e-2
opt = torch.optim.AdamW([{"params": [p for n, p in ps.items() if n in decayed], "weight_decay": 0.1},
                         {"params": [p for n, p in ps.items() if n not in decayed], "weight_decay": 0.0}],
                        lr=1e-3, betas=(0.9, 0.95), eps=1e-8, foreach=False)
def step():
    norm = torch.nn.utils.clip_grad_norm_(list(ps.values()), 1.0)
    opt.step()
    return float(norm)
step()
times = []
for _ in range(repeats):
    t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
print(json.dumps(times))
`;
  const decayed = shapes.map(([n]) => n).filter(isDecayed);
  try {
    const out = await new Deno.Command("/usr/bin/python3", {
      args: ["-c", script, JSON.stringify(shapes), String(REPEATS), JSON.stringify(decayed)],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) return null;
    return stats(JSON.parse(new TextDecoder().decode(out.stdout)) as number[]);
  } catch {
    return null;
  }
}

const backend = await setBackend(BACKEND as BackendName);
const cfg = modelConfig(PRESET, VOCAB);
const shapes = parameterShapes(cfg);
const numel = shapes.reduce((a, [, s]) => a + s.reduce((x, y) => x * y, 1), 0);
console.log(
  `optimizer update, ${PRESET} (vocab ${VOCAB}): ${
    (numel / 1e6).toFixed(2)
  }M parameters in ${shapes.length} tensors, ` +
    `backend ${backend.name} ${backend.version}, ${REPEATS} repeats`,
);

const params: Params = {};
const grads: Grads = {};
shapes.forEach(([name, shape], i) => {
  params[name] = tf.variable(tf.randomNormal(shape, 0, 0.02, "float32", i), true, `bench-${name}`);
  grads[name] = tf.randomNormal(shape, 0, 1e-2, "float32", 1000 + i);
});

const ours = new AdamW(params, { decayed: isDecayed });
const oursTime = await timeIt("lm/train/optim.ts AdamW (clip + decay mask)", async () => {
  const norm = ours.update(grads, 1e-3);
  await norm.data(); // the train step reads the norm every step
  norm.dispose();
});
ours.dispose();

const builtin = tf.train.adam(1e-3, 0.9, 0.95, 1e-8);
const names = Object.keys(params);
const builtinTime = await timeIt("tf.train.adam (no clip, no decay)", async () => {
  builtin.applyGradients(names.map((n) => ({ name: params[n].name, tensor: grads[n] })));
  await params[names[0]].data(); // wait for the backend to finish
});
builtin.dispose();

const torch = await torchTimes(shapes);
if (torch) {
  console.log(
    `  ${"torch AdamW + clip_grad_norm_ (2 thr.)".padEnd(40)} min ${
      (torch.min * 1e3).toFixed(2)
    } ms  median ${(torch.median * 1e3).toFixed(2)} ms`,
  );
} else {
  console.log(
    "  torch: /usr/bin/python3 with torch not found, skipped (apt-get install python3-torch)",
  );
}
console.log(
  `ratio (median time, lower is faster): ours / tf.train.adam = ${
    (oursTime.median / builtinTime.median).toFixed(2)
  }` +
    (torch ? `, ours / torch = ${(oursTime.median / torch.median).toFixed(2)}` : ""),
);
console.log(
  `parameters updated per second (median): ours ${(numel / oursTime.median / 1e6).toFixed(1)}M, ` +
    `tf.train.adam ${(numel / builtinTime.median / 1e6).toFixed(1)}M` +
    (torch ? `, torch ${(numel / torch.median / 1e6).toFixed(1)}M` : ""),
);
tf.dispose([...Object.values(params), ...Object.values(grads)]);
