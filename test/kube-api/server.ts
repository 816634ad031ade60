// The Kubernetes API test double: a plain HTTP server on 127.0.0.1 (no TLS, no auth) over an in-memory
// Store, speaking the API server's wire protocol closely enough for kubectl 1.32 and client-go style
// informers: legacy discovery, OpenAPI v3 (for server-side field validation), REST verbs on built-in and
// CRD-defined resources, watch streams. Every error is a Status object. `dropWatches()` ends all watches
// abruptly; `restart()` closes the listening socket and every connection, then listens again on the SAME port
// keeping the store. `writeKubeconfig` writes a kubeconfig pointing kubectl at it.
import { writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { join } from "node:path";
import { apiVersions, group, groupList, resourceList, VERSION_INFO } from "./discovery";
import { ApiError, errorStatus, statusBody } from "./errors";
import { parseJson, type Json, type JsonObject } from "./json";
import { openapiV3 } from "./openapi";
import { NAMESPACE_REF, Registry } from "./registry";
import { present, Resources, type Target, type WriteParams } from "./resources";
import { parseFieldSelector, parseLabelSelector } from "./selectors";
import { Store } from "./store";
import { NodeProxy, type NodeDialer } from "./node-proxy";
import { serveWatch } from "./watch";

export interface KubeApiOptions {
  /** Watch events kept for resuming (default 5000). */
  historyLimit?: number;
  /** Quiet time before a BOOKMARK on watches that allow them (default 1000 ms). */
  bookmarkIntervalMs?: number;
  /** The port to listen on (default: a free one). */
  port?: number;
  /** How this API server reaches <node>:<port> for logs, exec, node proxy and metrics (node-proxy.ts);
   * without one those answer 503, as an API server that cannot reach its nodes does. */
  nodeDialer?: NodeDialer;
  /** Told of every request (benchmarks count writes with it; tests check who may do what). */
  onRequest?: (r: ApiRequest) => void;
}

/** A request as `onRequest` sees it: `token` is the bearer token sent, if any. */
export type ApiRequest = { method: string; path: string; query: URLSearchParams; token: string | undefined };

export interface KubeApi {
  url: string;
  port: number;
  store: Store;
  registry: Registry;
  close(): Promise<void>;
  /** Ends every open watch stream abruptly (no clean chunked end), as an API server crash would. */
  dropWatches(): void;
  /** Ends every open watch stream cleanly, as the API server does when a watch's time is up. */
  endWatches(): void;
  /** Watch streams open right now. */
  openWatches(): number;
  /** Closes the listener and all connections, then listens again on the same port; the store is kept. */
  restart(): Promise<void>;
}

const MAX_BODY = 4 * 1024 * 1024;

function send(res: ServerResponse, code: number, body: JsonObject, warnings: string[] = []): void {
  const headers: Record<string, string | string[]> = {
    "Content-Type": "application/json",
    "Cache-Control": "no-cache, private",
  };
  if (warnings.length > 0) headers["Warning"] = warnings.map((w) => `299 - ${JSON.stringify(w)}`);
  res.writeHead(code, headers);
  res.end(JSON.stringify(body));
}

function notFoundPath(): ApiError {
  return new ApiError(404, "NotFound", "the server could not find the requested resource");
}

async function readBody(req: IncomingMessage): Promise<Json> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    size += b.length;
    if (size > MAX_BODY) throw new ApiError(413, "BadRequest", "request entity too large");
    chunks.push(b);
  }
  const body = parseJson(Buffer.concat(chunks).toString("utf8"));
  if (body === undefined) {
    throw new ApiError(
      400,
      "BadRequest",
      "the body of the request was in an unknown format - accepted media types include: application/json",
    );
  }
  return body;
}

/** Splits /api/v1/... or /apis/<group>/<version>/... into a Target; undefined for discovery paths. */
function parseTarget(reg: Registry, segs: string[]): Target | undefined {
  const [root, a, b] = segs;
  const grp = root === "apis" ? (a ?? "") : "";
  const version = root === "apis" ? (b ?? "") : (a ?? "");
  const rest = segs.slice(root === "apis" ? 3 : 2);
  if (rest.length === 0) return undefined;
  let namespace: string | undefined;
  let parts = rest;
  const nsSub = rest.length === 3 && (rest[2] === "status" || rest[2] === "finalize");
  if (rest[0] === "namespaces" && rest.length >= 3 && !nsSub) {
    namespace = rest[1];
    parts = rest.slice(2);
  }
  const [resource, name, subresource, extra] = parts;
  const info = reg.lookup(grp, version, resource ?? "");
  if (!info || extra !== undefined || (namespace !== undefined && !info.namespaced)) throw notFoundPath();
  if (subresource !== undefined && !(subresource === "status" && info.statusSubresource)) throw notFoundPath();
  return { info, version, namespace, name, subresource };
}

export async function startKubeApi(opts: KubeApiOptions = {}): Promise<KubeApi> {
  const store = new Store(opts.historyLimit ?? 5000);
  const reg = new Registry();
  const resources = new Resources(reg, store);
  const watches = new Set<ServerResponse>();
  const bookmarkIntervalMs = opts.bookmarkIntervalMs ?? 1000;
  const nodeProxy = new NodeProxy(store, opts.nodeDialer);
  for (const ns of ["default", "kube-system", "kube-public", "kube-node-lease"]) {
    store.create(NAMESPACE_REF, {
      metadata: { name: ns },
      spec: { finalizers: ["kubernetes"] },
      status: { phase: "Active" },
    });
  }
  let port = 0;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const auth = req.headers.authorization;
    opts.onRequest?.({
      method: req.method ?? "GET",
      path: url.pathname,
      query: url.searchParams,
      token: auth?.startsWith("Bearer ") ? auth.slice(7) : undefined,
    });
    const segs = url.pathname
      .split("/")
      .filter((s) => s !== "")
      .map(decodeURIComponent);
    const method = req.method ?? "GET";
    const path = url.pathname.replace(/\/+$/, "");
    const q = url.searchParams;
    if (method === "GET") {
      if (path === "/version") return send(res, 200, VERSION_INFO);
      if (path === "/api") return send(res, 200, apiVersions(`127.0.0.1:${port}`));
      if (path === "/apis") return send(res, 200, groupList(reg));
      if (["/healthz", "/readyz", "/livez"].includes(path)) {
        res.writeHead(200, { "Content-Type": "text/plain" });
        return void res.end("ok");
      }
      if (segs[0] === "openapi" && segs[1] === "v3") {
        const { index, docs } = openapiV3(reg);
        const doc = segs.length === 2 ? index : docs.get(segs.slice(2).join("/"));
        if (doc) return send(res, 200, doc);
        throw notFoundPath();
      }
      if (segs[0] === "api" && segs.length === 2) {
        const list = resourceList(reg, "", segs[1] ?? "");
        if (list) return send(res, 200, list);
      }
      if (segs[0] === "apis" && segs.length === 2) {
        const g = group(reg, segs[1] ?? "");
        if (g) return send(res, 200, g);
      }
      if (segs[0] === "apis" && segs.length === 3) {
        const list = resourceList(reg, segs[1] ?? "", segs[2] ?? "");
        if (list) return send(res, 200, list);
      }
    }
    if (await nodeProxy.handle(req, res, segs, q)) return;
    if (!((segs[0] === "api" && segs.length >= 3) || (segs[0] === "apis" && segs.length >= 4))) throw notFoundPath();
    const t = parseTarget(reg, segs);
    if (!t) throw notFoundPath();
    const p: WriteParams = {
      dryRun: q.getAll("dryRun").includes("All"),
      fieldValidation: q.get("fieldValidation") ?? "Warn",
      warnings: [],
    };
    const show = (o: JsonObject): JsonObject => present(t, o);
    const contentType = (req.headers["content-type"] ?? "").split(";")[0]?.trim() ?? "";
    const needJson = (): void => {
      if (contentType !== "application/json") {
        throw new ApiError(
          415,
          "UnsupportedMediaType",
          `the body of the request was in an unknown format - accepted media types include: application/json, application/yaml`,
        );
      }
    };
    if (t.name === undefined) {
      if (method === "GET") {
        const match = (
          (l, f) => (o: JsonObject) =>
            l(o) && f(o)
        )(parseLabelSelector(q.get("labelSelector")), parseFieldSelector(q.get("fieldSelector")));
        const watch = q.get("watch");
        if (watch === "true" || watch === "1") {
          const timeout = q.get("timeoutSeconds");
          return serveWatch(
            store,
            {
              info: t.info,
              version: t.version,
              namespace: t.namespace,
              match,
              resourceVersion: q.get("resourceVersion") ?? "",
              allowBookmarks: q.get("allowWatchBookmarks") === "true",
              timeoutSeconds: timeout === null ? undefined : Number(timeout),
              bookmarkIntervalMs,
              present: show,
            },
            res,
            watches,
          );
        }
        const items = store.list(t.info, t.namespace).filter(match).map(show);
        const apiVersion = t.info.group ? `${t.info.group}/${t.version}` : t.version;
        return send(res, 200, {
          kind: t.info.listKind,
          apiVersion,
          metadata: { resourceVersion: store.resourceVersion },
          items,
        });
      }
      if (method === "POST") {
        needJson();
        const created = resources.create(t, await readBody(req), p);
        return send(res, 201, show(created), p.warnings);
      }
    } else {
      if (method === "GET") return send(res, 200, show(store.get(t.info, t.namespace ?? "", t.name)));
      if (method === "PUT") {
        needJson();
        return send(res, 200, show(resources.update(t, await readBody(req), p)), p.warnings);
      }
      if (method === "PATCH") {
        resources.checkPatchType(t, contentType);
        return send(res, 200, show(resources.patch(t, contentType, await readBody(req), p)), p.warnings);
      }
      if (method === "DELETE") return send(res, 200, show(resources.delete(t, p)));
    }
    throw new ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      const body =
        e instanceof ApiError
          ? errorStatus(e)
          : statusBody(500, "InternalError", e instanceof Error ? e.message : String(e));
      if (res.headersSent) res.destroy();
      else send(res, typeof body["code"] === "number" ? body["code"] : 500, body);
    });
  });

  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => socket.destroy());
    let url: URL;
    let segs: string[];
    try {
      url = new URL(req.url ?? "/", "http://127.0.0.1");
      segs = url.pathname
        .split("/")
        .filter((s) => s !== "")
        .map(decodeURIComponent);
    } catch {
      return void socket.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    }
    const auth = req.headers.authorization;
    const token = auth?.startsWith("Bearer ") ? auth.slice(7) : undefined;
    opts.onRequest?.({ method: req.method ?? "GET", path: url.pathname, query: url.searchParams, token });
    void nodeProxy.upgrade(req, socket, head, segs, url.searchParams);
  });

  const listen = (p: number): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen(p, "127.0.0.1", () => {
        server.off("error", reject);
        resolve();
      });
    });

  const dropWatches = (): void => {
    for (const res of [...watches]) res.destroy();
    watches.clear();
  };

  const endWatches = (): void => {
    for (const res of [...watches]) res.end();
    watches.clear();
  };

  const closeServer = (): Promise<void> =>
    new Promise((resolve) => {
      dropWatches();
      for (const s of nodeProxy.upgraded) s.destroy();
      server.close(() => resolve());
      server.closeAllConnections();
    });

  await listen(opts.port ?? 0);
  const address = server.address();
  port = address !== null && typeof address === "object" ? (address satisfies AddressInfo).port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    store,
    registry: reg,
    close: closeServer,
    dropWatches,
    endWatches,
    openWatches: () => watches.size,
    restart: async () => {
      await closeServer();
      await listen(port);
    },
  };
}

/**
 * Writes a kubeconfig (cluster d, user u, context c) pointing at `url`; returns its path. With `token`, the
 * user sends it as a bearer token (the double authorizes nothing, but `onRequest` sees who asked), and the
 * file is `<dir>/kubeconfig-<token>`; without, `<dir>/kubeconfig`.
 */
export async function writeKubeconfig(dir: string, url: string, token?: string): Promise<string> {
  const file = join(dir, token ? `kubeconfig-${token}` : "kubeconfig");
  const text = [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: d",
    "  cluster:",
    `    server: ${JSON.stringify(url)}`,
    // Plain HTTP: client-node refuses an http: server unless this is set; kubectl accepts it.
    "    insecure-skip-tls-verify: true",
    "users:",
    "- name: u",
    token ? `  user: {token: ${JSON.stringify(token)}}` : "  user: {}",
    "contexts:",
    "- name: c",
    "  context: {cluster: d, user: u}",
    "current-context: c",
    "",
  ].join("\n");
  await writeFile(file, text, { mode: 0o600 });
  return file;
}
