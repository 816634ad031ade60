// CloudProxy: the cloud side of proxy mode. Edge gateways dial in (TLS, pinned fleet CA) and leave spare
// connections here; `openChannel(node, port)` resolves the node through the Directory, checks what may be
// reached (node names only, the Gateway's proxy ports), takes a spare from the domain's *active* gateway and
// turns it into a channel with `chan.open` carrying the domain's term. The edge refuses a stale term; a
// channel whose edge gateway stops being active is closed at once (the record's change arrives by KV watch,
// ~0.3 s after a gateway dies; a SIGKILLed gateway's sockets reset even sooner), so nothing hangs on a dead
// gateway. Nodes of the cloud's own domain are dialed directly.
// A channel's bytes are relayed natively (native-relay.ts): with TLS between the gateways the open is
// `chan.sealed` and the bytes travel as sealed frames under keys exported from the TLS session; only channels
// that JavaScript reads itself (the forward proxy's keep-alive agent, `use: "stream"`) stay inside TLS.
// Spares are accepted only while this cloud candidate is active (an edge never parks connections on a cloud
// standby), and only from proxy candidates of the edge's Gateway: its active and its standbys, whose spares
// wait here unused so that the edge elected in a failover has its spares in place.
import net, { isIP, type Socket } from "node:net";
import tls from "node:tls";
import type { Clock } from "../../../shared/clock";
import { ChannelError, describeError, errorFromWire, errorToWire } from "../../../shared/errors";
import type { Logger } from "../../../shared/log";
import { counters } from "../../../shared/metrics";
import { verifyDomainToken } from "../../../shared/pki";
import { isObjectName } from "../../../shared/protocol";
import { ChannelTable, newChannelId, type ChannelTransport } from "./channels";
import { proxyPortsOf, type Directory, type NodeRoute } from "../../../shared/directory";
import { dialTcp } from "./dial";
import { frame, readFrame } from "./frames";
import { NativeRelay, channelKeys, type SealKeys } from "./native-relay";

export type CloudProxyOptions = Readonly<{
  node: string;
  domain: string;
  directory: Directory;
  /** Certificate and key the edges verify against the fleet CA. */
  key: Buffer;
  cert: Buffer;
  transport: ChannelTransport;
  /** Fleet secret the domain tokens are derived from. */
  secret: string;
  listen: { host: string; port: number };
  /** How long an open waits for a spare of the target domain's active gateway (failover window). */
  openTimeoutMs: number;
  dialTimeoutMs: number;
  clock: Clock;
  log: Logger;
  /** `proxy`: the role is held (keep spares, listeners, channels); `acting`: its lease is valid (open channels). */
  role: () => { proxy: boolean; acting: boolean; term: number };
}>;

type Spare = { socket: Socket; node: string; domain: string; retire: () => void };
/** What a waiting open gets: a spare, "changed" (the domain's active gateway changed: look again), or null
 * (time is up). */
type Waited = Spare | "changed" | null;
type Waiter = { domain: string; nodes: readonly string[]; resolve: (s: Waited) => void };

/** Who carries a channel's bytes: the native relay, joined to a client socket (`attach`), or JavaScript reading
 * and writing the channel socket itself (`track`: the forward proxy's HTTP agent). */
export type ChannelUse = "relay" | "stream";

/** An open channel; `keys` when its bytes travel as sealed frames (a `relay` channel over TLS). */
export type Channel = {
  socket: Socket;
  route: NodeRoute;
  id: string;
  port: number;
  via: string;
  keys: SealKeys | null;
};

/** Bytes for either end of a channel before the relay reads anything: a request head already read from the
 * client, the proxy's own response line to it. */
export type Preload = Readonly<{ toTarget?: Buffer; toClient?: Buffer }>;

export class CloudProxy {
  private server: net.Server | null = null;
  /** domain -> spares, oldest first. */
  private readonly pools = new Map<string, Spare[]>();
  private readonly waiters = new Set<Waiter>();
  readonly channels = new ChannelTable("cloud");
  private unwatch: (() => void) | null = null;

  constructor(private readonly opts: CloudProxyOptions) {}

  async start(): Promise<void> {
    const { opts } = this;
    const accept = (s: Socket) => void this.accept(s);
    if (opts.transport === "tcp") {
      this.server = net.createServer({ allowHalfOpen: true }, accept);
    } else {
      this.server = tls.createServer({ key: opts.key, cert: opts.cert, allowHalfOpen: true }, accept);
      this.server.on("tlsClientError", () => counters.inc("raven_proxy_tls_errors_total"));
    }
    await new Promise<void>((resolve, reject) => {
      this.server!.once("error", reject);
      this.server!.listen(opts.listen.port, opts.listen.host, () => resolve());
    });
    this.unwatch = opts.directory.onChange(() => this.prune());
  }

  get address(): { host: string; port: number } {
    const a = this.server?.address();
    return typeof a === "object" && a ? { host: a.address, port: a.port } : { host: "", port: 0 };
  }

  stop(): void {
    this.unwatch?.();
    this.server?.close();
    this.dropWhere(() => true);
    this.channels.closeWhere(() => true);
    for (const w of this.waiters) w.resolve(null);
    this.waiters.clear();
  }

  /**
   * Closes channels through gateways that are no longer active for their domain, and spares of gateways that
   * are no longer candidates of it; everything when we are not active. A standby edge's spares stay: when it
   * is elected they are in the pool already, and a failover costs no dial (which spare may carry a channel is
   * decided when one is taken: an active's only, and the edge refuses any open outside its term and lease).
   */
  prune(): void {
    const role = this.opts.role();
    const stillActive = (domain: string, via: string): boolean => {
      if (!role.proxy) return false;
      if (domain === this.opts.domain) return true;
      return this.activeOf(domain).includes(via);
    };
    const stillCandidate = (domain: string, via: string): boolean =>
      stillActive(domain, via) || (role.proxy && this.opts.directory.proxyCandidatesOf(domain).includes(via));
    this.dropWhere((s) => !stillCandidate(s.domain, s.node));
    const n = this.channels.closeWhere((c) => !stillActive(c.domain, c.via));
    if (n > 0) this.opts.log.info({ channels: n }, "closed channels through gateways that are no longer active");
    // Opens waiting for a failed-over domain's spares wait for the new active's instead, without losing time.
    for (const w of [...this.waiters]) {
      const now = this.activeOf(w.domain);
      if (now.length !== w.nodes.length || now.some((x) => !w.nodes.includes(x))) w.resolve("changed");
    }
  }

  /** Opens a channel to node:port, or throws a ChannelError that says why not. */
  async openChannel(node: string, port: number, use: ChannelUse = "relay"): Promise<Channel> {
    const { opts } = this;
    if (isIP(node) || node.startsWith("[")) {
      throw new ChannelError(
        "BAD_TARGET",
        `IP literal targets are refused (${node}): ask for a node by name; IPs are ambiguous across domains`,
      );
    }
    if (!isObjectName(node)) throw new ChannelError("BAD_TARGET", `${JSON.stringify(node)} is not a node name`);
    const role = opts.role();
    if (!role.acting) {
      const why = role.proxy ? "its lease lapsed; it is not acting as" : "it is not";
      throw new ChannelError("NO_GATEWAY", `${opts.node} refuses channels: ${why} the active cloud proxy gateway`);
    }
    const route = opts.directory.route(node);
    if (!route) throw new ChannelError("NOT_FOUND", `unknown node ${node}: no node of that name is registered`);
    const gw = route.gateway;
    if (!gw)
      throw new ChannelError("NO_GATEWAY", `node ${node} (domain ${route.domain}) is not placed in any Gateway yet`);
    const ports = proxyPortsOf(gw.spec);
    if (!ports.includes(port)) {
      throw new ChannelError(
        "FORBIDDEN",
        `port ${port} is not a proxy port of Gateway ${gw.metadata.name} (allowed: ${ports.join(", ")})`,
      );
    }
    const id = newChannelId(opts.node);
    if (route.domain === opts.domain) {
      const socket = await dialTcp(route.internalIP, port, opts.dialTimeoutMs);
      return { socket, route, id, port, via: opts.node, keys: null };
    }
    const deadline = opts.clock.now() + opts.openTimeoutMs;
    for (;;) {
      const actives = this.activeOf(route.domain);
      const term = opts.directory.route(node)?.gateway?.status.term ?? gw.status.term;
      if (actives.length === 0) {
        const problem = gw.status.problem ? `: ${gw.status.problem}` : "";
        throw new ChannelError(
          "NO_GATEWAY",
          `domain ${route.domain} has no active proxy gateway (Gateway ${gw.metadata.name}, term ${term}${problem})`,
        );
      }
      const spare = await this.takeSpare(route.domain, actives, deadline - opts.clock.now());
      if (spare === "changed") continue;
      if (!spare) {
        throw new ChannelError(
          "NO_GATEWAY",
          `no connection from ${route.domain}'s active gateway ${actives.join(", ")} (term ${term}) within ${opts.openTimeoutMs} ms`,
        );
      }
      try {
        const sealed = use === "relay" && opts.transport === "tls";
        const socket = await this.open(spare, { id, node, port, term }, sealed);
        let keys: SealKeys | null = null;
        try {
          if (sealed) keys = channelKeys(socket as tls.TLSSocket, id, "server");
        } catch (err) {
          socket.destroy();
          throw err; // CLOSED: the next spare is tried while time is left
        }
        return { socket, route, id, port, via: spare.node, keys };
      } catch (err) {
        // A stale term means the record moved on while the spare waited, a closed spare that its gateway died
        // (its reset not yet seen): neither is the target's fault, so try the next spare while time is left.
        const retry = err instanceof ChannelError && (err.code === "STALE_TERM" || err.code === "CLOSED");
        if (!retry || opts.clock.now() >= deadline) throw err;
      }
    }
  }

  /** Hands a client socket and an open `relay` channel to the native relay, and tracks it until it ends. */
  attach(client: Socket, ch: Channel, pre: Preload = {}): void {
    const relayed = NativeRelay.get().join(
      client,
      ch.socket,
      { keys: ch.keys ?? undefined, toPeer: pre.toTarget, toPlain: pre.toClient },
      (end) => {
        if ((end.error as ChannelError | undefined)?.code === "PROTOCOL")
          this.opts.log.warn(
            { channel: ch.id, peer: ch.via, err: end.error!.message },
            "channel broken by the edge gateway",
          );
        this.channels.closed(ch.id, end.error, { in: end.bytesToPeer, out: end.bytesToPlain });
      },
    );
    this.channels.add(this.infoOf(ch), relayed.abort, this.opts.clock.now());
  }

  /** Tracks a `stream` channel used directly as a client connection (the forward proxy's keep-alive agent). */
  track(ch: Channel): void {
    const s = ch.socket;
    this.channels.add(this.infoOf(ch), () => s.destroy(), this.opts.clock.now());
    s.once("close", (hadError) =>
      this.channels.closed(ch.id, hadError ? new Error("channel broke") : undefined, {
        in: s.bytesWritten,
        out: s.bytesRead,
      }),
    );
  }

  /** Edge gateways with spares parked here, as peer links ("up" while they have spares). */
  peers(): { peer: string; state: string; spares: number }[] {
    const byNode = new Map<string, number>();
    for (const pool of this.pools.values()) for (const s of pool) byNode.set(s.node, (byNode.get(s.node) ?? 0) + 1);
    return [...byNode].sort().map(([peer, spares]) => ({ peer, state: "up", spares }));
  }

  private infoOf(ch: Channel) {
    return {
      id: ch.id,
      domain: ch.route.domain,
      via: ch.via,
      target: ch.route.node,
      port: ch.port,
      term: ch.route.gateway?.status.term ?? 0,
    };
  }

  private activeOf(domain: string): readonly string[] {
    return this.opts.directory.activeProxyOf(domain);
  }

  private async open(
    spare: Spare,
    req: { id: string; node: string; port: number; term: number },
    sealed: boolean,
  ): Promise<Socket> {
    const { socket } = spare;
    socket.write(frame(sealed ? "chan.sealed" : "chan.open", req));
    let got;
    try {
      got = await readFrame(socket, this.opts.dialTimeoutMs + 1_000, `open ${req.node}:${req.port} via ${spare.node}`);
    } catch (err) {
      socket.destroy();
      throw err;
    }
    if (got.msg.type === "error") {
      socket.destroy();
      const remote = errorFromWire(got.msg.body);
      throw new ChannelError(
        remote.code as ConstructorParameters<typeof ChannelError>[0],
        `${spare.node}: ${remote.message}`,
      );
    }
    if (got.msg.type !== "chan.opened") {
      socket.destroy();
      throw new ChannelError(
        "PROTOCOL",
        `${spare.node} answered ${sealed ? "chan.sealed" : "chan.open"} with ${got.msg.type}`,
      );
    }
    if (got.rest.length > 0) {
      if (sealed) {
        // The edge sends no frame before ours: anything here was read through TLS and cannot be relayed.
        socket.destroy();
        throw new ChannelError(
          "PROTOCOL",
          `${spare.node} sent ${got.rest.length} bytes after chan.opened on a sealed channel`,
        );
      }
      socket.unshift(got.rest);
    }
    return socket;
  }

  private takeSpare(domain: string, actives: readonly string[], waitMs: number): Promise<Waited> {
    const pool = this.pools.get(domain) ?? [];
    const i = pool.findIndex((s) => actives.includes(s.node));
    if (i >= 0) {
      const spare = pool.splice(i, 1)[0]!;
      spare.retire();
      return Promise.resolve(spare);
    }
    if (waitMs <= 0) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = this.opts.clock.setTimeout(() => {
        this.waiters.delete(waiter);
        resolve(null);
      }, waitMs);
      const waiter: Waiter = {
        domain,
        nodes: actives,
        resolve: (s) => {
          this.opts.clock.clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(s);
        },
      };
      this.waiters.add(waiter);
    });
  }

  private async accept(socket: Socket): Promise<void> {
    const { opts } = this;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    socket.on("error", () => socket.destroy());
    let hello;
    try {
      const got = await readFrame(socket, 5_000, "hello from an edge gateway");
      if (got.msg.type !== "chan.hello") throw new ChannelError("PROTOCOL", `expected chan.hello, got ${got.msg.type}`);
      hello = got.msg.body;
    } catch (err) {
      counters.inc("raven_proxy_rejected_peers_total", { reason: "PROTOCOL" });
      opts.log.info({ err: describeError(err) }, "refused a proxy peer");
      return void socket.destroy();
    }
    const refuse = (err: ChannelError) => {
      counters.inc("raven_proxy_rejected_peers_total", { reason: err.code });
      opts.log.warn({ peer: hello.node, domain: hello.domain, err: err.message }, "refused a proxy peer");
      socket.end(frame("error", errorToWire(err)));
    };
    if (!verifyDomainToken(opts.secret, hello.domain, hello.token)) {
      return refuse(new ChannelError("UNAUTHORIZED", `the token does not belong to domain ${hello.domain}`));
    }
    if (!opts.role().proxy)
      return refuse(new ChannelError("STALE_TERM", `${opts.node} is not the active cloud proxy gateway`));
    if (!opts.directory.proxyCandidatesOf(hello.domain).includes(hello.node))
      return refuse(
        new ChannelError("FORBIDDEN", `${hello.node} is not a proxy candidate of domain ${hello.domain}'s Gateway`),
      );
    // An idle spare says nothing until we open it; a close (or stray bytes) drops it from the pool. Taking
    // it from the pool calls `retire`, which removes these listeners.
    const drop = () => this.dropWhere((s) => s === spare);
    const spare: Spare = {
      socket,
      node: hello.node,
      domain: hello.domain,
      retire: () => {
        socket.off("close", drop);
        socket.off("end", drop);
        socket.off("data", drop);
        socket.pause();
      },
    };
    socket.once("close", drop);
    socket.once("end", drop);
    socket.once("data", drop);
    // Flowing while idle, so that a dead gateway's FIN or reset is seen now, not when a request takes the spare.
    socket.resume();
    socket.write(frame("chan.welcome", { node: opts.node }));
    for (const w of this.waiters) {
      if (w.domain === spare.domain && w.nodes.includes(spare.node)) {
        spare.retire();
        return w.resolve(spare);
      }
    }
    const pool = this.pools.get(spare.domain) ?? [];
    pool.push(spare);
    this.pools.set(spare.domain, pool);
  }

  private dropWhere(pred: (s: Spare) => boolean): void {
    for (const [domain, pool] of this.pools) {
      const keep = pool.filter((s) => {
        if (!pred(s)) return true;
        s.socket.destroy();
        return false;
      });
      if (keep.length === 0) this.pools.delete(domain);
      else this.pools.set(domain, keep);
    }
  }
}
