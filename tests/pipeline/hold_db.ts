// A DuckDB client that holds a database file open, as a user's `duckdb` shell would:
// `deno run -A hold_db.ts <file> <read_only|read_write>` opens it, prints "holding" and
// keeps it open until its stdin closes. The fault-injection tests run it beside a run.
import { DuckDBInstance } from "@duckdb/node-api";

const [path, mode] = Deno.args;
const instance = await DuckDBInstance.create(path, {
  access_mode: mode === "read_only" ? "READ_ONLY" : "READ_WRITE",
});
const conn = await instance.connect();
const tables = await conn.runAndReadAll("SELECT count(*)::INTEGER AS n FROM duckdb_tables()");
console.log(`holding ${path} (${tables.getRowObjectsJson()[0].n} tables)`);
for await (const _ of Deno.stdin.readable) {
  // wait for the test to close stdin
}
conn.closeSync();
instance.closeSync();
