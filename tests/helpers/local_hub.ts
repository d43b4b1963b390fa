// A Hugging Face hub on 127.0.0.1 serving a folder of revisions (<root>/<revision>/files),
// for tests that must not touch the network. It answers exactly what @huggingface/hub
// asks for:
//   GET  /api/models/{repo}/revision/{rev}   model info: sha (the commit) and siblings
//   POST /api/models/{repo}/paths-info/{rev} size, git oid and LFS sha256 of given paths
//   GET|HEAD /{repo}/resolve/{rev}/{path}    the file; `rev` may be a branch or a commit;
//        Range requests get 206 + Content-Range; headers X-Repo-Commit, ETag, and for
//        LFS files (weights) X-Linked-Etag (sha256) and X-Linked-Size, as the hub sends.
// Faults for tests: `truncateOnce` paths end after half their body (once per path);
// `corrupt` paths serve one flipped byte; `token` makes every request need
// `Authorization: Bearer <token>`. Every request is recorded.
import { createHash } from "node:crypto";

export interface HubRequest {
  method: string;
  path: string;
  range: string | null;
  auth: string | null;
}

export interface LocalHub {
  url: string;
  requests: HubRequest[];
  truncateOnce: Set<string>;
  corrupt: Set<string>;
  /** Large files whose ETag is not their sha256 (as a Xet hash is not): paths-info has it. */
  opaqueEtags: Set<string>;
  /** The fake commit sha of a revision. */
  commitOf(revision: string): string;
  close(): Promise<void>;
}

const LFS = /\.(bin|safetensors)$/;

function sha(algo: "sha1" | "sha256", data: Uint8Array | string): string {
  return createHash(algo).update(data).digest("hex");
}

async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) out.push(...await listFiles(`${dir}/${e.name}`, `${prefix}${e.name}/`));
    else out.push(`${prefix}${e.name}`);
  }
  return out.sort();
}

export async function startLocalHub(
  opts: { root: string; repo: string; token?: string },
): Promise<LocalHub> {
  const revisions = (await listFiles(opts.root)).map((f) => f.split("/")[0]);
  const byCommit = new Map<string, string>();
  const commitOf = (rev: string) => sha("sha1", `${opts.repo}@${rev}`);
  for (const rev of new Set(revisions)) byCommit.set(commitOf(rev), rev);
  const requests: HubRequest[] = [];
  const truncateOnce = new Set<string>();
  const truncated = new Set<string>();
  const corrupt = new Set<string>();
  const opaqueEtags = new Set<string>();

  const notFound = (code: string, message: string) =>
    new Response(JSON.stringify({ error: message }), {
      status: 404,
      headers: { "X-Error-Code": code, "Content-Type": "application/json" },
    });

  const handler = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const path = decodeURIComponent(url.pathname);
    requests.push({
      method: req.method,
      path,
      range: req.headers.get("range"),
      auth: req.headers.get("authorization"),
    });
    if (opts.token && req.headers.get("authorization") !== `Bearer ${opts.token}`) {
      return new Response(JSON.stringify({ error: "Invalid credentials" }), { status: 401 });
    }
    const api = `/api/models/${opts.repo}/revision/`;
    if (path.startsWith(api)) {
      const asked = path.slice(api.length);
      const rev = byCommit.get(asked) ?? asked;
      let files: string[];
      try {
        files = await listFiles(`${opts.root}/${rev}`);
      } catch {
        return notFound("RevisionNotFound", `Invalid rev id: ${asked}`);
      }
      return Response.json({
        _id: sha("sha1", opts.repo).slice(0, 24),
        id: opts.repo,
        sha: commitOf(rev),
        private: false,
        gated: false,
        downloads: 0,
        likes: 0,
        lastModified: "2023-01-01T00:00:00.000Z",
        pipeline_tag: "text-generation",
        siblings: files.map((rfilename) => ({ rfilename })),
      });
    }
    const paths = new RegExp(`^/api/models/${opts.repo}/paths-info/([^/]+)$`).exec(path);
    if (paths && req.method === "POST") {
      const rev = byCommit.get(paths[1]) ?? paths[1];
      const asked = (await req.json()) as { paths: string[] };
      const out = [];
      for (const p of asked.paths) {
        let data: Uint8Array;
        try {
          data = await Deno.readFile(`${opts.root}/${rev}/${p}`);
        } catch {
          continue;
        }
        const oid = createHash("sha1").update(`blob ${data.length}\0`).update(data).digest("hex");
        out.push({
          type: "file",
          path: p,
          size: data.length,
          oid,
          ...(LFS.test(p)
            ? { lfs: { oid: sha("sha256", data), size: data.length, pointerSize: 134 } }
            : {}),
        });
      }
      return Response.json(out);
    }
    const resolve = new RegExp(`^/${opts.repo}/resolve/([^/]+)/(.+)$`).exec(path);
    if (!resolve) return notFound("RepoNotFound", `no route ${path}`);
    const rev = byCommit.get(resolve[1]) ?? resolve[1];
    const file = resolve[2];
    let body: Uint8Array<ArrayBuffer>;
    try {
      body = await Deno.readFile(`${opts.root}/${rev}/${file}`);
    } catch {
      return notFound("EntryNotFound", `${file} not found in ${rev}`);
    }
    const headers = new Headers({
      "X-Repo-Commit": commitOf(rev),
      "Accept-Ranges": "bytes",
      "Content-Type": "application/octet-stream",
    });
    if (LFS.test(file)) {
      const oid = opaqueEtags.has(file) ? sha("sha256", `xet:${file}`) : sha("sha256", body);
      headers.set("ETag", `"${oid}"`);
      headers.set("X-Linked-Etag", `"${oid}"`);
      headers.set("X-Linked-Size", String(body.length));
    } else {
      const gitSha = createHash("sha1").update(`blob ${body.length}\0`).update(body).digest("hex");
      headers.set("ETag", `"${gitSha}"`);
    }
    if (corrupt.has(file)) {
      body = body.slice();
      body[body.length >> 1] ^= 0xff;
    }
    let status = 200;
    let part: Uint8Array<ArrayBuffer> = body;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.get("range") ?? "");
    if (range) {
      const start = Number(range[1]);
      const end = range[2] === "" ? body.length - 1 : Math.min(Number(range[2]), body.length - 1);
      part = body.subarray(start, end + 1);
      status = 206;
      headers.set("Content-Range", `bytes ${start}-${end}/${body.length}`);
    }
    if (req.method === "HEAD") {
      headers.set("Content-Length", String(part.length));
      return new Response(null, { status, headers });
    }
    if (truncateOnce.has(file) && !truncated.has(file) && part.length > 1) {
      // The connection ends after half the body, as when a proxy or a flaky link cuts it.
      truncated.add(file);
      return new Response(part.slice(0, part.length >> 1), { status, headers });
    }
    return new Response(part.slice(), { status, headers });
  };

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler);
  const addr = server.addr as Deno.NetAddr;
  return {
    url: `http://127.0.0.1:${addr.port}`,
    requests,
    truncateOnce,
    corrupt,
    opaqueEtags,
    commitOf,
    close: () => server.shutdown(),
  };
}
