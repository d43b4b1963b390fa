// The results store, `<artifacts>/results.duckdb`: a derived view of the cache. Every
// row comes from a cache entry (its `_rows/<table>.jsonl` and, for `runs`, its manifest)
// or from the log of failed executions (`cache/.failures.jsonl`), so the file can be
// deleted or found damaged and is rebuilt: from every entry at once when the step
// kinds are known (the command line passes them), else as runs reach the entries.
//
// Readers never block a run: work is done on a private copy of the file
// (`.results-<uuid>.duckdb` beside it), which is then renamed over `results.duckdb`
// (copy, attach, write, detach, fsync, rename). A DuckDB client holding the file open
// keeps reading the snapshot it opened; nothing waits for it. Writers of this project
// take turns under a global file lock (`<artifacts>/.results.lock`); work that piles up
// while waiting is done in one copy (a batch). A write answers once it is done in the
// copy; `flush()` waits until the copy has replaced the file (a run ends with it).
//
// Damage is detected: after each swap the file's size, mtime and inode are stamped in
// `.results.stamp.json`; a file that does not match its stamp is scanned in full (every
// block checksummed) and, when unreadable or of an older layout, rebuilt from the cache.
import type { DuckDBConnection } from "@duckdb/node-api";
import { withAttached } from "./duckdb.ts";
import type { TableSchema } from "./step.ts";
import { withFileLock } from "./lock.ts";
import { MANIFEST } from "./store.ts";
import {
  insertRun,
  LOADED_DDL,
  loadEntry,
  META_DDL,
  quoteIdent,
  readFailures,
  type RunRecord,
  RUNS_DDL,
} from "./results_rows.ts";
import { diskProblem, onDisk, UserError } from "./errors.ts";

export { quoteIdent, readRowFiles, type RunRecord } from "./results_rows.ts";

/** Bumped when the engine's own tables change shape: an older file is rebuilt. */
const LAYOUT_VERSION = 2;

/** How long an open database waits for more work, and the most it stays open. */
const LINGER_MS = 50;
const MAX_HOLD_MS = 1000;

type Job = {
  work: (conn: DuckDBConnection) => Promise<unknown>;
  /** Whether the job changes the database (a batch of reads only is not swapped in). */
  writes: boolean;
  done: PromiseWithResolvers<unknown>;
};

/** What identifies one version of the file on disk. */
interface Stamp {
  size: number;
  mtime_ms: number;
  ino: number | null;
}

async function stampOf(path: string): Promise<Stamp> {
  const info = await Deno.stat(path);
  return { size: info.size, mtime_ms: info.mtime?.getTime() ?? 0, ino: info.ino };
}

function sameStamp(a: Stamp, b: unknown): boolean {
  const o = b as Partial<Stamp> | null;
  return o !== null && typeof o === "object" && o.size === a.size &&
    o.mtime_ms === a.mtime_ms && o.ino === a.ino;
}

/** DuckDB's words for a disk that refuses writes (not a damaged file). */
const DISK_TROUBLE = /no space left|permission denied|read-only file system|quota exceeded/i;

function errorText(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

export class ResultsDb {
  readonly root: string;
  readonly path: string;
  readonly lockPath: string;
  readonly stampPath: string;
  /** The log of failed executions, kept with the cache so a rebuilt database has them. */
  readonly failuresPath: string;
  /** Where warnings go (a damaged file being rebuilt); the runner points it at its reporter. */
  onNotice: (message: string) => void = (m) => console.error(`warning: ${m}`);
  #queue: Job[] = [];
  #flushing: Promise<void> | null = null;
  #failure: Error | null = null;

  /** Results tables of each step kind, to rebuild a new database from every entry. */
  readonly tablesOf?: (stepKind: string) => Record<string, TableSchema> | undefined;

  /**
   * `kinds` (the step kinds' tables, by name) lets a new or rebuilt database be filled
   * from every cache entry at once; without it, entries are loaded as runs reach them.
   */
  constructor(
    artifactsRoot: string,
    opts: { kinds?: readonly { name: string; tables?: Record<string, TableSchema> }[] } = {},
  ) {
    if (opts.kinds) {
      const byName = new Map(opts.kinds.map((k) => [k.name, k.tables ?? {}]));
      this.tablesOf = (name) => byName.get(name);
    }
    this.root = artifactsRoot;
    this.path = `${artifactsRoot}/results.duckdb`;
    this.lockPath = `${artifactsRoot}/.results.lock`;
    this.stampPath = `${artifactsRoot}/.results.stamp.json`;
    this.failuresPath = `${artifactsRoot}/cache/.failures.jsonl`;
  }

  /** Run `work` with a connection to (a private copy of) the database, under the global lock. */
  withConnection<T>(
    work: (conn: DuckDBConnection) => Promise<T>,
    opts: { writes?: boolean } = {},
  ): Promise<T> {
    const done = Promise.withResolvers<unknown>();
    this.#queue.push({ work, writes: opts.writes ?? true, done });
    if (!this.#flushing) this.#flushing = this.#flush();
    return done.promise as Promise<T>;
  }

  async #flush(): Promise<void> {
    // Let jobs submitted in the same tick join the batch.
    await Promise.resolve();
    while (this.#queue.length) {
      const first = this.#queue.splice(0);
      const all = [...first];
      try {
        await onDisk(this.root, async () => {
          await Deno.mkdir(this.root, { recursive: true });
          await withFileLock(this.lockPath, () => this.#batch(first, all));
        });
      } catch (e) {
        const error = e instanceof UserError ? e : new UserError(
          `${this.path}: ${errorText(e)}`,
        );
        for (const job of all) job.done.reject(error);
        // Writes answered before the copy failed to land are lost: flush() says so.
        if (all.some((job) => job.writes)) this.#failure ??= error;
      }
    }
    this.#flushing = null;
  }

  /** One copy of the database: attach it, run jobs while they keep coming, swap it in. */
  async #batch(first: Job[], all: Job[]): Promise<void> {
    await this.#removeStaleCopies();
    let copy = `${this.root}/.results-${crypto.randomUUID()}.duckdb`;
    const copies = [copy];
    try {
      let damage = await this.#copyCurrent(copy);
      let wrote = false;
      const runBatch = async (conn: DuckDBConnection) => {
        const openedMs = Date.now();
        let batch = first;
        // Keep the copy attached while more work arrives soon (steps finishing one
        // after another), but never hold the lock long: other processes take turns.
        while (batch.length) {
          for (const job of batch) {
            try {
              const value = await job.work(conn);
              job.done.resolve(value);
              wrote ||= job.writes;
            } catch (e) {
              await conn.run("ROLLBACK").catch(() => {});
              job.done.reject(e);
            }
          }
          batch = [];
          // Only writes wait for company: a batch of reads is over at once.
          const linger = wrote ? LINGER_MS : 0;
          const deadline = Math.min(Date.now() + linger, openedMs + MAX_HOLD_MS);
          while (!this.#queue.length && Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 5));
          }
          if (Date.now() < openedMs + MAX_HOLD_MS) {
            batch = this.#queue.splice(0);
            all.push(...batch);
          }
        }
      };
      if (damage === null) {
        // Only a file that cannot be attached or read is damage; an error in the work
        // itself (a full disk while checkpointing) is the batch's error.
        let opened = false;
        try {
          await withAttached(copy, async (conn) => {
            damage = await this.#check(conn);
            opened = true;
            if (damage === null) {
              wrote = await this.#prepare(conn, false);
              await runBatch(conn);
              // Everything into the file itself (no .wal beside it) before it is swapped in.
              await conn.run("CHECKPOINT");
            }
          });
        } catch (e) {
          if (opened || DISK_TROUBLE.test(errorText(e)) || diskProblem(e)) throw e;
          damage = `cannot be opened (${errorText(e)})`;
        }
      }
      if (damage !== null) {
        // Rebuilt from scratch: the cache's entries are reloaded as runs reach them.
        this.onNotice(`${this.path} ${damage}: rebuilding it from the cache`);
        await Deno.remove(copy).catch(() => {});
        copy = `${this.root}/.results-${crypto.randomUUID()}.duckdb`;
        copies.push(copy);
        await withAttached(copy, async (conn) => {
          await this.#prepare(conn, true);
          await runBatch(conn);
          await conn.run("CHECKPOINT");
        });
        wrote = true;
      }
      if (wrote) await this.#swapIn(copy);
    } finally {
      for (const c of copies) {
        for (const p of [c, `${c}.wal`]) await Deno.remove(p).catch(() => {});
      }
    }
  }

  /** Copies left by a process killed mid-batch (only the lock holder has a live one). */
  async #removeStaleCopies(): Promise<void> {
    for await (const e of Deno.readDir(this.root)) {
      if (/^\.results-[0-9a-f-]+\.duckdb(\.wal)?$/.test(e.name)) {
        await Deno.remove(`${this.root}/${e.name}`).catch(() => {});
      }
    }
  }

  /**
   * Copy results.duckdb to `copy`; returns why the file cannot be used (a reason) or
   * null. A missing file is not damage: the copy starts empty.
   */
  async #copyCurrent(copy: string): Promise<string | null> {
    let stamp: Stamp;
    this.#trusted = false;
    try {
      stamp = await stampOf(this.path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
    await Deno.copyFile(this.path, copy);
    this.#trusted = await this.#readStamp().then((s) => sameStamp(stamp, s));
    return null;
  }

  #trusted = false;

  async #readStamp(): Promise<unknown> {
    try {
      return JSON.parse(await Deno.readTextFile(this.stampPath));
    } catch {
      return null;
    }
  }

  /** Why the attached copy cannot be used, or null: layout version, then (untrusted) a full scan. */
  async #check(conn: DuckDBConnection): Promise<string | null> {
    const tables = (await conn.runAndReadAll(
      `SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database()`,
    )).getRowObjectsJson().map((r) => String(r.table_name));
    if (tables.length === 0) return null; // a new, empty database
    if (!tables.includes("results_layout")) return "has an older layout";
    const version = (await conn.runAndReadAll("SELECT max(version) AS v FROM results_layout"))
      .getRowObjectsJson()[0]?.v;
    if (Number(version) !== LAYOUT_VERSION) return "has an older layout";
    if (this.#trusted) return null;
    // Not the file this project last wrote (or not stamped yet): read every block, so
    // that DuckDB's block checksums catch a truncated or altered file.
    try {
      for (const t of tables) {
        await conn.runAndReadAll(`SELECT count(*), sum(hash(x)) FROM ${quoteIdent(t)} AS x`);
      }
    } catch (e) {
      return `is damaged (${errorText(e)})`;
    }
    return null;
  }

  /**
   * The engine's own tables; a new database is also filled (logged failures, every
   * entry when the kinds are known). Returns whether it was new (then it must be
   * swapped in, even by a batch of reads).
   */
  async #prepare(conn: DuckDBConnection, fresh: boolean): Promise<boolean> {
    await conn.run(META_DDL);
    const have = (await conn.runAndReadAll("SELECT count(*)::INTEGER AS n FROM results_layout"))
      .getRowObjectsJson()[0].n;
    if (Number(have) === 0) {
      await conn.run(`INSERT INTO results_layout VALUES (${LAYOUT_VERSION})`);
      fresh = true;
    }
    await conn.run(RUNS_DDL);
    await conn.run(LOADED_DDL);
    if (fresh) {
      for (const run of await readFailures(this.failuresPath)) await insertRun(conn, run);
      if (this.tablesOf) await this.#loadAll(conn, this.tablesOf);
    }
    return fresh;
  }

  /**
   * Every committed entry into a new database (a deleted, damaged or outdated file is
   * rebuilt whole, not only as runs reach its entries). Entries whose manifest cannot be
   * read are left out: a run rebuilds them.
   */
  async #loadAll(
    conn: DuckDBConnection,
    tablesOf: (stepKind: string) => Record<string, TableSchema> | undefined,
  ): Promise<void> {
    const cache = `${this.root}/cache`;
    let names: string[] = [];
    try {
      for await (const e of Deno.readDir(cache)) {
        if (e.isDirectory && !e.name.startsWith(".")) names.push(e.name);
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    names = names.sort();
    for (const key of names) {
      let step: unknown;
      try {
        step = JSON.parse(await Deno.readTextFile(`${cache}/${key}/${MANIFEST}`)).step;
      } catch {
        continue;
      }
      try {
        await loadEntry(conn, key, tablesOf(String(step)) ?? {}, `${cache}/${key}`);
      } catch {
        await conn.run("ROLLBACK").catch(() => {});
      }
    }
  }

  /** fsync the finished copy and rename it over results.duckdb, then stamp it. */
  async #swapIn(copy: string): Promise<void> {
    try {
      await Deno.stat(`${copy}.wal`);
      throw new Error(`${copy}.wal was left after a checkpoint`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const f = await Deno.open(copy, { read: true, write: true });
    try {
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(copy, this.path);
    const stamp = await stampOf(this.path);
    const tmp = `${this.stampPath}.${crypto.randomUUID().slice(0, 8)}`;
    await Deno.writeTextFile(tmp, JSON.stringify(stamp) + "\n");
    await Deno.rename(tmp, this.stampPath);
  }

  /**
   * Wait until every write made so far is in results.duckdb. A write's promise settles
   * as soon as its work is done in the batch's copy, so that work arriving meanwhile
   * joins the same copy; a run calls this before it ends. Throws when a batch's copy
   * could not replace the file (its writes are then reloaded by the next run).
   */
  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
    const failure = this.#failure;
    this.#failure = null;
    if (failure) throw failure;
  }

  /** Keys of the cache entries whose rows are in the database. */
  loadedKeys(): Promise<Set<string>> {
    return this.withConnection(async (conn) => {
      const reader = await conn.runAndReadAll("SELECT key FROM loaded_instances");
      return new Set(reader.getRowObjectsJson().map((r) => String(r.key)));
    }, { writes: false });
  }

  /**
   * Load a committed entry's rows (replacing any of the same instance) and its `runs`
   * row (from its manifest), in one transaction.
   */
  loadInstance(
    key: string,
    tables: Record<string, TableSchema>,
    entryDir: string,
  ): Promise<void> {
    return this.withConnection((conn) => loadEntry(conn, key, tables, entryDir));
  }

  /** Record an execution that produced no entry (a failure), in the log and the database. */
  async recordRun(run: RunRecord): Promise<void> {
    await onDisk(this.failuresPath, async () => {
      await Deno.mkdir(this.failuresPath.slice(0, this.failuresPath.lastIndexOf("/")), {
        recursive: true,
      });
      const line = JSON.stringify({ ...run, host: Deno.hostname() }) + "\n";
      await Deno.writeTextFile(this.failuresPath, line, { append: true });
    });
    await this.withConnection((conn) => insertRun(conn, run));
  }

  /** Read-only query, rows as plain objects. */
  query(sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
    return this.withConnection(async (conn) => {
      // deno-lint-ignore no-explicit-any
      const reader = await conn.runAndReadAll(sql, params as any);
      return reader.getRowObjectsJson() as Record<string, unknown>[];
    }, { writes: false });
  }

  /** Drop an instance's rows from every table (gc of its entry). */
  forgetInstances(keys: string[]): Promise<void> {
    return this.withConnection(async (conn) => {
      const reader = await conn.runAndReadAll(
        `SELECT DISTINCT table_name FROM information_schema.columns
         WHERE column_name = 'instance_key' AND table_catalog = current_database()`,
      );
      const tables = reader.getRowObjectsJson().map((r) => String(r.table_name));
      for (const key of keys) {
        for (const t of tables) {
          await conn.run(`DELETE FROM ${quoteIdent(t)} WHERE instance_key = $1`, [key]);
        }
        await conn.run("DELETE FROM loaded_instances WHERE key = $1", [key]);
        await conn.run("DELETE FROM runs WHERE key = $1 AND status = 'ok'", [key]);
      }
    });
  }
}
