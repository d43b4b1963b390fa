// Switches the tfjs wasm backend's XNNPACK thread pool on under Deno.
//
// tfjs-backend-wasm 4.22 turns threads off whenever it sees a Node-like platform, and
// its Emscripten loader starts pthread workers from `blob:` URLs, which Deno's
// `worker_threads` refuses. So, for the duration of the backend's start only, this
// module forces the multithread flag, and catches the two scripts the loader builds as
// Blobs (the worker and the module factory it imports) to write them to temporary
// `.cjs` files instead. This is tied to tfjs 4.22.0 internals: every step is checked,
// and any surprise leaves threads off (the caller then runs on 1 thread with a notice).
import * as tf from "@tensorflow/tfjs-core";
import { setThreadsCount } from "@tensorflow/tfjs-backend-wasm";
import os from "node:os";

export interface WasmThreadsResult {
  enabled: boolean;
  /** Why threads are off (or "ok"). */
  reason: string;
}

const FACTORY_PREFIX = "var WasmBackendModuleThreadedSimd = ";
const WORKER_MARKER = "importScripts(e.data.urlOrBlob)";
const WORKER_LOAD = 'if(typeof e.data.urlOrBlob=="string"){importScripts(e.data.urlOrBlob)}';
/** The worker's Node set-up assigns globals that are read-only in a Deno worker. */
const WORKER_GLOBALS = "Object.assign(global,{";
const WORKER_GLOBALS_SAFE =
  "(function(t,s){for(const k in s){try{Object.defineProperty(t,k,{value:s[k],writable:true,configurable:true})}catch(_){}}})(global,{";

/** Free variables of the factory's source that the bundle defined around it. */
const FACTORY_PRELUDE = [
  'var require$$0 = require("fs"), require$$1 = require("path");',
  'var require$$3 = require("perf_hooks"), require$$4 = require("os");',
  "var commonjsGlobal = globalThis;",
].join("\n");

/**
 * Prepare the wasm backend to start threaded; call `restore()` once it has started.
 * Returns null when threads cannot be used here (the reason is in `skipped`).
 */
function prepare(numThreads: number): { restore: () => void } | { skipped: string } {
  if (typeof SharedArrayBuffer === "undefined") return { skipped: "no SharedArrayBuffer" };
  if (!(numThreads > 1)) return { skipped: `${numThreads} logical core(s)` };
  const dir = Deno.makeTempDirSync({ prefix: "tfjs-wasm-threads-" });
  const factoryPath = `${dir}/factory.cjs`;
  const OriginalBlob = globalThis.Blob;
  const originalCreate = URL.createObjectURL;
  const texts = new WeakMap<Blob, string>();

  class RecordingBlob extends OriginalBlob {
    constructor(parts?: BlobPart[], options?: BlobPropertyBag) {
      super(parts, options);
      const text = parts?.every((p) => typeof p === "string") ? parts.join("") : null;
      if (text !== null && text.startsWith(FACTORY_PREFIX)) {
        // The module factory the workers import: written as a file, passed as a path.
        const scriptDir = `var _scriptDir = ${JSON.stringify(factoryPath)};`;
        Deno.writeTextFileSync(factoryPath, `${FACTORY_PRELUDE}\n${scriptDir}\n${text}\n`);
        return new String(factoryPath) as unknown as RecordingBlob;
      }
      if (text !== null) texts.set(this, text);
    }
  }

  URL.createObjectURL = (obj: Blob): string => {
    const text = obj instanceof OriginalBlob ? texts.get(obj) : undefined;
    if (
      text === undefined || !text.includes(WORKER_MARKER) || !text.includes(WORKER_LOAD) ||
      !text.includes(WORKER_GLOBALS)
    ) {
      return originalCreate(obj);
    }
    // The pthread worker: load the factory from its file, whatever the message carries.
    const workerPath = `${dir}/worker.cjs`;
    const patched = text
      .replace(WORKER_LOAD, `if(true){importScripts(${JSON.stringify(factoryPath)})}`)
      .replace(WORKER_GLOBALS, WORKER_GLOBALS_SAFE);
    Deno.writeTextFileSync(workerPath, patched);
    return workerPath;
  };
  globalThis.Blob = RecordingBlob as typeof Blob;
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
  setThreadsCount(numThreads);
  // The C++ side sizes its pool from emscripten_num_logical_cores() / 2 (Node: os.cpus()),
  // assuming two hyper-threads per core; report twice the wanted count while it starts.
  const originalCpus = os.cpus;
  const cpus = originalCpus();
  os.cpus = () => Array.from({ length: 2 * numThreads }, (_, i) => cpus[i % cpus.length]);
  return {
    restore: () => {
      globalThis.Blob = OriginalBlob;
      URL.createObjectURL = originalCreate;
      os.cpus = originalCpus;
    },
  };
}

/**
 * Start the wasm backend (by calling `start`) with threads when possible. On any
 * failure the flag is cleared and `start` runs again single-threaded.
 */
export async function startWasmWithThreads(
  numThreads: number,
  start: () => Promise<void>,
  timeoutMs = 30_000,
): Promise<WasmThreadsResult> {
  const prepared = prepare(numThreads);
  if ("skipped" in prepared) {
    await start();
    return { enabled: false, reason: prepared.skipped };
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      start(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`threaded start took over ${timeoutMs / 1000} s`)),
          timeoutMs,
        );
      }),
    ]);
    return { enabled: true, reason: "ok" };
  } catch (e) {
    tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
    setThreadsCount(1);
    prepared.restore();
    await start();
    return { enabled: false, reason: `threaded start failed: ${(e as Error).message ?? e}` };
  } finally {
    clearTimeout(timer);
    prepared.restore();
  }
}
