// A native BLAS (OpenBLAS, or Apple's Accelerate) opened through Deno's FFI, for the
// matrix products of the wasm backend (lm/backend/wasm_blas.ts).
//
// Why: tfjs-wasm's XNNPACK matmul runs at 5-25 GFLOP/s on one thread, and its thread
// pool spin-waits and is fragile to start under Deno. A system BLAS runs the same
// products 3-8x faster per thread, multi-threaded by its own pool, on Float32Array views
// of the wasm heap (no copies).
//
// Where the library is looked for, first hit wins:
//   1. LAWA_BLAS_LIB: a path (or a name the dynamic loader resolves); "none" (or "off",
//      "0", empty) turns the BLAS off. A path that does not load is a one-line notice,
//      and the backend runs on plain wasm.
//   2. OpenBLAS under its usual Linux / Homebrew names, then macOS Accelerate.
// Threads: LAWA_THREADS, else every logical core (OpenBLAS only; Accelerate sizes its
// own pool).

/** One opened BLAS library. */
export interface Blas {
  /** The file or name that was opened. */
  path: string;
  /** "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64", "Accelerate", ... */
  config: string;
  /** The CPU kernel set the BLAS chose (OpenBLAS: "Haswell", "SkylakeX", ...), or "". */
  corename: string;
  /** Threads the BLAS runs large products on (small ones run on one: see sgemm). */
  threads: number;
  /**
   * C (M, N) = alpha op(A) op(B) + beta C, row-major; a, b, c are views of float32
   * memory. Products under SMALL_PRODUCT multiply-adds run on one thread: waking the
   * pool costs more than it saves there (attention's per-head products).
   */
  sgemm(
    transA: boolean,
    transB: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number,
  ): void;
  /** Change the thread count (OpenBLAS); returns the count in effect. */
  setThreads(n: number): number;
}

/** Where the search ended: the library, or why there is none (one line). */
export type BlasLookup = { blas: Blas; reason?: undefined } | { blas: null; reason: string };

const CBLAS_ROW_MAJOR = 101;
const CBLAS_NO_TRANS = 111;
const CBLAS_TRANS = 112;

/** M·N·K below which a product runs on one thread. */
export const SMALL_PRODUCT = 1 << 22;

const ACCELERATE = "/System/Library/Frameworks/Accelerate.framework/Accelerate";

/** OpenBLAS file names and paths, in the order they are tried. */
export const BLAS_CANDIDATES: readonly string[] = [
  "libopenblas.so.0", // the dynamic loader's own search (ldconfig, LD_LIBRARY_PATH)
  "/usr/lib/x86_64-linux-gnu/libopenblas.so.0", // Debian / Ubuntu (update-alternatives)
  "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib64/libopenblas.so.0", // Fedora / RHEL
  "/usr/lib64/libopenblasp.so.0",
  "/usr/lib/libopenblas.so.0", // Arch, Alpine
  "/usr/local/lib/libopenblas.so.0",
  "libopenblas.so",
  "/opt/homebrew/opt/openblas/lib/libopenblas.dylib", // Homebrew, Apple silicon / Intel
  "/usr/local/opt/openblas/lib/libopenblas.dylib",
  ACCELERATE,
];

const SYMBOLS = {
  cblas_sgemm: {
    parameters: [
      "i32", // order
      "i32", // transA
      "i32", // transB
      "i32", // M
      "i32", // N
      "i32", // K
      "f32", // alpha
      "buffer", // A
      "i32", // lda
      "buffer", // B
      "i32", // ldb
      "f32", // beta
      "buffer", // C
      "i32", // ldc
    ],
    result: "void",
  },
  openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
  openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
  openblas_get_config: { parameters: [], result: "pointer", optional: true },
  openblas_get_corename: { parameters: [], result: "pointer", optional: true },
} as const;

function cString(p: Deno.PointerValue): string {
  return p === null ? "" : new Deno.UnsafePointerView(p).getCString();
}

/** The thread count asked for by LAWA_THREADS, else every logical core. */
export function requestedThreads(): number {
  const raw = Deno.env.get("LAWA_THREADS");
  if (raw !== undefined && raw.trim() !== "") {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 1) {
      throw new Error(`LAWA_THREADS must be a positive integer, got "${raw}"`);
    }
    return n;
  }
  return Math.max(1, navigator.hardwareConcurrency || 1);
}

function open(path: string, threads: number): Blas {
  const lib = Deno.dlopen(path, SYMBOLS);
  const s = lib.symbols;
  const openblas = s.openblas_set_num_threads !== null;
  const config = openblas && s.openblas_get_config
    ? cString(s.openblas_get_config()).trim()
    : path === ACCELERATE
    ? "Accelerate"
    : path.split("/").pop()!;
  const corename = s.openblas_get_corename ? cString(s.openblas_get_corename()).trim() : "";
  let inEffect = 0;
  const setThreads = (n: number): number => {
    if (!s.openblas_set_num_threads) return 0;
    s.openblas_set_num_threads(n);
    inEffect = s.openblas_get_num_threads ? s.openblas_get_num_threads() : n;
    return inEffect;
  };
  const blas: Blas = {
    path,
    config,
    corename,
    threads: 0,
    sgemm(transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc) {
      const want = M * N * K < SMALL_PRODUCT ? 1 : blas.threads;
      if (want !== inEffect && blas.threads > 1) setThreads(want);
      s.cblas_sgemm(
        CBLAS_ROW_MAJOR,
        transA ? CBLAS_TRANS : CBLAS_NO_TRANS,
        transB ? CBLAS_TRANS : CBLAS_NO_TRANS,
        M,
        N,
        K,
        alpha,
        a,
        lda,
        b,
        ldb,
        beta,
        c,
        ldc,
      );
    },
    setThreads(n: number): number {
      blas.threads = setThreads(n) || blas.threads;
      return blas.threads;
    },
  };
  blas.threads = setThreads(threads) || 0;
  return blas;
}

/** How LAWA_BLAS_LIB reads: null = search, "" = off, else the path to open. */
function explicitPath(): string | null {
  const raw = Deno.env.get("LAWA_BLAS_LIB");
  if (raw === undefined) return null;
  const v = raw.trim();
  return ["", "none", "off", "0", "false"].includes(v.toLowerCase()) ? "" : v;
}

let cached: { key: string; lookup: BlasLookup } | null = null;

/**
 * The BLAS to use, opened once per process (and again only if LAWA_BLAS_LIB changes).
 * Never throws: no library is a reason, for a one-line notice.
 */
export function findBlas(): BlasLookup {
  const explicit = explicitPath();
  const key = explicit ?? "(search)";
  if (cached && cached.key === key) return cached.lookup;
  cached = { key, lookup: lookup(explicit) };
  return cached.lookup;
}

function lookup(explicit: string | null): BlasLookup {
  if (explicit === "") return { blas: null, reason: "turned off by LAWA_BLAS_LIB" };
  let threads: number;
  try {
    threads = requestedThreads();
  } catch (e) {
    return { blas: null, reason: (e as Error).message };
  }
  // OpenBLAS reads this when it loads: worker threads sleep almost at once after a
  // product instead of spinning ~0.1 s on a core that the rest of the step (or another
  // process) needs. Only set when the user has not chosen.
  if (Deno.env.get("OPENBLAS_THREAD_TIMEOUT") === undefined) {
    try {
      Deno.env.set("OPENBLAS_THREAD_TIMEOUT", "4");
    } catch { /* no env permission: keep OpenBLAS's default */ }
  }
  const candidates = explicit !== null ? [explicit] : BLAS_CANDIDATES;
  let lastError = "";
  for (const path of candidates) {
    try {
      return { blas: open(path, threads) };
    } catch (e) {
      lastError = String((e as Error).message ?? e).split("\n")[0];
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
        return { blas: null, reason: `no FFI permission (--allow-ffi) to open a BLAS` };
      }
    }
  }
  return explicit !== null
    ? { blas: null, reason: `LAWA_BLAS_LIB=${explicit} does not load (${lastError})` }
    : {
      blas: null,
      reason: "no OpenBLAS or Accelerate found (Debian: apt-get install libopenblas0-pthread; " +
        "or set LAWA_BLAS_LIB to a library with cblas_sgemm)",
    };
}

/** "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64" -> a short label. */
export function blasLabel(blas: Blas): string {
  const parts = [blas.config];
  if (blas.corename && !blas.config.includes(blas.corename)) parts.push(`core ${blas.corename}`);
  return parts.join(", ");
}
