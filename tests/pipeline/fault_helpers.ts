// What the fault-injection tests share: the command line run in-process with its output
// captured, the toy command line as a real process, and faults injected at the write
// layer (a read-only folder, a full disk) by wrapping Deno's file functions.
import { main } from "../../pipeline/cli.ts";
import type { Reporter } from "../../pipeline/progress.ts";
import type { StepKind } from "../../pipeline/step.ts";
import { TOY_KINDS } from "../fixtures/toy/registry.ts";
import { TOY_DIR } from "./toy_helpers.ts";

export interface CliResult {
  code: number;
  out: string;
  /** What went to stderr: error lines and the reporter's lines (warnings, events). */
  err: string;
}

/** `main(args)` with the toy kinds; stdout, stderr and reporter lines captured. */
export async function cli(args: string[], kinds: StepKind[] = TOY_KINDS): Promise<CliResult> {
  let out = "";
  let err = "";
  const reporter: Reporter = {
    event: (label, status, detail) => (err += `${status} ${label}${detail ? `: ${detail}` : ""}\n`),
    line: (text) => (err += text + "\n"),
    progressFor: () => ({ start() {}, update() {}, log() {} }),
    close() {},
  };
  const consoleError = console.error;
  console.error = (...parts: unknown[]) => (err += parts.map(String).join(" ") + "\n");
  try {
    const code = await main(args, {
      kinds,
      reporter,
      stdout: (t) => (out += t + "\n"),
      backendIdentity: () => "test", // as runToy: keys agree with its runs
    });
    return { code, out, err };
  } finally {
    console.error = consoleError;
  }
}

/** The toy command line as its own process (for kills and file locks). */
export function toyProcess(args: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", `${TOY_DIR}main.ts`, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
}

/** An error as Deno raises it for a full disk (its message names no path). */
export function noSpaceError(): Error {
  return Object.assign(new Error("No space left on device (os error 28)"), { code: "ENOSPC" });
}

/** An error as Deno raises it for a read-only folder. */
export function permissionError(path: string): Error {
  return new Deno.errors.PermissionDenied(`Permission denied (os error 13): open '${path}'`);
}

type AnyFn = (...args: never[]) => unknown;
const WRITERS = [
  "mkdir",
  "mkdirSync",
  "writeFile",
  "writeFileSync",
  "writeTextFile",
  "writeTextFileSync",
  "copyFile",
  "rename",
  "remove",
  "makeTempDir",
] as const;

/**
 * Run `fn` while writes to paths that `fails(path)` picks throw `error(path)`: file
 * creation, copies (by destination), renames (either end), removals, folder creation,
 * and opens for writing. Everything else works as usual.
 */
export async function withFailingWrites<T>(
  fails: (path: string) => boolean,
  error: (path: string) => Error,
  fn: () => Promise<T>,
): Promise<T> {
  const deno = Deno as unknown as Record<string, AnyFn>;
  const saved = new Map<string, AnyFn>();
  const check = (...paths: unknown[]) => {
    for (const p of paths) {
      const path = p instanceof URL ? p.pathname : String(p);
      if (typeof p !== "object" || p instanceof URL) {
        if (fails(path)) throw error(path);
      }
    }
  };
  for (const name of WRITERS) {
    const original = deno[name];
    saved.set(name, original);
    deno[name] = ((...args: unknown[]) => {
      if (name === "makeTempDir") {
        const dir = (args[0] as { dir?: string } | undefined)?.dir;
        if (dir !== undefined) check(dir);
      } else if (name === "copyFile") check(args[1]);
      else if (name === "rename") check(args[0], args[1]);
      else check(args[0]);
      return (original as (...a: unknown[]) => unknown).apply(Deno, args);
    }) as AnyFn;
  }
  const open = Deno.open;
  deno.open = ((path: string | URL, options?: Deno.OpenOptions) => {
    if (options?.write || options?.append || options?.create || options?.truncate) check(path);
    return open.call(Deno, path, options);
  }) as AnyFn;
  try {
    return await fn();
  } finally {
    for (const [name, original] of saved) deno[name] = original;
    deno.open = open as AnyFn;
  }
}

/** A small generator of reproducible pseudo-random numbers in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
