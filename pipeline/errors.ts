// Turning zod issues into the one-line messages users see: `<file>: <field path>:
// expected X, got Y`. Zod's own messages lack the file and the value that was wrong.
import type { z } from "zod";

/** An error whose message is complete for the user: the CLI prints it without a stack. */
export class UserError extends Error {
  override name = "UserError";
}

/** `steps.train.params.lr[1]` from a path of keys and indices. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out === "" ? String(part) : `.${String(part)}`;
  }
  return out === "" ? "(top level)" : out;
}

/** A short description of a value: `string "fast"`, `number 3`, `array`, `null`. */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return `a list ${truncate(JSON.stringify(value))}`;
  if (typeof value === "object") return "an object";
  if (typeof value === "number" && !Number.isFinite(value)) return `number ${value}`;
  return `${typeof value} ${truncate(JSON.stringify(value))}`;
}

function truncate(text: string): string {
  return text.length > 40 ? text.slice(0, 37) + "..." : text;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const part of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[part as string];
  }
  return v;
}

/** One line per issue (at most 3), each `prefix.path: expected ..., got ...`. */
export function describeIssues(
  issues: readonly z.core.$ZodIssue[],
  data: unknown,
  prefix: readonly PropertyKey[] = [],
): string {
  const lines = issues.slice(0, 3).map((issue) => {
    const where = formatPath([...prefix, ...issue.path]);
    const got = valueAt(data, issue.path);
    switch (issue.code) {
      case "invalid_type":
        return `${where}: expected ${issue.expected}, got ${describeValue(got)}`;
      case "unrecognized_keys":
        return `${where}: unknown field${issue.keys.length > 1 ? "s" : ""} ${
          issue.keys.map((k) => JSON.stringify(k)).join(", ")
        }`;
      case "invalid_value":
        return `${where}: expected one of ${
          issue.values.map((v) => JSON.stringify(v)).join(", ")
        }, got ${describeValue(got)}`;
      default:
        return `${where}: ${issue.message} (got ${describeValue(got)})`;
    }
  });
  if (issues.length > 3) lines.push(`(and ${issues.length - 3} more problems)`);
  return lines.join("; ");
}

/**
 * What is wrong with the disk or folder, when a file-system error is their fault (no
 * space, read-only, no permission); null for other errors. Deno's messages for these
 * often name no path ("No space left on device (os error 28)").
 */
export function diskProblem(e: unknown): string | null {
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (e instanceof Deno.errors.NotCapable) return "not allowed by Deno's --allow-write";
  const code = (e as { code?: unknown } | null)?.code;
  if (code === "ENOSPC") return "no space left on device";
  if (code === "EDQUOT") return "disk quota exceeded";
  if (code === "EROFS") return "read-only file system";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  return null;
}

/** A disk error as a one-line UserError naming `path`; any other error unchanged. */
export function withPath(e: unknown, path: string, doing = "write"): unknown {
  const problem = diskProblem(e);
  return problem ? new UserError(`cannot ${doing} ${path}: ${problem}`) : e;
}

/** Run `fn`; a disk error it throws becomes a UserError naming `path`. */
export async function onDisk<T>(path: string, fn: () => Promise<T>, doing = "write"): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw withPath(e, path, doing);
  }
}

/** A failed step's error for the runs table and the summary: disk errors name the folder. */
export function stepErrorText(e: unknown, outDir: string): string {
  const text = e instanceof Error ? e.message : String(e);
  const problem = diskProblem(e);
  if (problem && !text.includes("'/") && !text.includes(outDir)) {
    return `${text} (writing under ${outDir})`;
  }
  return text;
}

/** Thrown by a step kind's `check` hook: what is wrong with which param. */
export class ParamError extends Error {
  override name = "ParamError";
  constructor(readonly param: string, message: string) {
    super(message);
  }
}

/**
 * Plan-time checks of one instance's params (after the schema): the step kind's own
 * `check` hook, so that `--dry-run` finds what the step would only find once running.
 * Errors name the node, the param and the sweep point.
 */
export function checkInstanceParams(
  check: ((params: never) => void) | undefined,
  params: Record<string, unknown>,
  where: string,
  point: Record<string, unknown> = {},
): void {
  if (!check) return;
  try {
    check(params as never);
  } catch (e) {
    const at = Object.keys(point).length
      ? ` (at ${Object.entries(point).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ")})`
      : "";
    const text = e instanceof Error ? e.message : String(e);
    const param = e instanceof ParamError ? `.${e.param}` : "";
    throw new UserError(`${where}.params${param}: ${text}${at}`);
  }
}

/**
 * A node's params as written, before the schema: a non-finite number (YAML's `.nan`,
 * `.inf`) is an error naming where it is (zod's own message reads "expected number, got
 * number"), and so is an empty sweep list, which would silently drop the node and
 * everything after it.
 */
export function checkParamValues(
  params: Record<string, unknown>,
  axes: readonly string[],
  where: string,
): void {
  const visit = (value: unknown, path: PropertyKey[]): void => {
    if (typeof value === "number" && !Number.isFinite(value)) {
      throw new UserError(
        `${where}.params.${formatPath(path)}: expected a finite number, got ${value}`,
      );
    }
    if (Array.isArray(value)) value.forEach((v, i) => visit(v, [...path, i]));
    else if (value !== null && typeof value === "object") {
      for (const [k, v] of Object.entries(value)) visit(v, [...path, k]);
    }
  };
  visit(params, []);
  for (const axis of axes) {
    if (Array.isArray(params[axis]) && params[axis].length === 0) {
      throw new UserError(
        `${where}.params.${axis}: an empty list; a sweep needs at least one value`,
      );
    }
  }
}
