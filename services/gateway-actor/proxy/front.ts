// The front doors of the active cloud gateway, all opening channels through CloudProxy:
//   - an HTTP proxy: `CONNECT node:port` (kube-apiserver egress / konnectivity style, `curl -p -x`), and
//     absolute-URI requests `GET http://node:port/path` (Prometheus `proxy_url`), including upgrades
//     (WebSocket/SPDY) which are passed through as raw bytes after the request head;
//   - name-routed listeners for Raven's DNS mode, where node names resolve to the proxy: a connection to
//     listener port P goes to `<name>:P`, the name read from the TLS ClientHello's SNI (the TLS session
//     passes through untouched, end to end) or from a plain request's Host header.
// A refused target gets an HTTP error whose status and text say why (TLS connections can only be closed).
//
// The forward proxy keeps a channel per connection of its HTTP agent, reused across requests (keep-alive):
// - A channel whose target closed is never reused: the target's close ends the channel at the edge, and the
//   end closes it here at once, so the agent drops it; an idle channel is closed after idleChannelMs anyway.
// - A request that lands on a reused channel as it closes is sent again, on another channel, when nothing of
//   it can have mattered (an idempotent method, no body, no byte of an answer yet); once more at most, on a
//   channel opened for it alone. Any other failure is answered at once (502), never left hanging.
// - Every request has a deadline for the target's response head (responseTimeoutMs: 504); a stream that has
//   begun flows as long as both ends keep it (logs -f).
import http from "node:http";
import net from "node:net";
import { pipeline, type Duplex } from "node:stream";
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
/** Methods a request may be sent again with when it carries no body (idempotent: RFC 9110, 9.2.2). */
const REPEATABLE = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);
/** How often a request that raced a channel's close is sent again: once through the agent, once fresh. */
const MAX_REPEATS = 2;

export type ForwardSettings = Readonly<{ idleChannelMs: number; responseTimeoutMs: number }>;

function endToEnd(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (!HOP_BY_HOP.has(k)) out[k] = v;
  return out;
}

function hasBody(req: http.IncomingMessage): boolean {
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

/** The channel closed under a request before any answer came (the target had closed it meanwhile). */
function lostChannel(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === "ECONNRESET" || code === "EPIPE";
}

type Forward = Readonly<{ node: string; port: number; path: string; headers: http.OutgoingHttpHeaders }>;

/** The answer to a CONNECT that got its channel; written by the relay ahead of the target's first bytes. */
const CONNECT_OK = Buffer.from("HTTP/1.1 200 Connection Established\r\n\r\n", "latin1");

export class ProxyFrontDoor {
  private readonly server: http.Server;
  private readonly agents = new Map<string, http.Agent>();

  constructor(
    private readonly proxy: CloudProxy,
    private readonly log: Logger,
    private readonly settings: ForwardSettings,
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
    const target: Forward = {
      node: url.hostname,
      port: Number(url.port || 80),
      path: url.pathname + url.search,
      headers: endToEnd(req.headers),
    };
    const repeats = REPEATABLE.has(req.method ?? "") && !hasBody(req) ? MAX_REPEATS : 0;
    this.forward(req, res, target, 0, repeats, Date.now() + this.settings.responseTimeoutMs);
  }

  /**
   * Attempt `attempt` (from 0) of a forwarded request that may be sent `repeats` times more if it races a
   * close; the response head is due by `dueAt`, whichever attempt brings it.
   */
  private forward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    target: Forward,
    attempt: number,
    repeats: number,
    dueAt: number,
  ): void {
    const { node, port } = target;
    // The last repeat takes a channel of its own, outside the pool: whatever else the pool holds may be
    // closing too. (No `agent` at all: with `agent: false` Node would dial the name itself, past the channel.)
    const via =
      attempt === MAX_REPEATS
        ? { createConnection: openStream(this.proxy, node, port) }
        : { agent: this.agentFor(node, port) };
    let answered = false;
    const upstream = http.request(
      { method: req.method, path: target.path, headers: target.headers, host: node, port, ...via },
      (up) => {
        answered = true;
        clearTimeout(deadline);
        res.writeHead(up.statusCode ?? 502, up.statusMessage, endToEnd(up.headers));
        // A stream that breaks midway (its channel reset in a failover) ends the client's response too,
        // rather than leaving a half-sent body open.
        pipeline(up, res, (err) => err && res.destroy(err));
        // Stream as it flows: chunked responses (logs -f) go out chunk by chunk, nothing is buffered whole.
        res.flushHeaders();
      },
    );
    const deadline = setTimeout(
      () => {
        const ms = this.settings.responseTimeoutMs;
        upstream.destroy(new ChannelError("TIMEOUT", `${node}:${port} sent no response within ${ms} ms`));
      },
      Math.max(0, dueAt - Date.now()),
    );
    // A client that goes away takes its channel with it (and nothing is sent again for it).
    let clientGone = false;
    const onClientGone = () => {
      if (res.writableFinished) return;
      clientGone = true;
      upstream.destroy();
    };
    res.once("close", onClientGone);
    upstream.on("error", (err) => {
      clearTimeout(deadline);
      res.off("close", onClientGone);
      if (clientGone) return;
      if (attempt < repeats && !answered && !res.headersSent && upstream.reusedSocket && lostChannel(err)) {
        counters.inc("raven_proxy_requests_repeated_total");
        this.log.debug(
          { target: req.url, err: describeError(err) },
          "request raced a closing channel; sending it again",
        );
        return this.forward(req, res, target, attempt + 1, repeats, dueAt);
      }
      this.refused(err, req.url);
      if (res.headersSent) return void res.destroy(err);
      const [status] = httpStatusOf(err);
      res.writeHead(status, {
        "content-type": "text/plain; charset=utf-8",
        "x-raven-error": (err as RavenError).code ?? "INTERNAL",
      });
      res.end(`raven: ${describeError(err)}\n`);
    });
    // Only a request without a body is ever repeated, so only the first attempt has anything to pipe.
    if (attempt > 0) upstream.end();
    else req.pipe(upstream);
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
      agent = new ChannelAgent(this.proxy, node, port, this.settings.idleChannelMs);
      this.agents.set(key, agent);
    }
    return agent;
  }

  private refused(err: unknown, target: string | undefined): void {
    counters.inc("raven_proxy_requests_rejected_total", { reason: (err as RavenError)?.code ?? "INTERNAL" });
    this.log.info({ target, err: describeError(err) }, "proxy request refused");
  }
}

/**
 * Opens a `stream` channel as an HTTP client connection (the callback form of createConnection). The target
 * ending the connection ends the channel: it is closed here too, so a keep-alive pool never keeps it.
 */
function openStream(
  proxy: CloudProxy,
  node: string,
  port: number,
): (opts: http.ClientRequestArgs, cb: (err: Error | null, stream: Duplex) => void) => undefined {
  return (_opts, cb) => {
    proxy.openChannel(node, port, "stream").then(
      (ch) => {
        proxy.track(ch);
        // The channel is half-open capable; an HTTP connection whose far end finished is finished.
        ch.socket.once("end", () => ch.socket.end());
        cb(null, ch.socket);
        // The channel socket was paused after its handshake; the HTTP client attaches its reader on the next
        // tick, and resume() flows on the tick after that, so no byte is emitted before anyone listens.
        ch.socket.resume();
      },
      (err) => cb(err as Error, undefined as unknown as Duplex),
    );
    return undefined;
  };
}

/** An http.Agent whose connections are channels (keep-alive: one channel serves many requests). */
class ChannelAgent extends http.Agent {
  private readonly open: ReturnType<typeof openStream>;

  constructor(proxy: CloudProxy, node: string, port: number, idleChannelMs: number) {
    // `timeout` closes a free channel idle that long (a server's Keep-Alive hint, less a second, if shorter).
    super({ keepAlive: true, maxFreeSockets: 16, timeout: idleChannelMs });
    this.open = openStream(proxy, node, port);
  }

  // The async form of createConnection: Agent calls back with (err, socket) when given a callback.
  override createConnection(
    opts: http.ClientRequestArgs,
    cb?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    return this.open(opts, cb ?? (() => undefined));
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
