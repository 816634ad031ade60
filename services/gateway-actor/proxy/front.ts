// The front doors of the active cloud gateway, all opening channels through CloudProxy:
//   - an HTTP proxy: `CONNECT node:port` (kube-apiserver egress / konnectivity style, `curl -p -x`), and
//     absolute-URI requests `GET http://node:port/path` (Prometheus `proxy_url`), including upgrades
//     (WebSocket/SPDY) which are passed through as raw bytes after the request head;
//   - name-routed listeners for Raven's DNS mode, where node names resolve to the proxy: a connection to
//     listener port P goes to `<name>:P`, the name read from the TLS ClientHello's SNI (the TLS session
//     passes through untouched, end to end) or from a plain request's Host header.
// A refused target gets an HTTP error whose status and text say why (TLS connections can only be closed).
import http from "node:http";
import net from "node:net";
import type { Duplex } from "node:stream";
import { ChannelError, ErrorCode, describeError, type RavenError } from "../../../shared/errors";
import type { Logger } from "../../../shared/log";
import { counters } from "../../../shared/metrics";
import type { CloudProxy } from "./cloud";
import { MAX_SNIFF_BYTES, hostOnly, sniff } from "./sniff";

const STATUS: Record<string, [number, string]> = {
  [ErrorCode.BadTarget]: [400, "Bad Request"],
  [ErrorCode.Forbidden]: [403, "Forbidden"],
  [ErrorCode.NotFound]: [404, "Not Found"],
  [ErrorCode.NoGateway]: [503, "Service Unavailable"],
  [ErrorCode.StaleTerm]: [503, "Service Unavailable"],
  [ErrorCode.DialFailed]: [502, "Bad Gateway"],
  [ErrorCode.Timeout]: [504, "Gateway Timeout"],
};

export function httpStatusOf(err: unknown): [number, string] {
  const code = (err as RavenError)?.code;
  return (code && STATUS[code]) || [502, "Bad Gateway"];
}

function rawError(socket: net.Socket, err: unknown): void {
  const [status, reason] = httpStatusOf(err);
  const body = `raven: ${describeError(err)}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-raven-error: ${(err as RavenError)?.code ?? "INTERNAL"}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** "node:port" -> parts, or a BAD_TARGET error. */
export function parseTarget(hostPort: string): { node: string; port: number } {
  const host = hostOnly(hostPort);
  const portText = hostPort.slice(host.length + 1);
  const port = Number(portText);
  if (!host || !/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) {
    throw new ChannelError("BAD_TARGET", `target ${JSON.stringify(hostPort)} is not node:port`);
  }
  return { node: host, port };
}

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);
/** The answer to a CONNECT that got its channel; written by the relay ahead of the target's first bytes. */
const CONNECT_OK = Buffer.from("HTTP/1.1 200 Connection Established\r\n\r\n", "latin1");

export class ProxyFrontDoor {
  private readonly server: http.Server;
  private readonly agents = new Map<string, http.Agent>();

  constructor(
    private readonly proxy: CloudProxy,
    private readonly log: Logger,
  ) {
    this.server = http.createServer({ keepAlive: true });
    this.server.on("connect", (req, socket, head) => void this.onConnect(req, socket as net.Socket, head));
    this.server.on("request", (req, res) => this.onRequest(req, res));
    this.server.on("upgrade", (req, socket, head) => void this.onUpgrade(req, socket as net.Socket, head));
    this.server.on("clientError", (_err, socket) => {
      counters.inc("raven_proxy_requests_rejected_total", { reason: "MALFORMED" });
      if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
    });
  }

  listen(host: string, port: number): Promise<number> {
    return listen(this.server, host, port);
  }

  close(): void {
    this.server.close();
    this.server.closeAllConnections();
    for (const a of this.agents.values()) a.destroy();
  }

  private async onConnect(req: http.IncomingMessage, socket: net.Socket, head: Buffer): Promise<void> {
    socket.on("error", () => socket.destroy());
    try {
      const { node, port } = parseTarget(req.url ?? "");
      const ch = await this.proxy.openChannel(node, port);
      this.proxy.attach(socket, ch, { toClient: CONNECT_OK, toTarget: head });
    } catch (err) {
      this.refused(err, req.url);
      rawError(socket, err);
    }
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    let url: URL;
    try {
      url = new URL(req.url ?? "");
    } catch {
      if (req.url === "/healthz") return void res.end("ok\n");
      res
        .writeHead(400, { "content-type": "text/plain" })
        .end("raven: this is a proxy: send CONNECT node:port, or an absolute URL such as http://node:9100/metrics\n");
      return;
    }
    if (url.protocol !== "http:") {
      res
        .writeHead(400, { "content-type": "text/plain" })
        .end(`raven: ${url.protocol} targets go through CONNECT (curl -p), not as an absolute URL\n`);
      return;
    }
    const node = url.hostname;
    const port = Number(url.port || 80);
    const headers: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k)) headers[k] = v;
    const upstream = http.request(
      {
        method: req.method,
        path: url.pathname + url.search,
        headers,
        agent: this.agentFor(node, port),
        host: node,
        port,
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.statusMessage, up.headers);
        up.pipe(res);
        // Stream as it flows: chunked responses (logs -f) go out chunk by chunk, nothing is buffered whole.
        res.flushHeaders();
      },
    );
    upstream.on("error", (err) => {
      this.refused(err, req.url);
      if (res.headersSent) return void res.destroy(err);
      const [status] = httpStatusOf(err);
      res.writeHead(status, {
        "content-type": "text/plain; charset=utf-8",
        "x-raven-error": (err as RavenError).code ?? "INTERNAL",
      });
      res.end(`raven: ${describeError(err)}\n`);
    });
    req.pipe(upstream);
  }

  /** Absolute-URI upgrade (WebSocket/SPDY through the forward proxy): the head is re-sent in origin form,
   * then the connection is a raw channel. */
  private async onUpgrade(req: http.IncomingMessage, socket: net.Socket, head: Buffer): Promise<void> {
    socket.on("error", () => socket.destroy());
    try {
      const url = new URL(req.url ?? "");
      const ch = await this.proxy.openChannel(url.hostname, Number(url.port || 80));
      const lines = [`${req.method} ${url.pathname}${url.search} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const k = req.rawHeaders[i]!;
        if (!k.toLowerCase().startsWith("proxy-")) lines.push(`${k}: ${req.rawHeaders[i + 1]}`);
      }
      this.proxy.attach(socket, ch, {
        toTarget: Buffer.concat([Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1"), head]),
      });
    } catch (err) {
      this.refused(err, req.url);
      rawError(socket, err);
    }
  }

  private agentFor(node: string, port: number): http.Agent {
    const key = `${node}:${port}`;
    let agent = this.agents.get(key);
    if (!agent) {
      agent = new ChannelAgent(this.proxy, node, port);
      this.agents.set(key, agent);
    }
    return agent;
  }

  private refused(err: unknown, target: string | undefined): void {
    counters.inc("raven_proxy_requests_rejected_total", { reason: (err as RavenError)?.code ?? "INTERNAL" });
    this.log.info({ target, err: describeError(err) }, "proxy request refused");
  }
}

/** An http.Agent whose connections are channels (keep-alive: one channel serves many requests). */
class ChannelAgent extends http.Agent {
  constructor(
    private readonly proxy: CloudProxy,
    private readonly node: string,
    private readonly port: number,
  ) {
    super({ keepAlive: true, maxFreeSockets: 16 });
  }

  // The async form of createConnection: Agent calls back with (err, socket) when given a callback.
  override createConnection(
    _opts: http.ClientRequestArgs,
    cb?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    this.proxy.openChannel(this.node, this.port, "stream").then(
      (ch) => {
        this.proxy.track(ch);
        cb?.(null, ch.socket);
        // The channel socket was paused after its handshake; the HTTP client attaches its reader on the next
        // tick, and resume() flows on the tick after that, so no byte is emitted before anyone listens.
        ch.socket.resume();
      },
      (err) => cb?.(err as Error, undefined as unknown as Duplex),
    );
    return undefined;
  }
}

/** Name-routed listener for one node port (DNS mode): routes each connection by SNI or Host. */
export class NameRoutedListener {
  private readonly server: net.Server;

  constructor(
    private readonly proxy: CloudProxy,
    readonly targetPort: number,
    private readonly log: Logger,
  ) {
    this.server = net.createServer({ allowHalfOpen: true }, (s) => this.onConnection(s));
  }

  listen(host: string, port: number): Promise<number> {
    return listen(this.server, host, port);
  }

  close(): void {
    this.server.close();
  }

  private onConnection(socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.on("error", () => socket.destroy());
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), 10_000);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const got = sniff(buf);
      if (got.kind === "more" && buf.length < MAX_SNIFF_BYTES) return;
      socket.off("data", onData);
      socket.pause();
      clearTimeout(timer);
      const name = got.kind === "tls" ? got.serverName : got.kind === "http" ? got.host : null;
      const isTls = got.kind === "tls";
      const fail = (err: unknown) => {
        counters.inc("raven_proxy_requests_rejected_total", { reason: (err as RavenError)?.code ?? "BAD_TARGET" });
        this.log.info({ port: this.targetPort, err: describeError(err) }, "name-routed connection refused");
        if (isTls) socket.destroy();
        else rawError(socket, err);
      };
      if (!name) {
        const why =
          got.kind === "invalid"
            ? got.reason
            : isTls
              ? "the TLS ClientHello carries no SNI server name"
              : "the request has no Host header";
        return fail(new ChannelError("BAD_TARGET", `cannot tell which node this connection is for: ${why}`));
      }
      this.proxy
        .openChannel(name, this.targetPort)
        .then((ch) => this.proxy.attach(socket, ch, { toTarget: buf }), fail);
    };
    socket.on("data", onData);
  }
}

function listen(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}
