// EdgeProxy: the edge side of proxy mode. Every proxy candidate of a Gateway, active or standby, keeps
// `spares` TLS connections dialed out to every active cloud gateway (edges need no inbound port; a standby's
// wait in the cloud's pool, unused, so that a failover costs no dial),
// one ProxyLinkActor per cloud peer deciding when to dial and when to back off. The cloud turns a spare into a
// channel with `chan.open`; the edge checks the term (fencing: an open carrying a term older than ours is
// refused), that the target is a node of *this* domain and the port one of the Gateway's proxy ports, dials
// the node's InternalIP here — inside the domain, where colliding IPs are unambiguous — answers `chan.opened`
// and hands the two sockets to the native relay (native-relay.ts): for `chan.sealed` the bytes travel as sealed
// frames outside TLS, so this side stops reading TLS as it answers and speaks only after the cloud's first
// frame. A plain `chan.open` over TLS (the cloud's forward proxy reading the channel itself) is spliced here in
// JavaScript. When the role goes (lease lost, term moved on, draining), every channel is closed at once.
import net from "node:net";
import tls from "node:tls";
import { createActor, type Actor } from "xstate";
import { proxyLinkMachine, wantsDials, type ProxyLinkState } from "../../../statecharts";
import type { Clock } from "../../../shared/clock";
import { ChannelError, describeError, errorToWire } from "../../../shared/errors";
import { isStaleTerm } from "../../../shared/fencing";
import type { Logger } from "../../../shared/log";
import { counters } from "../../../shared/metrics";
import type { ChanOpen } from "../../../shared/protocol";
import { dialTcp } from "./dial";
import { ChannelTable, type ChannelTransport } from "./channels";
import { proxyPortsOf, type Directory, type ProxyPeer } from "../../../shared/directory";
import { frame, readFrame } from "./frames";
import { NativeRelay, channelKeys, stopReading } from "./native-relay";
import { splice } from "./splice";

export type EdgeProxyOptions = Readonly<{
  node: string;
  domain: string;
  gateway: string;
  directory: Directory;
  /** The fleet CA that signed the cloud gateways' certificate (pinned). */
  ca: Buffer;
  /** "tls" (default), or "tcp" for an underlay that is already private or encrypted (see ProxyConfig). */
  transport: ChannelTransport;
  /** This domain's token (HMAC of the fleet secret), proving to the cloud which domain dials. */
  token: string;
  /** Spare connections kept per cloud peer. */
  spares: number;
  dialTimeoutMs: number;
  retryMs: number;
  clock: Clock;
  log: Logger;
  /** Whether this candidate may serve channels right now, and under which term. */
  /** `proxy`: the role is held (keep spares, listeners, channels); `acting`: its lease is valid (open channels). */
  role: () => { proxy: boolean; acting: boolean; term: number };
}>;

type Peer = {
  key: string;
  info: ProxyPeer;
  actor: Actor<typeof proxyLinkMachine>;
  spares: Set<net.Socket>;
  dialing: number;
  /** When the cloud took each spare in the last BURST_WINDOW_MS (oldest first): how fast it opens right now. */
  taken: number[];
  /** The last TLS session ticket from this peer: resuming skips the certificate work of a full handshake. */
  session: Buffer | undefined;
};

/**
 * Under a burst of opens (metrics-server asking every node at once, a Prometheus with many targets due
 * together) the pool grows: beyond `spares`, one more spare for each taken in the last BURST_WINDOW_MS, up to
 * BURST_SPARES more, dialled in parallel. With a fixed pool, refills ran `spares` handshakes at a time and a
 * burst of 1,000 opens waited out the cloud's open timeout (bench:scrape: 7-11 % of a burst answered 503).
 * The surplus is not closed: it stays parked in the cloud and serves the next opens, so the pool shrinks
 * back to `spares` as it is used.
 */
const BURST_SPARES = 32;
const BURST_WINDOW_MS = 1_000;

export const PROXY_SERVERNAME = "raven-proxy";

export class EdgeProxy {
  private readonly peers = new Map<string, Peer>();
  readonly channels = new ChannelTable("edge");
  private stopped = false;
  /** Built once: given `ca` instead, tls.connect builds a fresh context (an OpenSSL SSL_CTX, the CA parsed
   * again) for every dial, which cost ~15% of the edge's CPU per channel and as much in channels/s. */
  private readonly tlsContext: tls.SecureContext;

  constructor(private readonly opts: EdgeProxyOptions) {
    this.tlsContext = tls.createSecureContext({ ca: opts.ca });
  }

  /** Level-triggered: reconciles peers and spares with the role and the directory. Cheap; call often. */
  update(): void {
    if (this.stopped) return;
    const role = this.opts.role();
    // Standby or active, a proxy candidate of its Gateway keeps its spares: elected, it serves at once, with no
    // dial in between. A node that is no longer a candidate keeps none (the cloud would only drop them).
    const candidate = this.opts.directory.proxyCandidatesOf(this.opts.domain).includes(this.opts.node);
    const wanted = candidate ? this.opts.directory.cloudPeers() : [];
    const wantedKeys = new Set(wanted.map(peerKey));
    for (const [key, peer] of this.peers)
      if (!wantedKeys.has(key)) this.dropPeer(peer, candidate ? "peer no longer active" : "not a proxy candidate");
    if (!role.proxy) {
      const n = this.channels.closeWhere(() => true);
      if (n > 0) this.opts.log.info({ channels: n }, "closed channels: this gateway is no longer active");
    }
    const now = this.opts.clock.now();
    for (const info of wanted) {
      const key = peerKey(info);
      let peer = this.peers.get(key);
      if (!peer) peer = this.addPeer(key, info);
      peer.actor.send({ type: "TICK", now });
      const state = peer.actor.getSnapshot().value as ProxyLinkState;
      if (!wantsDials(state)) continue;
      while (peer.spares.size + peer.dialing < this.wanted(peer, now)) this.dial(peer);
    }
  }

  links(): { peer: string; state: ProxyLinkState; spares: number }[] {
    return [...this.peers.values()].map((p) => ({
      peer: p.info.node,
      state: p.actor.getSnapshot().value as ProxyLinkState,
      spares: p.spares.size,
    }));
  }

  stop(): void {
    this.stopped = true;
    for (const peer of this.peers.values()) this.dropPeer(peer, "stopping");
    this.channels.closeWhere(() => true);
  }

  private addPeer(key: string, info: ProxyPeer): Peer {
    const actor = createActor(proxyLinkMachine, { input: { peer: info.node, retryMs: this.opts.retryMs } });
    // connecting <-> up flips with every spare used under load: debug; the states that mean trouble: info.
    actor.on("linkState", (e) => {
      const level = e.state === "up" || e.state === "connecting" ? "debug" : "info";
      this.opts.log[level]({ peer: e.peer, state: e.state, err: e.error ?? undefined }, "proxy link");
    });
    actor.subscribe({
      error: (err) => this.opts.log.error({ err: describeError(err), peer: info.node }, "proxy link statechart failed"),
    });
    actor.start();
    const peer: Peer = { key, info, actor, spares: new Set(), dialing: 0, taken: [], session: undefined };
    this.peers.set(key, peer);
    return peer;
  }

  private dropPeer(peer: Peer, why: string): void {
    this.peers.delete(peer.key);
    peer.actor.send({ type: "CLOSE" });
    peer.actor.stop();
    for (const s of peer.spares) s.destroy();
    peer.spares.clear();
    this.opts.log.debug({ peer: peer.info.node, why }, "dropped proxy peer");
  }

  /** How many spares (idle and being dialled) a peer should have now: `spares`, plus the burst's. */
  private wanted(peer: Peer, now: number): number {
    while (peer.taken.length > 0 && peer.taken[0]! < now - BURST_WINDOW_MS) peer.taken.shift();
    return this.opts.spares + Math.min(BURST_SPARES, peer.taken.length);
  }

  private live(peer: Peer): boolean {
    return this.peers.get(peer.key) === peer;
  }

  private dial(peer: Peer): void {
    const { opts } = this;
    peer.dialing++;
    let settled = false;
    const target = { host: peer.info.host, port: peer.info.port, allowHalfOpen: true };
    // allowHalfOpen is honoured by tls.connect (it builds the TLSSocket with it) but missing from its types.
    const socket =
      opts.transport === "tcp"
        ? net.connect(target)
        : tls.connect({
            ...target,
            secureContext: this.tlsContext,
            servername: PROXY_SERVERNAME,
            ...(peer.session ? { session: peer.session } : {}),
          } as tls.ConnectionOptions);
    socket.once("session", (session: Buffer) => (peer.session = session));
    const ready = opts.transport === "tcp" ? "connect" : "secureConnect";
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    /** Ends the dial once: with an error (the ProxyLinkActor hears it) or, without one, as a welcomed spare. */
    const settle = (err?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      peer.dialing--;
      if (!err) return;
      socket.destroy();
      if (!this.live(peer)) return;
      counters.inc("raven_proxy_dial_failures_total");
      peer.actor.send({ type: "DIAL_FAILED", error: describeError(err), now: opts.clock.now() });
    };
    const timer = setTimeout(
      () =>
        settle(
          new ChannelError(
            "TIMEOUT",
            `no welcome from ${peer.info.node} at ${peer.info.host}:${peer.info.port} within ${opts.dialTimeoutMs} ms`,
          ),
        ),
      opts.dialTimeoutMs,
    );
    socket.on("error", settle); // after the welcome, later errors belong to awaitOpen / splice; settle ignores them
    socket.once(ready, async () => {
      socket.write(
        frame("chan.hello", {
          domain: opts.domain,
          node: opts.node,
          gateway: opts.gateway,
          term: opts.role().term,
          token: opts.token,
        }),
      );
      try {
        const { msg, rest } = await readFrame(socket, opts.dialTimeoutMs, `hello to ${peer.info.node}`);
        if (msg.type === "error")
          throw new ChannelError("UNAUTHORIZED", `${peer.info.node} refused this gateway: ${msg.body.message}`);
        if (msg.type !== "chan.welcome")
          throw new ChannelError("PROTOCOL", `${peer.info.node} answered the hello with ${msg.type}`);
        // A cloud with opens waiting sends chan.open right behind the welcome, often in the same segment.
        if (rest.length > 0) socket.unshift(rest);
      } catch (err) {
        return settle(err);
      }
      if (settled) return; // timed out meanwhile
      settle();
      if (!this.live(peer)) return void socket.destroy();
      peer.spares.add(socket);
      peer.actor.send({ type: "SPARE_UP" });
      void this.awaitOpen(peer, socket);
    });
  }

  /** An idle spare waits for the cloud's `chan.open` or `chan.sealed`; anything else (or a close) retires it. */
  private async awaitOpen(peer: Peer, socket: net.Socket): Promise<void> {
    let open: ChanOpen;
    let rest: Buffer;
    let sealed: boolean;
    try {
      const got = await readFrame(socket, 0, `spare to ${peer.info.node}`);
      if (got.msg.type !== "chan.open" && got.msg.type !== "chan.sealed")
        throw new ChannelError("PROTOCOL", `expected chan.open or chan.sealed, got ${got.msg.type}`);
      open = got.msg.body;
      rest = got.rest;
      sealed = got.msg.type === "chan.sealed";
      if (sealed && this.opts.transport !== "tls")
        throw new ChannelError("PROTOCOL", "chan.sealed on a connection without TLS");
      if (sealed && rest.length > 0)
        throw new ChannelError("PROTOCOL", `${rest.length} bytes after chan.sealed, before chan.opened`);
    } catch {
      socket.destroy();
      if (peer.spares.delete(socket) && this.live(peer)) peer.actor.send({ type: "SPARE_GONE" });
      return;
    }
    if (peer.spares.delete(socket) && this.live(peer)) peer.actor.send({ type: "SPARE_GONE" });
    peer.taken.push(this.opts.clock.now());
    this.update(); // top the pool up at once: the next request should not wait for a handshake
    let target: net.Socket | undefined;
    try {
      target = await this.dialTarget(open);
      // Derived before answering: a connection the cloud has reset meanwhile fails here, not after chan.opened.
      const keys = sealed ? channelKeys(socket as tls.TLSSocket, open.id, "client") : undefined;
      socket.write(frame("chan.opened", { id: open.id }));
      const info = {
        id: open.id,
        domain: this.opts.domain,
        via: this.opts.node,
        target: open.node,
        port: open.port,
        term: open.term,
      };
      const now = this.opts.clock.now();
      if (sealed || this.opts.transport === "tcp") {
        // Sealed: TLS ends with chan.opened; stop reading it before the event loop can, the cloud's frames follow.
        if (sealed) stopReading(socket);
        const relayed = NativeRelay.get().join(target, socket, { keys, gated: sealed, toPlain: rest }, (end) => {
          if ((end.error as ChannelError | undefined)?.code === "PROTOCOL")
            this.opts.log.warn(
              { channel: open.id, peer: peer.info.node, err: end.error!.message },
              "channel broken by the cloud gateway",
            );
          this.channels.closed(open.id, end.error, { in: end.bytesToPlain, out: end.bytesToPeer });
        });
        return void this.channels.add(info, relayed.abort, now);
      }
      const t = target;
      if (rest.length > 0) t.write(rest);
      this.channels.add(info, () => (socket.destroy(), t.destroy()), now);
      splice(socket, t, (err) =>
        this.channels.closed(open.id, err, { in: socket.bytesRead, out: socket.bytesWritten }),
      );
    } catch (err) {
      target?.destroy();
      const wire = errorToWire(err);
      counters.inc("raven_channel_errors_total", { side: "edge", reason: wire.code });
      this.opts.log.info(
        { target: `${open.node}:${open.port}`, code: wire.code, err: wire.message },
        "channel refused",
      );
      socket.end(frame("error", wire));
    }
  }

  /** Fencing and authorization of an open, then the dial inside this domain. */
  private dialTarget(open: ChanOpen): Promise<net.Socket> {
    const { opts } = this;
    const role = opts.role();
    if (!role.acting) {
      const why = role.proxy ? "its lease lapsed; it is not acting as" : "it is not";
      return Promise.reject(
        new ChannelError(
          "STALE_TERM",
          `${opts.node} refuses channels: ${why} the active proxy gateway of ${opts.domain}`,
        ),
      );
    }
    if (isStaleTerm(open.term, role.term)) {
      return Promise.reject(
        new ChannelError("STALE_TERM", `channel for term ${open.term} refused: ${opts.domain} is at term ${role.term}`),
      );
    }
    const route = opts.directory.route(open.node);
    if (!route || route.domain !== opts.domain) {
      return Promise.reject(new ChannelError("NOT_FOUND", `node ${open.node} is not a node of domain ${opts.domain}`));
    }
    // Whether this gateway is active comes from its statechart (the coordinator's assignment, checked above);
    // the record in the Directory may lag it by a watch round trip during a failover, so it only supplies
    // the ports here.
    const gw = route.gateway;
    if (!gw) return Promise.reject(new ChannelError("NOT_FOUND", `node ${open.node} is not placed in a Gateway yet`));
    const ports = proxyPortsOf(gw.spec);
    if (!ports.includes(open.port)) {
      return Promise.reject(
        new ChannelError(
          "FORBIDDEN",
          `port ${open.port} is not a proxy port of Gateway ${gw.metadata.name} (allowed: ${ports.join(", ")})`,
        ),
      );
    }
    return dialTcp(route.internalIP, open.port, opts.dialTimeoutMs);
  }
}

const peerKey = (p: ProxyPeer) => `${p.node}@${p.host}:${p.port}`;
