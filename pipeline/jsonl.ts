// Append-only JSON-lines logs that a crash may cut short (the train log, the failures
// of runs): read back, a missing file is an empty log and a line that does not parse
// (one cut mid-write) is skipped, so whatever was written whole survives.

/** The values of a JSON-lines log, in order; [] when the file does not exist. */
export async function readJsonLog(path: string): Promise<unknown[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const out: unknown[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      // a line cut short by a crash
    }
  }
  return out;
}
