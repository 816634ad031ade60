// What kube-apiserver does for `kubectl logs`, `kubectl exec`, `kubectl get --raw .../nodes/X/proxy/...` and
// `kubectl top node`: reach the kubelet on <nodeName>:10250. The double reaches it through a NodeDialer (in
// the tests and the demo: a CONNECT to Raven's proxy, the egress-selector way), then speaks TLS to the
// kubelet (its serving certificate is not checked, as kube-apiserver does not check it without
// --kubelet-certificate-authority) and passes the stream or the upgraded connection through unchanged.
//   GET  /api/v1/namespaces/<ns>/pods/<pod>/log      -> /containerLogs/<ns>/<pod>/<container>?<query>
//   GET  /api/v1/namespaces/<ns>/pods/<pod>/exec     -> /exec/<ns>/<pod>/<container>?<query>  (Upgrade)
//   *    /api/v1/nodes/<node>/proxy/<path>           -> /<path>
//   GET  /apis/metrics.k8s.io/v1beta1/nodes[/<node>] <- /metrics/resource of each kubelet, as metrics-server
// A followed log whose kubelet connection breaks is cut off (no clean end), so kubectl reports the break
// instead of ending quietly as if the log were complete.
import type { IncomingMessage, ServerResponse } from "node:http";
import { request as httpsRequest } from "node:https";
import { connect as netConnect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { ApiError, statusBody, type Reason } from "./errors";
import { isObject, objectAt, str, type JsonObject } from "./json";
import type { Store } from "./store";

/** A byte stream to `node:port`, however the API server reaches nodes. */
export type NodeDialer = (node: string, port: number) => Promise<Duplex>;

/** An HTTP CONNECT to `target` through the proxy at host:port; the socket once the proxy answers 200. */
export function connectThrough(
  proxy: { host: string; port: number },
  target: string,
  timeoutMs = 5_000,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(proxy.port, proxy.host);
    const timer = setTimeout(
      () => socket.destroy(new Error(`CONNECT ${target}: no answer in ${timeoutMs} ms`)),
      timeoutMs,
    );
    let head = "";
    const onData = (chunk: Buffer) => {
      head += chunk.toString("latin1");
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      socket.off("data", onData);
      clearTimeout(timer);
      const status = head.slice(0, head.indexOf("\r\n"));
      if (!/^HTTP\/1\.[01] 200/.test(status)) {
        socket.destroy();
        return reject(new Error(`CONNECT ${target} via ${proxy.host}:${proxy.port}: ${status}`));
      }
      const rest = Buffer.from(head.slice(end + 4), "latin1");
      if (rest.length > 0) socket.unshift(rest);
      resolve(socket);
    };
    socket.on("data", onData);
    socket.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // Closed before answering (a rejected settle after a resolve is a no-op).
    socket.once("close", () => {
      clearTimeout(timer);
      reject(new Error(`CONNECT ${target} via ${proxy.host}:${proxy.port}: closed without an answer`));
    });
    socket.once("connect", () => socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
  });
}

/**
 * The egress-selector way: every node through Raven's HTTP proxy, trying the doors given in turn (only the
 * active cloud gateway's answers; after a failover another one does).
 */
export function proxyDialer(doors: () => readonly { host: string; port: number }[]): NodeDialer {
  return async (node, port) => {
    const errors: string[] = [];
    for (const door of doors()) {
      try {
        return await connectThrough(door, `${node}:${port}`);
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    throw new Error(errors.length ? errors.join("; ") : "no proxy to reach nodes through");
  };
}

export const KUBELET_PORT = 10250;
const PODS = { group: "", resource: "pods" };
const NODES = { group: "", resource: "nodes" };

function tlsTo(node: string, raw: Duplex): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ socket: raw, servername: node, rejectUnauthorized: false }, () => resolve(s));
    s.once("error", reject);
  });
}

function unavailable(message: string): ApiError {
  return new ApiError(503, "ServiceUnavailable", message);
}

export class NodeProxy {
  /** node -> the last /metrics/resource sample (cpu core-seconds at a wall-clock ms). */
  private readonly samples = new Map<string, { cpu: number; atMs: number }>();

  constructor(
    private readonly store: Store,
    private readonly dial: NodeDialer | undefined,
  ) {}

  /** A TLS connection to the node's kubelet. */
  private async kubelet(node: string): Promise<TLSSocket> {
    if (!this.dial) throw unavailable(`no route to node ${node}: this API server has no node dialer`);
    let raw: Duplex;
    try {
      raw = await this.dial(node, KUBELET_PORT);
    } catch (err) {
      throw unavailable(`error dialing backend: ${node}:${KUBELET_PORT}: ${(err as Error).message}`);
    }
    try {
      return await tlsTo(node, raw);
    } catch (err) {
      raw.destroy();
      throw unavailable(`error dialing backend: TLS to ${node}:${KUBELET_PORT}: ${(err as Error).message}`);
    }
  }

  private podTarget(ns: string, name: string, container: string | null): { node: string; container: string } {
    const pod = this.store.tryGet(PODS, ns, name);
    if (!pod) throw new ApiError(404, "NotFound", `pods "${name}" not found`);
    const spec = objectAt(pod["spec"]) ?? {};
    const node = str(spec["nodeName"]);
    if (!node) throw new ApiError(400, "BadRequest", `pod ${name} does not have a host assigned`);
    const containers = (Array.isArray(spec["containers"]) ? spec["containers"] : [])
      .filter(isObject)
      .map((c) => str(c["name"]) ?? "");
    if (container) {
      if (!containers.includes(container))
        throw new ApiError(400, "BadRequest", `container ${container} is not valid for pod ${name}`);
      return { node, container };
    }
    if (containers.length !== 1)
      throw new ApiError(
        400,
        "BadRequest",
        `a container name must be specified for pod ${name}, choose one of: [${containers.join(" ")}]`,
      );
    return { node, container: containers[0]! };
  }

  /** Serves the request if it is one of these routes; false if it is not. */
  async handle(req: IncomingMessage, res: ServerResponse, segs: string[], q: URLSearchParams): Promise<boolean> {
    const method = req.method ?? "GET";
    if (segs[0] === "api" && segs[1] === "v1" && segs[2] === "nodes" && segs[4] === "proxy" && segs[3]) {
      await this.forward(req, res, segs[3], `/${segs.slice(5).map(encodeURIComponent).join("/")}`, q);
      return true;
    }
    if (
      segs[0] === "api" &&
      segs[1] === "v1" &&
      segs[2] === "namespaces" &&
      segs[4] === "pods" &&
      segs[7] === undefined
    ) {
      const [ns, name, sub] = [segs[3]!, segs[5]!, segs[6]];
      if (sub !== "log" || !name) return false;
      if (method !== "GET") throw new ApiError(405, "MethodNotAllowed", "pods/log serves GET only");
      const { node, container } = this.podTarget(ns, name, q.get("container"));
      const query = new URLSearchParams(q);
      query.delete("container");
      const path = `/containerLogs/${ns}/${name}/${container}`;
      await this.forward(req, res, node, path, query);
      return true;
    }
    if (segs[0] === "apis" && segs[1] === "metrics.k8s.io" && segs[2] === "v1beta1" && segs[3] === "nodes") {
      if (method !== "GET") throw new ApiError(405, "MethodNotAllowed", "metrics are read-only");
      await this.nodeMetrics(res, segs[4]);
      return true;
    }
    return false;
  }

  /** GET `path` on the node's kubelet; the response streams through. */
  private async forward(
    req: IncomingMessage,
    res: ServerResponse,
    node: string,
    path: string,
    query: URLSearchParams,
  ): Promise<void> {
    const socket = await this.kubelet(node);
    const qs = query.toString();
    await new Promise<void>((resolve) => {
      const up = httpsRequest(
        {
          createConnection: () => socket,
          method: req.method ?? "GET",
          path: qs ? `${path}?${qs}` : path,
          headers: { host: `${node}:${KUBELET_PORT}`, accept: req.headers.accept ?? "*/*" },
        },
        (upRes) => {
          const headers: Record<string, string> = {};
          for (const h of ["content-type", "content-length"]) {
            const v = upRes.headers[h];
            if (typeof v === "string") headers[h] = v;
          }
          res.writeHead(upRes.statusCode ?? 502, headers);
          upRes.pipe(res, { end: false });
          upRes.on("close", () => {
            // A clean end ends the response; a broken kubelet connection cuts it off, so the client sees it.
            if (upRes.complete) res.end();
            else res.destroy();
            socket.destroy();
            resolve();
          });
        },
      );
      up.on("error", (err) => {
        if (res.headersSent) res.destroy();
        else {
          const body = statusBody(503, "ServiceUnavailable", `error reading from ${node}: ${err.message}`);
          res.writeHead(503, { "Content-Type": "application/json" });
          res.end(JSON.stringify(body));
        }
        resolve();
      });
      res.on("close", () => up.destroy());
      up.end();
    });
  }

  /** Upgrade requests: pods/exec. Writes an error response on the socket for anything else. */
  readonly upgraded = new Set<Duplex>();

  async upgrade(req: IncomingMessage, client: Duplex, head: Buffer, segs: string[], q: URLSearchParams): Promise<void> {
    const fail = (code: number, reason: Reason, message: string) => {
      const body = JSON.stringify(statusBody(code, reason, message));
      client.end(
        `HTTP/1.1 ${code} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    };
    const isExec =
      segs[0] === "api" && segs[1] === "v1" && segs[2] === "namespaces" && segs[4] === "pods" && segs[6] === "exec";
    if (!isExec || segs.length !== 7) return fail(404, "NotFound", "the server could not find the requested resource");
    let upstream: TLSSocket;
    let path: string;
    try {
      const { node, container } = this.podTarget(segs[3]!, segs[5]!, q.get("container"));
      const query = new URLSearchParams(q);
      query.delete("container");
      path = `/exec/${segs[3]}/${segs[5]}/${container}?${query.toString()}`;
      upstream = await this.kubelet(node);
      // The client may have gone while the kubelet was dialled.
      if (client.destroyed) return void upstream.destroy();
    } catch (err) {
      const e = err instanceof ApiError ? err : unavailable(String(err));
      return fail(e.code, e.reason, e.message);
    }
    // The handshake goes to the kubelet as the client sent it (its key, version and subprotocols), so the
    // kubelet's 101 is valid for the client; after it, bytes flow both ways untouched.
    const pass = [
      "upgrade",
      "connection",
      "sec-websocket-key",
      "sec-websocket-version",
      "sec-websocket-protocol",
      "x-stream-protocol-version",
    ];
    const lines = [`GET ${path} HTTP/1.1`, `Host: ${req.headers.host ?? "kubelet"}`];
    for (const h of pass) {
      const v = req.headers[h];
      if (v !== undefined) lines.push(`${h}: ${Array.isArray(v) ? v.join(", ") : v}`);
    }
    upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    client.pipe(upstream);
    upstream.pipe(client);
    this.upgraded.add(client);
    const close = () => {
      this.upgraded.delete(client);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", close);
    upstream.on("error", close);
    client.on("close", close);
    upstream.on("close", close);
  }

  /** NodeMetrics from each kubelet's /metrics/resource: cpu as a rate over the last two samples. */
  private async nodeMetrics(res: ServerResponse, only: string | undefined): Promise<void> {
    const names = only
      ? [only]
      : this.store
          .list(NODES)
          .map((n) => str(objectAt(n["metadata"])?.["name"]) ?? "")
          .filter((n) => n !== "");
    if (only && !this.store.tryGet(NODES, "", only))
      throw new ApiError(404, "NotFound", `nodemetrics.metrics.k8s.io "${only}" not found`);
    const scrape = async (node: string) => {
      const text = await this.getText(node, "/metrics/resource");
      const value = (metric: string) => {
        const m = new RegExp(`^${metric}(?:\\{[^}]*\\})? ([0-9.e+-]+)(?: (\\d+))?$`, "m").exec(text);
        return m ? { v: Number(m[1]), atMs: m[2] ? Number(m[2]) : Date.now() } : undefined;
      };
      return { cpu: value("node_cpu_usage_seconds_total"), mem: value("node_memory_working_set_bytes") };
    };
    const items: JsonObject[] = [];
    await Promise.all(
      names.map(async (node) => {
        try {
          let s = await scrape(node);
          let prev = this.samples.get(node);
          if (!prev && s.cpu) {
            // metrics-server needs two scrapes for a rate; the first request waits for the second.
            this.samples.set(node, { cpu: s.cpu.v, atMs: s.cpu.atMs });
            await new Promise((r) => setTimeout(r, 1000));
            s = await scrape(node);
            prev = this.samples.get(node);
          }
          if (!s.cpu || !s.mem || !prev || s.cpu.atMs <= prev.atMs) return;
          const cores = (s.cpu.v - prev.cpu) / ((s.cpu.atMs - prev.atMs) / 1000);
          this.samples.set(node, { cpu: s.cpu.v, atMs: s.cpu.atMs });
          items.push({
            metadata: { name: node, creationTimestamp: new Date().toISOString() },
            timestamp: new Date(s.cpu.atMs).toISOString(),
            window: `${Math.round((s.cpu.atMs - prev.atMs) / 1000)}s`,
            usage: { cpu: `${Math.max(0, Math.round(cores * 1e9))}n`, memory: `${Math.round(s.mem.v / 1024)}Ki` },
          });
        } catch {
          // A node that cannot be scraped is left out, as metrics-server leaves it out.
        }
      }),
    );
    items.sort((a, b) =>
      (str(objectAt(a["metadata"])?.["name"]) ?? "").localeCompare(str(objectAt(b["metadata"])?.["name"]) ?? ""),
    );
    const body: JsonObject = only
      ? (items[0] ??
        (() => {
          throw unavailable(`metrics for node ${only} are not available`);
        })())
      : { kind: "NodeMetricsList", apiVersion: "metrics.k8s.io/v1beta1", metadata: {}, items };
    if (only) Object.assign(body, { kind: "NodeMetrics", apiVersion: "metrics.k8s.io/v1beta1" });
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify(body));
  }

  private async getText(node: string, path: string): Promise<string> {
    const socket = await this.kubelet(node);
    return new Promise((resolve, reject) => {
      const r = httpsRequest(
        { createConnection: () => socket, path, headers: { host: `${node}:${KUBELET_PORT}` } },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => (text += c));
          res.on("end", () => {
            socket.destroy();
            if (res.statusCode === 200) resolve(text);
            else reject(new Error(`${path}: ${res.statusCode}`));
          });
          res.on("close", () => {
            socket.destroy();
            if (!res.complete) reject(new Error(`${path}: the connection broke mid-answer`));
          });
        },
      );
      r.on("error", reject);
      r.setTimeout(10_000, () => r.destroy(new Error(`${path}: no answer in 10 s`)));
      r.end();
    });
  }
}
