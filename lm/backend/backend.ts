// Chooses the tfjs backend the model runs on, and says which one for cache keys.
//
// - wasm (default): XNNPACK with SIMD, whose matrix products run in a native BLAS
//   (OpenBLAS / Accelerate through Deno's FFI, lm/backend/blas.ts + wasm_blas.ts) when
//   one is found, else in the fast BatchMatMul of lm/backend/wasm_fast.ts; XNNPACK
//   threads where they can be switched on under Deno (lm/backend/wasm_threads.ts);
// - cpu: pure JavaScript, slow and deterministic: tests and references;
// - webgpu: Deno's own navigator.gpu (Vulkan / Metal / D3D12), no CUDA toolkit needed;
//   the adapter and tfjs kernel fixes are in lm/backend/webgpu.ts;
// - tensorflow: tfjs-node-gpu / tfjs-node, when their native library is installed.
//
// Importing the union package `@tensorflow/tfjs` registers every gradient function:
// tfjs-core's own ESM gradient registration does not load under Deno.
import "@tensorflow/tfjs";
import * as tf from "@tensorflow/tfjs-core";
import { version_cpu } from "@tensorflow/tfjs-backend-cpu";
import { getThreadsCount, version_wasm } from "@tensorflow/tfjs-backend-wasm";
import { installFastWasmMatMul } from "./wasm_fast.ts";
import { blasLabel, findBlas } from "./blas.ts";
import { installBlasKernels, useBlas } from "./wasm_blas.ts";
import { startWasmWithThreads, type WasmThreadsResult } from "./wasm_threads.ts";
import {
  type AdapterSummary,
  describeAdapter,
  installWebgpuKernelFixes,
  requestWebgpuAdapter,
  softwareAdapterWarning,
  watchWebgpuErrors,
} from "./webgpu.ts";

export type BackendName = "wasm" | "cpu" | "webgpu" | "tensorflow";
export const BACKEND_NAMES: readonly BackendName[] = ["wasm", "cpu", "webgpu", "tensorflow"];

export interface BackendInfo {
  /** tfjs backend name ("wasm", "cpu", "webgpu", "tensorflow"). */
  name: BackendName;
  /** Version of the backend package (part of the cache key). */
  version: string;
  /** Threads doing the numerical work (wasm: XNNPACK's pool; cpu: 1; GPU: 0 = n/a). */
  threads: number;
  /** WebAssembly SIMD in use (wasm only). */
  simd: boolean;
  /** Device or library detail for logs and the README (adapter name, ...). */
  detail: string;
  /** webgpu: the adapter that runs (lm/backend/webgpu.ts). */
  adapter?: AdapterSummary;
  /** wasm: the native BLAS its matrix products run in, or null (plain wasm). */
  blas?: string | null;
}

/** Options of setBackend; the defaults are what a user gets. */
export interface BackendOptions {
  /**
   * wasm: try to run XNNPACK on several threads. Default: on only when the environment
   * variable TFJS_WASM_THREADS=1 is set. Threads do start under Deno 2.9 (2 on 2 cores),
   * and on an otherwise idle machine make a training step ~1.5x faster; but XNNPACK's
   * pool spin-waits, so when another process shares the cores a step became 1.2-2x
   * slower than on 1 thread. The fallback to 1 thread on a failed start costs the
   * start-up timeout.
   */
  threads?: boolean;
  /** wasm: thread count to ask for (default: all logical cores). */
  numThreads?: number;
  /**
   * wasm: run matrix products in a native BLAS when one is found (default true; the
   * environment variable LAWA_BLAS_LIB=none also turns it off). Its threads:
   * LAWA_THREADS, else all logical cores.
   */
  blas?: boolean;
  /** Print one-line notices (threads unavailable, ...) on stderr (default true). */
  quiet?: boolean;
}

let current: BackendInfo | null = null;
/** The no-BLAS notice is printed once per process. */
let noticedNoBlas = false;

/** What the active backend is (after setBackend). */
export function backendInfo(): BackendInfo {
  if (!current) throw new Error("no backend chosen yet: call setBackend(name) first");
  return { ...current };
}

function notice(opts: BackendOptions, line: string): void {
  if (!opts.quiet) console.error(line);
}

/** The cpu backend greets Node users once on first use; Deno users need not see that. */
function silenceCpuGreeting(): void {
  const cpu = tf.findBackend("cpu") as unknown as { firstUse?: boolean } | null;
  if (cpu && "firstUse" in cpu) cpu.firstUse = false;
}

async function activate(name: string): Promise<void> {
  let ok = false;
  try {
    ok = await tf.setBackend(name);
  } catch (e) {
    throw new Error(`backend ${name} failed to start: ${(e as Error).message ?? e}`);
  }
  if (!ok) throw new Error(`backend ${name} failed to start (tfjs setBackend returned false)`);
  await tf.ready();
}

async function setWasm(opts: BackendOptions): Promise<BackendInfo> {
  installFastWasmMatMul();
  installBlasKernels();
  const found = opts.blas === false ? null : findBlas();
  if (found?.blas === null && !noticedNoBlas) {
    noticedNoBlas = true;
    notice(opts, `wasm backend: no native BLAS, matrix products on wasm (${found.reason})`);
  }
  const blas = found?.blas ?? null;
  useBlas(blas);
  let threadsResult: WasmThreadsResult = { enabled: false, reason: "threads not asked for" };
  const wantThreads = opts.threads ?? Deno.env.get("TFJS_WASM_THREADS") === "1";
  if (tf.findBackend("wasm") === null && wantThreads) {
    const n = opts.numThreads ?? navigator.hardwareConcurrency;
    threadsResult = await startWasmWithThreads(n, () => activate("wasm"), 10_000);
  }
  await activate("wasm");
  const simd = (await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT")) as boolean;
  const threads = getThreadsCount();
  if (wantThreads && threads <= 1 && threadsResult.reason !== "threads not asked for") {
    notice(opts, `wasm backend: running on 1 thread (${threadsResult.reason})`);
  }
  const xnnpack = `XNNPACK, ${threads} thread(s), SIMD ${simd ? "on" : "off"}`;
  return {
    name: "wasm",
    version: version_wasm,
    threads: blas ? Math.max(threads, blas.threads) : threads,
    simd,
    detail: blas
      ? `matmuls in ${blasLabel(blas)} (${blas.threads} thread(s)); ${xnnpack}`
      : xnnpack,
    blas: blas ? blasLabel(blas) : null,
  };
}

async function setWebgpu(opts: BackendOptions): Promise<BackendInfo> {
  const adapter = await requestWebgpuAdapter();
  const webgpu = await import("@tensorflow/tfjs-backend-webgpu");
  installWebgpuKernelFixes();
  await activate("webgpu");
  watchWebgpuErrors();
  const warning = softwareAdapterWarning(adapter);
  if (warning) notice(opts, warning);
  const version = (webgpu as unknown as { version_webgpu?: string }).version_webgpu ??
    tf.version_core;
  return {
    name: "webgpu",
    version,
    threads: 0,
    simd: false,
    detail: describeAdapter(adapter),
    adapter,
  };
}

/** Where tfjs-node's packages are looked for; they are not among the pinned imports. */
const TFJS_NODE_PACKAGES = [
  "npm:@tensorflow/tfjs-node-gpu@4.22.0",
  "npm:@tensorflow/tfjs-node@4.22.0",
];

async function setTensorflow(): Promise<BackendInfo> {
  const failures: string[] = [];
  for (const specifier of TFJS_NODE_PACKAGES) {
    try {
      const mod = await import(specifier) as { version?: Record<string, string> };
      await activate("tensorflow");
      const version = mod.version?.["tfjs-node"] ?? specifier.split("@").pop()!;
      return { name: "tensorflow", version, threads: 0, simd: false, detail: specifier };
    } catch (e) {
      failures.push(`${specifier}: ${String((e as Error).message ?? e).split("\n")[0]}`);
    }
  }
  throw new Error(
    "tensorflow backend unavailable: neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node " +
      "loads (their installer downloads libtensorflow from outside the npm registry, so they " +
      `cannot be installed from the registry alone); use --backend wasm or webgpu. (${
        failures.join("; ")
      })`,
  );
}

/** Switch tfjs to the named backend; returns its name and version (for cache keys). */
export async function setBackend(
  name: BackendName,
  opts: BackendOptions = {},
): Promise<{ name: string; version: string }> {
  if (!BACKEND_NAMES.includes(name)) {
    throw new Error(`unknown backend "${name}": expected one of ${BACKEND_NAMES.join(", ")}`);
  }
  switch (name) {
    case "wasm":
      current = await setWasm(opts);
      break;
    case "cpu":
      await activate("cpu");
      current = {
        name: "cpu",
        version: version_cpu,
        threads: 1,
        simd: false,
        detail: "pure JavaScript",
      };
      break;
    case "webgpu":
      current = await setWebgpu(opts);
      break;
    case "tensorflow":
      current = await setTensorflow();
      break;
  }
  silenceCpuGreeting();
  return { name: current.name, version: current.version };
}

/**
 * What a backend's numbers depend on, for cache keys: its name, the tfjs package
 * version and, for wasm, the native BLAS its products run in: library, version, CPU
 * kernel set and thread count (OpenBLAS's Haswell kernels round differently at
 * different thread counts; see the README for what is bit-identical where).
 * Synchronous, and needs no started backend; looking the BLAS up opens it once.
 */
export function backendIdentity(name: string): string {
  switch (name) {
    case "wasm": {
      const { blas } = findBlas();
      return blas
        ? `wasm ${version_wasm} + ${blasLabel(blas)}${
          blas.threads > 0 ? `, ${blas.threads} thread(s)` : ""
        }`
        : `wasm ${version_wasm}`;
    }
    case "cpu":
      return `cpu ${version_cpu}`;
    default:
      return `${name} ${tf.version_core}`;
  }
}
