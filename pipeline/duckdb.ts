// One DuckDB instance per process, shared by everything that talks to DuckDB.
//
// Creating and closing many DuckDB instances in one process is what the DuckDB Node
// bindings advise against, and here it crashed processes (SIGSEGV) now and then. So the
// process keeps a single in-memory instance and one connection for its whole life, and
// a database file is ATTACHed for a piece of work and DETACHed after it, which also
// releases DuckDB's file lock so that other processes can take their turn.
import { DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";

let shared: Promise<DuckDBConnection> | null = null;
let serial: Promise<unknown> = Promise.resolve();
let counter = 0;

/** The process's one connection (to an in-memory instance that is never closed). */
export function sharedConnection(): Promise<DuckDBConnection> {
  shared ??= DuckDBInstance.create(":memory:").then((instance) => instance.connect());
  return shared;
}

function sqlString(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

/**
 * Run `work` with `path` (a database file, or ":memory:" for a fresh empty one)
 * attached and selected as the default database; detached afterwards, unless `keep`
 * is set, in which case the returned alias stays attached until `detach(alias)`.
 * Calls are serialized: the shared connection works on one attached database at a time.
 */
export function withAttached<T>(
  path: string,
  work: (conn: DuckDBConnection, alias: string) => Promise<T>,
  opts: { readOnly?: boolean } = {},
): Promise<T> {
  const run = serial.then(async () => {
    const conn = await sharedConnection();
    const alias = `db${++counter}`;
    await conn.run(
      `ATTACH ${sqlString(path)} AS ${alias}${opts.readOnly ? " (READ_ONLY)" : ""}`,
    );
    try {
      await conn.run(`USE ${alias}`);
      return await work(conn, alias);
    } finally {
      // Detach even after a failed piece of work (a database DuckDB invalidated, e.g. when
      // a checkpoint hit a full disk, still detaches), or the file stays attached.
      await conn.run("USE memory").catch(() => {});
      await conn.run(`DETACH ${alias}`).catch(() => {});
    }
  });
  serial = run.catch(() => {});
  return run;
}
