// The demo "kubelet / node-exporter stand-in" each node runs, so the proxy has something real to reach.
// Every port (plain HTTP on httpPorts, TLS on httpsPorts) serves the same routes:
//   GET /, /name        node name + "\n" (every response carries `x-raven-node`)
//   GET /healthz        "ok"
//   GET /metrics        Prometheus text: node_info{node} 1, requests served, upgrades
//   GET /logs, /containerLogs/...   ?lines=N (or tailLines=N)&follow=true&intervalMs=M: with follow, a chunked stream of
//                       "<node> line <i>\n", the first at once, then one every intervalMs, each written as it
//                       is produced, ending after N lines (default: when the client goes); without follow,
//                       N lines (default 10) at once
//   GET /metrics/resource  the kubelet's resource metrics (node_cpu_usage_seconds_total,
//                       node_memory_working_set_bytes: this process's), what metrics-server scrapes
//   /exec/<ns>/<pod>/<container>?command=...  Upgrade: websocket, v5/v4.channel.k8s.io: kubectl exec (exec.ts),
//                       or Upgrade: SPDY/3.1, kubectl's fallback (spdy.ts)
//   Upgrade: websocket  RFC 6455 echo (websocket.ts);  Upgrade: SPDY/3.1  101, then raw bytes echoed both ways
//   any /close-reused   answered (GET, HEAD) on a connection's first request; on a later one the connection is
//                       closed with no answer, as when a server's idle close crosses a request in flight
//   GET /stall          never answered: the connection stays open until the client goes (for deadlines)
// With idleTimeoutMs, a keep-alive connection idle that long is closed unannounced (no Keep-Alive hint), as
// servers written in Go and many others do; without it, Node's default (5 s, announced) applies.
// Guarantees: malformed requests and bad query values get a 4xx, never a crash or a log line; a stalled log
// reader is not buffered for (the next line waits for 'drain'); close() ends every stream and connection.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { systemClock, type Clock, type TimerHandle } from "../../shared/clock";
import { ConfigError } from "../../shared/errors";
import { EXEC_PROTOCOLS, pickExecProtocol, serveExec } from "./exec";
import { SPDY_EXEC_PROTOCOLS, pickSpdyProtocol, serveSpdyExec } from "./spdy";
import { isWebSocketKey, serveWebSocketEcho, webSocketAccept } from "./websocket";

export type TargetServerOptions = Readonly<{
  node: string;
  host: string;
  /** 0 picks a free port; the bound ports are reported. */
  httpPorts: readonly number[];
  httpsPorts: readonly number[];
  tls?: Readonly<{ key: string | Buffer; cert: string | Buffer }>;
  /** Close a keep-alive connection after this long without a request, without announcing it. */
  idleTimeoutMs?: number;
  clock?: Clock;
}>;

export type TargetServer = Readonly<{
  /** Bound ports: httpPorts' then httpsPorts', in the order given. */
  ports: number[];
  httpPorts: number[];
  httpsPorts: number[];
  close(): Promise<void>;
}>;

const DEFAULT_LINES = 10;
const DEFAULT_INTERVAL_MS = 100;
const MAX_LINES = 1_000_000;
const MAX_INTERVAL_MS = 60_000;
const ROUTES =
  "/, /name, /healthz, /metrics, /metrics/resource, /logs, /containerLogs/..., /exec/..., /close-reused, /stall";

type Stats = { requests: number; websocket: number; spdy: number; wsMessages: number };

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function metricsText(node: string, s: Stats): string {
  const n = `node="${escapeLabel(node)}"`;
  return [
    "# HELP node_info The node this target server stands in for.",
    "# TYPE node_info gauge",
    `node_info{${n}} 1`,
    "# HELP raven_target_requests_total HTTP requests served, this one included.",
    "# TYPE raven_target_requests_total counter",
    `raven_target_requests_total{${n}} ${s.requests}`,
    "# HELP raven_target_upgrades_total Connections upgraded, by protocol.",
    "# TYPE raven_target_upgrades_total counter",
    `raven_target_upgrades_total{${n},protocol="websocket"} ${s.websocket}`,
    `raven_target_upgrades_total{${n},protocol="spdy"} ${s.spdy}`,
    "# HELP raven_target_websocket_messages_total WebSocket data frames echoed.",
    "# TYPE raven_target_websocket_messages_total counter",
    `raven_target_websocket_messages_total{${n}} ${s.wsMessages}`,
    "",
  ].join("\n");
}

/** The kubelet's /metrics/resource, for this process (the node stand-in has no cgroup of its own). */
function resourceMetricsText(nowMs: number): string {
  const cpu = process.cpuUsage();
  return [
    "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds",
    "# TYPE node_cpu_usage_seconds_total counter",
    `node_cpu_usage_seconds_total ${((cpu.user + cpu.system) / 1e6).toFixed(6)} ${nowMs}`,
    "# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes",
    "# TYPE node_memory_working_set_bytes gauge",
    `node_memory_working_set_bytes ${process.memoryUsage().rss} ${nowMs}`,
    "",
  ].join("\n");
}

type LogQuery = { follow: boolean; lines: number; intervalMs: number };

/** The /logs query, or the name of the bad parameter. */
function parseLogQuery(q: URLSearchParams): LogQuery | string {
  const follow = q.get("follow");
  if (follow !== null && !["true", "false", "1", "0", ""].includes(follow)) return "follow must be true or false";
  const isFollow = follow === "true" || follow === "1";
  const int = (key: string, min: number, max: number, dflt: number): number | string => {
    const raw = q.get(key);
    if (raw === null) return dflt;
    const v = Number(raw);
    return /^\d+$/.test(raw) && v >= min && v <= max ? v : `${key} must be an integer ${min}..${max}`;
  };
  // tailLines is the kubelet's name (kubectl logs --tail): without follow, the log is that long.
  const tail = isFollow ? Infinity : int("tailLines", 0, MAX_LINES, DEFAULT_LINES);
  if (typeof tail === "string") return tail;
  const lines = int("lines", 0, MAX_LINES, tail);
  if (typeof lines === "string") return lines;
  const intervalMs = int("intervalMs", 1, MAX_INTERVAL_MS, DEFAULT_INTERVAL_MS);
  if (typeof intervalMs === "string") return intervalMs;
  return { follow: isFollow, lines, intervalMs };
}

function rawResponse(socket: Duplex, status: string, body: string, headers: string[] = []): void {
  if (!socket.writable) return void socket.destroy();
  socket.end(
    [
      `HTTP/1.1 ${status}`,
      "Content-Type: text/plain; charset=utf-8",
      `Content-Length: ${Buffer.byteLength(body)}`,
      "Connection: close",
      ...headers,
      "",
      body,
    ].join("\r\n"),
  );
}

export async function startTargetServer(opts: TargetServerOptions): Promise<TargetServer> {
  const { node, host } = opts;
  const clock = opts.clock ?? systemClock;
  if (typeof node !== "string" || node === "") throw new ConfigError("node", "must be a non-empty node name");
  for (const [key, list] of [
    ["httpPorts", opts.httpPorts],
    ["httpsPorts", opts.httpsPorts],
  ] as const) {
    for (const p of list)
      if (!Number.isInteger(p) || p < 0 || p > 65535)
        throw new ConfigError(key, `${JSON.stringify(p)} is not a port (0..65535)`);
  }
  if (opts.httpPorts.length + opts.httpsPorts.length === 0) throw new ConfigError("httpPorts", "no ports to serve on");
  if (opts.httpsPorts.length > 0 && !opts.tls) throw new ConfigError("tls", "httpsPorts need a key and certificate");
  const idleMs = opts.idleTimeoutMs;
  if (idleMs !== undefined && !(Number.isInteger(idleMs) && idleMs > 0))
    throw new ConfigError("idleTimeoutMs", `${JSON.stringify(idleMs)} is not a positive whole number of ms`);

  const stats: Stats = { requests: 0, websocket: 0, spdy: 0, wsMessages: 0 };
  const streams = new Set<() => void>();
  const upgraded = new Set<Duplex>();

  const text = (res: ServerResponse, status: number, body: string, type = "text/plain; charset=utf-8") => {
    res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body) });
    res.end(body);
  };

  const streamLogs = (req: IncomingMessage, res: ServerResponse, q: LogQuery) => {
    const line = (i: number) => `${node} line ${i}\n`;
    if (!q.follow) {
      let body = "";
      for (let i = 1; i <= q.lines; i++) body += line(i);
      return text(res, 200, body);
    }
    res.writeHead(200, {
      "content-type": "text/plain; charset=utf-8",
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
    });
    if (req.method === "HEAD" || q.lines === 0) return void res.end();
    let i = 0;
    let timer: TimerHandle | null = null;
    const stop = () => {
      if (timer) clock.clearTimeout(timer);
      timer = null;
      streams.delete(stop);
      res.off("drain", schedule);
      if (!res.writableEnded) res.end();
    };
    function schedule() {
      timer = clock.setTimeout(tick, q.intervalMs);
    }
    function tick() {
      timer = null;
      i++;
      const flushed = res.write(line(i));
      if (i >= q.lines) return stop();
      // A full write buffer means the reader is behind: produce the next line only once it has drained.
      if (flushed) schedule();
      else res.once("drain", schedule);
    }
    streams.add(stop);
    res.on("close", stop);
    tick();
  };

  // Requests served per connection, and the close timer of each connection idle after a response (with
  // idleTimeoutMs; a connection that never sent a request is not this stand-in's concern).
  const served = new WeakMap<Duplex, number>();
  const idleTimers = new WeakMap<Duplex, TimerHandle>();
  const busy = (socket: Duplex) => {
    const t = idleTimers.get(socket);
    if (t) clock.clearTimeout(t);
    idleTimers.delete(socket);
  };
  const idle = (socket: Duplex) => {
    if (idleMs === undefined || socket.destroyed) return;
    busy(socket);
    idleTimers.set(
      socket,
      clock.setTimeout(() => socket.destroy(), idleMs),
    );
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    stats.requests++;
    const nth = (served.get(req.socket) ?? 0) + 1;
    served.set(req.socket, nth);
    busy(req.socket);
    res.once("finish", () => idle(req.socket));
    res.setHeader("x-raven-node", node);
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://target.invalid");
    } catch {
      return text(res, 400, "malformed request target\n");
    }
    if (url.pathname === "/close-reused" && nth > 1) return void req.socket.destroy();
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      return text(res, 405, `method ${req.method} not allowed; this target only serves GET\n`);
    }
    const path = url.pathname;
    if (path === "/stall") return; // no answer, ever: the client's (or a proxy's) deadline ends it
    if (path === "/" || path === "/name" || path === "/close-reused") return text(res, 200, `${node}\n`);
    if (path === "/healthz") return text(res, 200, "ok");
    if (path === "/metrics")
      return text(res, 200, metricsText(node, stats), "text/plain; version=0.0.4; charset=utf-8");
    if (path === "/metrics/resource")
      return text(res, 200, resourceMetricsText(clock.wallMs()), "text/plain; version=0.0.4; charset=utf-8");
    if (path === "/logs" || path.startsWith("/containerLogs/")) {
      const q = parseLogQuery(url.searchParams);
      return typeof q === "string" ? text(res, 400, `bad /logs query: ${q}\n`) : streamLogs(req, res, q);
    }
    text(res, 404, `404 not found: ${path} is not served by raven target ${node} (routes: ${ROUTES})\n`);
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    stats.requests++;
    busy(socket);
    socket.on("error", () => socket.destroy());
    const protocols = String(req.headers.upgrade ?? "")
      .toLowerCase()
      .split(",")
      .map((p) => p.trim());
    const nodeHeader = `x-raven-node: ${node}`;
    let url: URL;
    try {
      url = new URL(req.url ?? "/", "http://target.invalid");
    } catch {
      return rawResponse(socket, "400 Bad Request", "malformed request target\n", [nodeHeader]);
    }
    if (protocols.includes("websocket") && url.pathname.startsWith("/exec/")) {
      const key = req.headers["sec-websocket-key"];
      const protocol = pickExecProtocol(req.headers["sec-websocket-protocol"]);
      const command = url.searchParams.getAll("command");
      if (!isWebSocketKey(key) || !protocol || command.length === 0) {
        return rawResponse(
          socket,
          "400 Bad Request",
          `exec needs a WebSocket handshake offering ${EXEC_PROTOCOLS.join(" or ")} and a command\n`,
          [nodeHeader],
        );
      }
      stats.websocket++;
      upgraded.add(socket);
      socket.once("close", () => upgraded.delete(socket));
      socket.write(
        [
          "HTTP/1.1 101 Switching Protocols",
          "Upgrade: websocket",
          "Connection: Upgrade",
          `Sec-WebSocket-Accept: ${webSocketAccept(key)}`,
          `Sec-WebSocket-Protocol: ${protocol}`,
          nodeHeader,
          "",
          "",
        ].join("\r\n"),
      );
      const stdin = ["1", "true"].includes(url.searchParams.get("stdin") ?? "");
      return serveExec(socket, head, node, command, { v5: protocol === "v5.channel.k8s.io", stdin });
    }
    if (protocols.includes("websocket")) {
      const key = req.headers["sec-websocket-key"];
      if (req.method !== "GET" || req.headers["sec-websocket-version"] !== "13" || !isWebSocketKey(key)) {
        return rawResponse(
          socket,
          "400 Bad Request",
          "bad WebSocket handshake: need GET, Sec-WebSocket-Version: 13 and a 16-byte Sec-WebSocket-Key\n",
          ["Sec-WebSocket-Version: 13", nodeHeader],
        );
      }
      stats.websocket++;
      upgraded.add(socket);
      socket.once("close", () => upgraded.delete(socket));
      socket.write(
        [
          "HTTP/1.1 101 Switching Protocols",
          "Upgrade: websocket",
          "Connection: Upgrade",
          `Sec-WebSocket-Accept: ${webSocketAccept(key)}`,
          nodeHeader,
          "",
          "",
        ].join("\r\n"),
      );
      return serveWebSocketEcho(socket, head, () => stats.wsMessages++);
    }
    if (protocols.includes("spdy/3.1") && url.pathname.startsWith("/exec/")) {
      const protocol = pickSpdyProtocol(req.headers["x-stream-protocol-version"]);
      const command = url.searchParams.getAll("command");
      if (!protocol || command.length === 0) {
        return rawResponse(
          socket,
          "400 Bad Request",
          `exec over SPDY needs X-Stream-Protocol-Version ${SPDY_EXEC_PROTOCOLS.join(" or ")} and a command\n`,
          [nodeHeader],
        );
      }
      stats.spdy++;
      upgraded.add(socket);
      socket.once("close", () => upgraded.delete(socket));
      socket.write(
        [
          "HTTP/1.1 101 Switching Protocols",
          "Connection: Upgrade",
          "Upgrade: SPDY/3.1",
          `X-Stream-Protocol-Version: ${protocol}`,
          nodeHeader,
          "",
          "",
        ].join("\r\n"),
      );
      const on = (k: string) => ["1", "true"].includes(url.searchParams.get(k) ?? "");
      const expect = new Set((["stdin", "stdout", "stderr"] as const).filter(on));
      return serveSpdyExec(socket, head, node, command, expect);
    }
    if (protocols.includes("spdy/3.1")) {
      stats.spdy++;
      upgraded.add(socket);
      socket.once("close", () => upgraded.delete(socket));
      // kubectl offers stream protocol versions; settle on the first one, as a kubelet would pick one.
      const offered = String(req.headers["x-stream-protocol-version"] ?? "")
        .split(",")[0]
        ?.trim();
      socket.write(
        [
          "HTTP/1.1 101 Switching Protocols",
          "Connection: Upgrade",
          "Upgrade: SPDY/3.1",
          ...(offered ? [`X-Stream-Protocol-Version: ${offered}`] : []),
          nodeHeader,
          "",
          "",
        ].join("\r\n"),
      );
      if (head.length > 0) socket.write(head);
      socket.pipe(socket);
      return;
    }
    rawResponse(
      socket,
      "400 Bad Request",
      `unsupported upgrade ${JSON.stringify(req.headers.upgrade ?? "")}: this target speaks websocket and SPDY/3.1\n`,
      [nodeHeader],
    );
  };

  const servers: Server[] = [];
  const configure = (server: Server) => {
    server.on("request", onRequest);
    server.on("upgrade", onUpgrade);
    server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (err.code === "ECONNRESET" || !socket.writable) return void socket.destroy();
      socket.end("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    });
    server.on("tlsClientError", () => {});
    server.on("connection", (s: Socket) => s.on("error", () => {}));
    // Node's own idle close announces itself (Keep-Alive: timeout=5); idleTimeoutMs replaces it unannounced.
    if (idleMs !== undefined) server.keepAliveTimeout = 0;
    servers.push(server);
    return server;
  };
  const listen = (server: Server, port: number, key: string) =>
    new Promise<number>((resolve, reject) => {
      server.once("error", (err) =>
        reject(new ConfigError(key, `cannot listen on ${host}:${port}: ${err.message}`, { cause: err })),
      );
      server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
    });

  const close = async () => {
    for (const stop of [...streams]) stop();
    for (const s of upgraded) s.destroy();
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (!s.listening) return resolve();
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
  };

  try {
    const httpPorts: number[] = [];
    for (const p of opts.httpPorts) httpPorts.push(await listen(configure(createHttpServer()), p, "httpPorts"));
    const httpsPorts: number[] = [];
    for (const p of opts.httpsPorts)
      httpsPorts.push(
        await listen(configure(createHttpsServer({ key: opts.tls!.key, cert: opts.tls!.cert })), p, "httpsPorts"),
      );
    return { ports: [...httpPorts, ...httpsPorts], httpPorts, httpsPorts, close };
  } catch (err) {
    await close();
    throw err;
  }
}
