// A gateway candidate's tunnel mode: while it is its domain's active tunnel endpoint, one TunnelActor
// (statecharts/l3-tunnel.ts) per peer domain, and the VPN driver (strongSwan, WireGuard) brought to the
// desired peers computed from the fleet's records (lib/tunnel/facts.ts). Reported on the mesh as
// `gw.tunnel`.
//
// Division of labour: the driver holds the security associations; the actors decide lifecycle from what the
// driver and the latency probes report (STATUS, PROBE) and ask for (re)negotiation (`negotiate`); this
// service moves facts between them. Packets never pass through here.
//
// Guarantees:
// - Fenced by term: an actor adopts a peer only with a term at least as high as the one it holds, and
//   ignores driver status and probes of an older peer gateway. When this gateway stops being active (role
//   lost, lease expired, higher term elsewhere), every peer is removed from the driver at once.
// - The driver is applied level-triggered and one call at a time; requests that arrive meanwhile coalesce.
//   A standby keeps its daemon running with the connections it would have as the active preloaded, none
//   initiated (facts.ts vpnPeersOf standby), so taking over costs one initiation, not a start or a reload.
// - A failed apply (daemon died, missing binary) is reported as the gateway's tunnel error and retried;
//   it never throws out of here.
import { createActor, type Actor } from "xstate";
import { l3TunnelMachine, l3TunnelView, isTunnelUsable, type L3TunnelState } from "../../../statecharts";
import type { Clock, TimerHandle } from "../../../shared/clock";
import type { Directory } from "../../../shared/directory";
import { describeError } from "../../../shared/errors";
import { SerialTask } from "../../../shared/serial";
import type { ActorInspector } from "../../../shared/inspect";
import type { Logger } from "../../../shared/log";
import { counters } from "../../../shared/metrics";
import type { NatsConnection } from "../../../shared/nats";
import { encode, subjects, type L3TunnelReport } from "../../../shared/protocol";
import { tunnelDomains, vpnPeersOf, type PeerPlan } from "../../../lib/tunnel";
import { type VpnDriver, type VpnPeer, type VpnStatus } from "../../../lib/vpn";

/** Round trip through the tunnel to the peer, in ms, or null when it did not answer. */
export type TunnelProbe = (peer: VpnPeer) => Promise<number | null>;

export type TunnelManagerTimings = Readonly<{
  /** First retry after a failed negotiation; doubles up to 10x. */
  retryMs: number;
  negotiateTimeoutMs: number;
  /** How often the driver's live status is read while some tunnel is not up. */
  statusMs: number;
  /** How often it is read while every tunnel is up: SA loss is rare, and a peer gateway that moves arrives by its record. */
  stableStatusMs: number;
  probeMs: number;
  probeFailLimit: number;
  reportMs: number;
}>;

export const defaultTunnelTimings: TunnelManagerTimings = {
  retryMs: 100,
  negotiateTimeoutMs: 5_000,
  statusMs: 250,
  stableStatusMs: 2_000,
  probeMs: 2_000,
  probeFailLimit: 3,
  reportMs: 1_000,
};

export type TunnelManagerOptions = Readonly<{
  nc: NatsConnection;
  node: string;
  domain: string;
  directory: Pick<Directory, "gateways" | "nodeRecords" | "onChange">;
  driver: VpnDriver;
  /** Latency through the tunnel; without one, latency is not reported and no probe can degrade a tunnel. */
  probe?: TunnelProbe;
  clock: Clock;
  log: Logger;
  timings?: Partial<TunnelManagerTimings>;
  inspector?: ActorInspector;
}>;

type Peer = { actor: Actor<typeof l3TunnelMachine>; plan: PeerPlan };

export class TunnelManager {
  private readonly timings: TunnelManagerTimings;
  private readonly peers = new Map<string, Peer>();
  private active = false;
  private term = 0;
  private readonly applyTask = new SerialTask(() => this.reconcile());
  private stopped = false;
  private lastKey: string | null = null;
  /** The desired state last applied successfully (unlike lastKey, not cleared by a forced re-apply). */
  private appliedKey: string | null = null;
  private lastError: string | null = null;
  private readonly timers: TimerHandle[] = [];
  private retry: TimerHandle | null = null;
  private polling = false;
  private pollTimer: TimerHandle | null = null;
  private pollAt = Infinity;
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly opts: TunnelManagerOptions) {
    this.timings = { ...defaultTunnelTimings, ...opts.timings };
  }

  start(): void {
    const { clock } = this.opts;
    this.unsubscribe = this.opts.directory.onChange(() => this.kick());
    this.pollWithin(this.timings.statusMs);
    this.timers.push(clock.setInterval(() => void this.probeAll(), this.timings.probeMs));
    this.timers.push(clock.setInterval(() => this.report(), this.timings.reportMs));
    this.kick();
  }

  /** The gateway's acting role for tunnel endpoints (called on every heartbeat and role change). */
  role(active: boolean, term: number): void {
    if (active === this.active && term === this.term) return;
    this.active = active;
    this.term = term;
    this.kick();
    this.report();
  }

  /** Recomputes the desired peers and applies them; `force` re-applies an unchanged state (re-initiates). */
  kick(force = false): void {
    if (this.stopped) return;
    if (force) this.lastKey = null;
    this.applyTask.request();
  }

  /** The active's peers (with TunnelActors), or what a standby preloads (no actors, nothing initiated). */
  private plans(): PeerPlan[] {
    const domains = tunnelDomains(this.opts.directory.gateways(), this.opts.directory.nodeRecords());
    return vpnPeersOf(domains, { domain: this.opts.domain, node: this.opts.node }, { standby: !this.active });
  }

  private async reconcile(): Promise<void> {
    const { clock, log, driver } = this.opts;
    const plans = this.plans();
    this.syncActors(this.active ? plans : []);
    const desired = { peers: plans.map((p) => p.peer) };
    const key = JSON.stringify(desired);
    if (key === this.lastKey) return;
    let status: VpnStatus;
    const t0 = clock.now();
    try {
      status = await driver.apply(desired);
      // A change of peers is news; a forced re-apply (a TunnelActor renegotiating) is routine.
      const level = key === this.appliedKey ? "debug" : "info";
      log[level](
        {
          ms: Math.round(clock.now() - t0),
          peers: desired.peers.map((p) => `${p.name}@${p.remoteAddr}`),
          states: status.peers.map((p) => `${p.name}:${p.state}`),
        },
        "tunnel driver applied",
      );
      this.appliedKey = key;
    } catch (err) {
      const message = describeError(err);
      if (message !== this.lastError) log.error({ err: message }, "tunnel driver apply failed; retrying");
      this.lastError = message;
      counters.inc("raven_tunnel_apply_errors_total");
      if (this.retry === null && !this.stopped) {
        this.retry = clock.setTimeout(() => {
          this.retry = null;
          this.kick();
        }, this.timings.retryMs * 10);
      }
      return;
    }
    this.lastKey = key;
    this.lastError = null;
    this.feed(status);
  }

  /** One actor per planned peer domain: new ones start, changed peers get PEER, gone ones close. */
  private syncActors(plans: readonly PeerPlan[]): void {
    const now = this.opts.clock.now();
    const wanted = new Set(plans.map((p) => p.domain));
    for (const [domain, p] of this.peers) {
      if (wanted.has(domain)) continue;
      p.actor.send({ type: "CLOSE" });
      p.actor.stop();
      this.peers.delete(domain);
    }
    for (const plan of plans) {
      let p = this.peers.get(plan.domain);
      if (!p) {
        p = { actor: this.spawn(plan), plan };
        this.peers.set(plan.domain, p);
      }
      p.plan = plan;
      p.actor.send({ type: "PEER", node: plan.node, addr: plan.peer.remoteAddr, term: plan.term, now });
    }
  }

  private spawn(plan: PeerPlan): Actor<typeof l3TunnelMachine> {
    const { driver, clock, log, inspector } = this.opts;
    const t = this.timings;
    const actor = createActor(l3TunnelMachine, {
      clock,
      input: {
        peer: plan.domain,
        driver: driver.name,
        retryMs: t.retryMs,
        negotiateTimeoutMs: t.negotiateTimeoutMs,
        probeFailLimit: t.probeFailLimit,
      },
    });
    inspector?.attach(actor, `tunnel/${this.opts.node}/${plan.domain}`);
    actor.on("tunnelState", (e) => {
      if (e.state !== "up") this.pollWithin(this.timings.statusMs);
      const level = e.state === "up" || e.state === "negotiating" || e.state === "closed" ? "info" : "warn";
      log[level](
        { peer: e.peer, peerNode: e.peerNode, peerTerm: e.peerTerm, state: e.state, error: e.error ?? undefined },
        "tunnel state",
      );
      counters.inc("raven_tunnel_transitions_total", { state: e.state });
      this.report();
    });
    actor.on("negotiate", () => this.kick(true));
    actor.on("staleTerm", () => counters.inc("raven_stale_tunnel_terms_total"));
    actor.subscribe({
      error: (err) => log.error({ peer: plan.domain, err: describeError(err) }, "tunnel actor failed"),
    });
    actor.start();
    return actor;
  }

  private feed(status: VpnStatus): void {
    const now = this.opts.clock.now();
    for (const s of status.peers) {
      const p = [...this.peers.values()].find((x) => x.plan.peer.name === s.name);
      if (!p) continue;
      p.actor.send({
        type: "STATUS",
        peerTerm: p.plan.term,
        state: s.state,
        saId: s.saId,
        bytesIn: s.bytesIn,
        bytesOut: s.bytesOut,
        error: s.lastError,
        now,
      });
    }
    for (const p of this.peers.values()) p.actor.send({ type: "TICK", now });
  }

  /**
   * The driver's status is read (and the TunnelActors ticked: their deadlines and retries are checked on
   * TICK) every statusMs while some tunnel is on its way, every stableStatusMs once all are up or there are
   * none: an idle gateway is not woken four times a second for nothing. A tunnel entering any state but
   * `up` brings the next read forward.
   */
  private pollWithin(ms: number): void {
    const { clock } = this.opts;
    const at = clock.now() + ms;
    if (this.stopped || (this.pollTimer && this.pollAt <= at)) return;
    if (this.pollTimer) clock.clearTimeout(this.pollTimer);
    this.pollAt = at;
    this.pollTimer = clock.setTimeout(() => {
      this.pollTimer = null;
      this.pollAt = Infinity;
      // The next one is armed before this read starts: a read that hangs (a daemon slow to answer) must not
      // stop the ticks that run the TunnelActors' deadlines.
      this.pollWithin(this.settled() ? this.timings.stableStatusMs : this.timings.statusMs);
      void this.poll().finally(() => {
        if (!this.settled()) this.pollWithin(this.timings.statusMs);
      });
    }, ms);
  }

  /** Every tunnel up (or none wanted). */
  private settled(): boolean {
    return [...this.peers.values()].every((p) => p.actor.getSnapshot().value === "up");
  }

  private async poll(): Promise<void> {
    const now = this.opts.clock.now();
    if (this.polling || this.peers.size === 0 || this.stopped) {
      for (const p of this.peers.values()) p.actor.send({ type: "TICK", now });
      return;
    }
    this.polling = true;
    try {
      this.feed(await this.opts.driver.status());
    } catch (err) {
      this.lastError = describeError(err);
    } finally {
      this.polling = false;
    }
  }

  private async probeAll(): Promise<void> {
    const { probe } = this.opts;
    if (!probe) return;
    await Promise.all(
      [...this.peers.values()].map(async (p) => {
        const state = p.actor.getSnapshot().value as L3TunnelState;
        if (!isTunnelUsable(state)) return;
        const term = p.plan.term;
        const rttMs = await probe(p.plan.peer).catch(() => null);
        p.actor.send({ type: "PROBE", peerTerm: term, ok: rttMs !== null, rttMs, now: this.opts.clock.now() });
      }),
    );
  }

  /** What `gw.tunnel` says about each peer, by peer domain. */
  tunnels(): L3TunnelReport[] {
    const peers = [...this.peers.values()].sort((a, b) => (a.plan.domain < b.plan.domain ? -1 : 1));
    return peers.map((p) => {
      const v = l3TunnelView(p.actor.getSnapshot());
      return {
        peer: v.peer,
        peerNode: v.peerNode,
        peerTerm: v.peerTerm,
        state: v.state,
        latencyUs: v.latencyMs === null ? null : Math.round(v.latencyMs * 1000),
        bytesIn: v.bytesIn,
        bytesOut: v.bytesOut,
        error: v.lastError,
        since: Math.max(0, Math.round(this.opts.clock.wallMs() - (this.opts.clock.now() - v.since))),
      };
    });
  }

  private report(): void {
    const { nc, node, domain, driver, clock } = this.opts;
    if (this.stopped) return;
    const body = {
      node,
      domain,
      driver: driver.name,
      term: this.term,
      active: this.active,
      tunnels: this.tunnels(),
      error: this.lastError,
      sentAt: clock.wallMs(),
    };
    try {
      nc.publish(subjects.gatewayTunnel(domain, node), encode("gw.tunnel", body));
    } catch {
      counters.inc("raven_publish_errors_total");
    }
  }

  /** Stops the actors; `cleanup` also stops the daemon and removes what the driver made. */
  async stop(cleanup = true): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    for (const t of this.timers) this.opts.clock.clearInterval(t);
    if (this.retry) this.opts.clock.clearTimeout(this.retry);
    if (this.pollTimer) this.opts.clock.clearTimeout(this.pollTimer);
    for (const p of this.peers.values()) p.actor.stop();
    this.peers.clear();
    await this.applyTask.stop();
    if (cleanup)
      await this.opts.driver
        .cleanup()
        .catch((err) => this.opts.log.warn({ err: describeError(err) }, "tunnel driver cleanup failed"));
  }
}
