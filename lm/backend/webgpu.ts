// The webgpu backend's adapter (which GPU runs, and whether it is a software one) and
// the fixes tfjs-backend-webgpu 4.22 needs to train correctly.
//
// Why training was wrong on webgpu: tfjs's AddN kernel binds every input as its own
// storage buffer, and a WebGPU device allows only `maxStorageBuffersPerShaderStage`
// (8 by default) per shader. The global gradient norm sums one scalar per parameter
// tensor with tf.addN (15 of them for a 2-layer GPT), so that dispatch failed WebGPU
// validation. A failed dispatch invalidates the whole command buffer tfjs batches it
// with, so the norm read as 0 and neighbouring kernels (the embedding's gradient) never
// ran: grad norm 0, then near-zero updates. Nothing was thrown because a validation
// error is only reported to the device's `uncapturederror` event.
//
// The fix re-registers AddN for webgpu to sum at most (limit - 1) tensors per dispatch,
// and every device's validation errors are recorded: reading a tensor's values then
// throws, so no step trains or evaluates on numbers from kernels that did not run.
import * as tf from "@tensorflow/tfjs-core";

/** What `adapter.info` says, plus the limits that size a run. */
export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** The browser-style fallback flag (a CPU implementation of WebGPU). */
  fallback: boolean;
  /** A software rasterizer (llvmpipe/lavapipe, SwiftShader, WARP) or a fallback adapter. */
  software: boolean;
  /** Largest storage buffer one shader may bind (the logits tensor must fit). */
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxStorageBuffersPerShaderStage: number;
}

interface GpuAdapterLike {
  info?: Record<string, unknown>;
  isFallbackAdapter?: boolean;
  limits?: Record<string, number>;
}

const SOFTWARE_NAMES =
  /llvmpipe|lavapipe|swiftshader|softpipe|software|microsoft basic render|warp/i;

/** The summary of an adapter as Deno's navigator.gpu reports it. */
export function summarizeAdapter(adapter: GpuAdapterLike): AdapterSummary {
  const info = adapter.info ?? {};
  const text = (key: string) => (typeof info[key] === "string" ? info[key] as string : "");
  const fallback = info.isFallbackAdapter === true || adapter.isFallbackAdapter === true;
  const summary = {
    vendor: text("vendor"),
    architecture: text("architecture"),
    device: text("device"),
    description: text("description"),
    fallback,
    maxStorageBufferBindingSize: adapter.limits?.maxStorageBufferBindingSize ?? 0,
    maxBufferSize: adapter.limits?.maxBufferSize ?? 0,
    maxStorageBuffersPerShaderStage: adapter.limits?.maxStorageBuffersPerShaderStage ?? 0,
  };
  const names = [summary.vendor, summary.architecture, summary.description].join(" ");
  return { ...summary, software: fallback || SOFTWARE_NAMES.test(names) };
}

/** One line naming the adapter: "llvmpipe (LLVM 15.0.6, 256 bits) (vendor 65541, software)". */
export function describeAdapter(a: AdapterSummary): string {
  const name = a.description || [a.vendor, a.architecture, a.device].filter((s) => s).join(" ") ||
    "unnamed adapter";
  const extra = [
    a.vendor && a.description ? `vendor ${a.vendor}` : "",
    a.architecture && a.description ? `architecture ${a.architecture}` : "",
    a.software ? "software" : "",
  ].filter((s) => s);
  return extra.length ? `${name} (${extra.join(", ")})` : name;
}

/** The one-line warning a software adapter gets under --backend webgpu (null for a GPU). */
export function softwareAdapterWarning(a: AdapterSummary): string | null {
  if (!a.software) return null;
  return `warning: webgpu runs on a software adapter (${describeAdapter(a)}): ` +
    "fine for checks, far slower than wasm for work; install the GPU's Vulkan driver";
}

/**
 * Vulkan's window-system layer prints "XDG_RUNTIME_DIR is invalid or not set" on every
 * device when the variable is missing (a server, a container): point it at a private
 * temporary folder then. Compute does not use it.
 */
function quietVulkanLoader(): void {
  if (Deno.build.os !== "linux" || Deno.env.get("XDG_RUNTIME_DIR")) return;
  try {
    Deno.env.set("XDG_RUNTIME_DIR", Deno.makeTempDirSync({ prefix: "lawa-xdg-" }));
  } catch {
    // no permission to set it: the message stays, nothing else changes
  }
}

/**
 * The logits of a micro-batch (sequences × seq_len × vocab floats) are one tensor, so
 * one storage-buffer binding; a larger one does not fail, it computes zeros. Throws a
 * one-line error naming the micro-batch that fits instead.
 */
export function checkLogitsFit(
  adapter: AdapterSummary,
  sequences: number,
  seqLen: number,
  vocab: number,
): void {
  const limit = adapter.maxStorageBufferBindingSize;
  const bytes = sequences * seqLen * vocab * 4;
  if (limit <= 0 || bytes <= limit) return;
  const fits = Math.floor(limit / (seqLen * vocab * 4));
  const mb = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  throw new Error(
    `webgpu: the logits of one micro-batch (${sequences} × ${seqLen} tokens × ${vocab} ids × 4 bytes ` +
      `= ${mb(bytes)}) exceed the largest storage buffer of ${describeAdapter(adapter)} (${
        mb(limit)
      }): ` +
      (fits >= 1
        ? `use micro_batch ${fits} or less`
        : `even one sequence does not fit: use a shorter seq_len (at most ${
          Math.floor(limit / (vocab * 4))
        } tokens)`),
  );
}

/** Finds the adapter WebGPU would use, or says in one line why there is none. */
export async function requestWebgpuAdapter(): Promise<AdapterSummary> {
  quietVulkanLoader();
  const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  if (!gpu) {
    throw new Error("webgpu backend: this Deno has no navigator.gpu (WebGPU is not available)");
  }
  const adapter = await gpu.requestAdapter() as GpuAdapterLike | null;
  if (!adapter) {
    throw new Error(
      "webgpu backend: no GPU adapter found (navigator.gpu.requestAdapter() returned null); " +
        "install a Vulkan driver (Debian: mesa-vulkan-drivers, or the GPU vendor's) or use --backend wasm",
    );
  }
  return summarizeAdapter(adapter);
}

// ---------------------------------------------------------------------------------------
// Kernel fixes

type KernelArgs = {
  inputs: tf.NamedTensorInfoMap;
  backend: tf.KernelBackend;
  attrs?: tf.NamedAttrMap;
};
type KernelFn = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

interface WebgpuBackendLike {
  device: {
    limits: { maxStorageBuffersPerShaderStage: number };
    addEventListener?(type: string, listener: (e: unknown) => void): void;
  };
  disposeData(dataId: object): void;
  read(dataId: object): Promise<unknown>;
}

let addNInstalled = false;

/** Whether AddN was replaced by the chunked version on webgpu. */
export function webgpuAddNFixed(): boolean {
  return addNInstalled;
}

/**
 * Replace webgpu's AddN by one that sums at most (maxStorageBuffersPerShaderStage - 1)
 * tensors per dispatch (one binding is the output), then sums the partial sums the same
 * way. Idempotent; call after the webgpu backend module is imported.
 */
export function installWebgpuKernelFixes(): void {
  if (addNInstalled) return;
  const original = tf.getKernel("AddN", "webgpu");
  if (!original) throw new Error("webgpu backend: tfjs registers no AddN kernel for webgpu");
  const sumAll = original.kernelFunc as unknown as KernelFn;
  const chunked: KernelFn = (args) => {
    const tensors = args.inputs as unknown as tf.TensorInfo[];
    const backend = args.backend as unknown as WebgpuBackendLike;
    const perDispatch = Math.max(2, backend.device.limits.maxStorageBuffersPerShaderStage - 1);
    if (tensors.length <= perDispatch) return sumAll(args);
    let level = tensors;
    const temporaries: tf.TensorInfo[] = [];
    while (level.length > perDispatch) {
      const next: tf.TensorInfo[] = [];
      for (let i = 0; i < level.length; i += perDispatch) {
        const part = level.slice(i, i + perDispatch);
        if (part.length === 1) {
          next.push(part[0]);
          continue;
        }
        const sum = sumAll({ ...args, inputs: part as unknown as tf.NamedTensorInfoMap });
        temporaries.push(sum as tf.TensorInfo);
        next.push(sum as tf.TensorInfo);
      }
      level = next;
    }
    const out = sumAll({ ...args, inputs: level as unknown as tf.NamedTensorInfoMap });
    for (const t of temporaries) backend.disposeData(t.dataId);
    return out;
  };
  tf.unregisterKernel("AddN", "webgpu");
  tf.registerKernel({ ...original, kernelFunc: chunked as unknown as tf.KernelFunc });
  addNInstalled = true;
}

// ---------------------------------------------------------------------------------------
// Validation errors, which WebGPU reports only to an event

const pendingErrors: string[] = [];
const watchedDevices = new WeakSet<object>();

/**
 * Record the active webgpu backend's uncaptured device errors, and make every read of
 * a tensor's values (`await t.data()`) throw when one is pending: the numbers it would
 * return come from kernels that did not run. Idempotent.
 */
export function watchWebgpuErrors(): void {
  const backend = tf.findBackend("webgpu") as unknown as WebgpuBackendLike | null;
  const device = backend?.device;
  if (!backend || !device?.addEventListener || watchedDevices.has(device)) return;
  watchedDevices.add(device);
  device.addEventListener("uncapturederror", (event: unknown) => {
    const error = (event as { error?: { message?: string } }).error;
    pendingErrors.push(String(error?.message ?? error ?? "unknown WebGPU error").split("\n")[0]);
  });
  const read = backend.read.bind(backend);
  backend.read = async (dataId: object) => {
    const values = await read(dataId);
    const error = takeWebgpuError();
    if (error) throw new Error(`webgpu: a kernel failed, so its results are wrong: ${error}`);
    return values;
  };
}

/**
 * The first WebGPU error since the last call, or null; clears the list. A kernel that
 * failed validation leaves wrong numbers behind, so a caller should stop on one.
 */
export function takeWebgpuError(): string | null {
  const first = pendingErrors[0] ?? null;
  const count = pendingErrors.length;
  pendingErrors.length = 0;
  if (first === null) return null;
  return count > 1 ? `${first} (and ${count - 1} more)` : first;
}
