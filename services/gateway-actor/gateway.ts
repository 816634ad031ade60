// GatewayActorService: one gateway candidate on the mesh. Publishes its heartbeat (with what it is acting
// active for, its term and data-path health) every gatewayHeartbeatMs while it holds a role or is named for
// one, every gatewayStandbyHeartbeatMs otherwise (each heartbeat says which), and at once on every role
// change and when an assignment names it while it has no lease (so that the acknowledgement follows at once);
// feeds assignments for its Gateway into the GatewayActor statechart, turning the coordinator's
// acknowledgements into a lease measured on this process's own monotonic clock. The statechart is ticked with
// every heartbeat and once more just past the lease's end (not polled): acting is computed from the clock
// whenever it is asked (actingTypes), so the tick only moves the visible role, and an idle candidate wakes
// once per heartbeat, not once per sweep.
import { createActor, type Actor } from "xstate";
import type { Subscription } from "@nats-io/transport-node";
import { actingTypes, gatewayMachine, heldTypes, type GatewayRole } from "../../statecharts";
import type { Clock, TimerHandle } from "../../shared/clock";
import type { ActorInspector } from "../../shared/inspect";
import type { Timings } from "../../shared/config";
import { describeError } from "../../shared/errors";
import { gatewayLeaseEnd } from "../../shared/fencing";
import type { EndpointType } from "../../shared/gateway";
import type { Logger } from "../../shared/log";
import { counters, reportGatewayRole } from "../../shared/metrics";
import type { NatsConnection } from "../../shared/nats";
import { REJECTED_COUNTER, encode, subjects, tryDecode, type Assignment } from "../../shared/protocol";
import type { ProxyHost } from "./proxy";
import type { TunnelManager } from "./tunnel/manager";

export type DatapathProbe = () => { ok: boolean; detail?: string };

export type GatewayActorOptions = Readonly<{
  nc: NatsConnection;
  node: string;
  domain: string;
  /** The Gateway record this candidate serves (its own node name when solo). */
  gateway: string;
  timings: Timings;
  clock: Clock;
  log: Logger;
  datapath?: DatapathProbe;
  /** Proxy mode (channels, front doors on a cloud candidate) on its own thread; absent: control plane only. */
  proxy?: ProxyHost;
  /** Tunnel mode (VPN peers while active for tunnel endpoints); absent: no tunnel mode. */
  tunnel?: TunnelManager;
  /** The statechart failed: heartbeats must stop (the entrypoint exits), or it could be elected and never act. */
  onFatal: (err: unknown) => void;
  /** Mesh inspection (shared/inspect.ts), for `raven ui`. */
  inspector?: ActorInspector;
}>;

const SENT_RING = 256;

export class GatewayActorService {
  readonly actor: Actor<typeof gatewayMachine>;
  private seq = 0;
  /** Monotonic send time of recent heartbeats, by seq modulo SENT_RING. */
  private readonly sentAt = new Float64Array(SENT_RING);
  private readonly sentSeq = new Int32Array(SENT_RING).fill(-1);
  private readonly subs: Subscription[] = [];
  private leaseTimer: TimerHandle | null = null;
  private heartbeatTimer: TimerHandle | null = null;
  private stopped = false;
  /** The period the last heartbeat announced. */
  private everyMs = 0;
  /** The newest assignment of its term names this candidate (it may not hold the lease yet). */
  private named = false;
  private log: Logger;

  constructor(private readonly opts: GatewayActorOptions) {
    this.log = opts.log;
    this.actor = createActor(gatewayMachine, {
      clock: opts.clock,
      input: {
        node: opts.node,
        drainTimeoutMs: opts.timings.drainTimeoutMs,
        lapseHoldMs: opts.timings.gatewayLapseHoldMs,
      },
    });
    opts.inspector?.attach(this.actor);
  }

  get role(): GatewayRole {
    return this.actor.getSnapshot().value as GatewayRole;
  }

  acting(now = this.opts.clock.now()): EndpointType[] {
    return actingTypes(this.actor.getSnapshot(), now);
  }

  start(): void {
    const { nc, domain } = this.opts;
    this.actor.on("roleChanged", (e) => {
      this.log = this.opts.log.child({ term: e.term });
      this.log.info({ role: e.role, activeTypes: e.activeTypes }, "gateway role");
      if (e.role === "lapsed") counters.inc("raven_gateway_lease_lapses_total");
      reportGatewayRole({ domain: this.opts.domain, gateway: this.opts.gateway, node: this.opts.node }, e.role, e.term);
      this.heartbeat();
    });

    this.actor.on("staleAssignment", () => counters.inc("raven_stale_assignments_total"));
    this.actor.subscribe({
      error: (err) => {
        this.log.fatal({ err: describeError(err) }, "gateway statechart failed");
        this.opts.onFatal(err);
      },
    });
    this.actor.start();

    // The domain's assignments and this candidate's own acknowledgements, handled in the order they were
    // read (callbacks, not two async iterators that could interleave differently).
    const onMessage = (err: Error | null, m: { data: Uint8Array }) => {
      if (err) return;
      try {
        this.onAssignment(m.data);
      } catch (e) {
        counters.inc("raven_handler_errors_total", { subject: "assign" });
        this.log.error({ err: describeError(e) }, "assignment handler failed");
      }
    };
    this.subs.push(nc.subscribe(subjects.assignment(domain), { callback: onMessage }));
    this.subs.push(nc.subscribe(subjects.gatewayAssignment(domain, this.opts.node), { callback: onMessage }));
    if (!this.heartbeatTimer) this.heartbeat();
  }

  /** Fast while it holds a role or is named for one; a plain standby only needs to be known alive. */
  private period(): number {
    const { timings } = this.opts;
    return this.role === "standby" && !this.named ? timings.gatewayStandbyHeartbeatMs : timings.gatewayHeartbeatMs;
  }

  /** Ticks the statechart 1 ms past the lease's end, so that an active whose lease runs out shows it at once. */
  private armLeaseTimer(): void {
    const { clock } = this.opts;
    if (this.leaseTimer) clock.clearTimeout(this.leaseTimer);
    this.leaseTimer = null;
    const left = this.actor.getSnapshot().context.leaseUntil - clock.now();
    if (this.role !== "active" || !(left > 0)) return;
    this.leaseTimer = clock.setTimeout(
      () => {
        this.leaseTimer = null;
        this.actor.send({ type: "TICK", now: clock.now() });
      },
      Math.ceil(left) + 1,
    );
  }

  private onAssignment(data: Uint8Array): void {
    const msg = tryDecode(data, (err) => this.log.debug({ err: err.message }, "dropped malformed assignment"));
    if (!msg) return;
    if (msg.type !== "assignment") {
      counters.inc(REJECTED_COUNTER, { reason: "WRONG_TYPE" });
      return;
    }
    const a: Assignment = msg.body;
    if (a.gateway !== this.opts.gateway || a.domain !== this.opts.domain) return;
    const now = this.opts.clock.now();
    const activeTypes = a.active.filter((e) => e.nodeName === this.opts.node).map((e) => e.type);
    const ack = a.acks.find((x) => x.nodeName === this.opts.node);
    let leaseUntil: number | null = null;
    if (ack && this.sentSeq[ack.seq % SENT_RING] === ack.seq) {
      leaseUntil = gatewayLeaseEnd(this.sentAt[ack.seq % SENT_RING]!, a.leaseMs);
    }
    this.actor.send({ type: "ASSIGNMENT", gateway: a.gateway, term: a.term, activeTypes, leaseUntil, now });
    if (a.term >= this.actor.getSnapshot().context.term) this.named = activeTypes.length > 0;
    this.armLeaseTimer();
    // Named without a lease (a standby elected from its slower heartbeats): one now, acknowledged at once.
    if (this.named && this.role === "standby" && this.everyMs > this.opts.timings.gatewayHeartbeatMs) this.heartbeat();
  }

  /** Publishes a heartbeat now (also called on every role change), and arms the next. */
  heartbeat(): void {
    try {
      this.publishHeartbeat();
    } finally {
      // Also after a throw: a candidate that stops heartbeating is declared dead, however healthy it is.
      const { clock } = this.opts;
      if (this.heartbeatTimer) clock.clearTimeout(this.heartbeatTimer);
      this.heartbeatTimer = this.stopped
        ? null
        : clock.setTimeout(() => this.heartbeat(), this.everyMs || this.period());
    }
  }

  private publishHeartbeat(): void {
    const { clock, nc, node, domain } = this.opts;
    const now = clock.now();
    this.actor.send({ type: "TICK", now });
    const snap = this.actor.getSnapshot();
    // The tunnel driver's health is reported on gw.tunnel, not here: one verdict per candidate would let a
    // broken IPsec daemon take proxy mode down with it.
    const probe = this.opts.datapath?.() ?? this.opts.proxy?.probe() ?? { ok: true };
    const seq = ++this.seq;
    this.sentAt[seq % SENT_RING] = now;
    this.sentSeq[seq % SENT_RING] = seq;
    const active = actingTypes(snap, now);
    this.everyMs = this.period();
    const body = {
      node,
      domain,
      gateway: this.opts.gateway,
      seq,
      sentAt: clock.wallMs(),
      term: snap.context.term,
      active,
      leaseLeftMs: active.length > 0 ? Math.min(60_000, Math.ceil(snap.context.leaseUntil - now)) : 0,
      draining: snap.value === "draining" || snap.value === "stopped",
      datapathOk: probe.ok,
      ...(probe.detail ? { detail: probe.detail } : {}),
      everyMs: this.everyMs,
    };
    // What the candidate keeps set up follows the role it holds, lapsed or not; acting follows the lease (the
    // proxy thread gets how long it may still act and stops on its own when that runs out).
    const held = heldTypes(snap);
    this.opts.proxy?.role(
      held.includes("proxy"),
      snap.context.term,
      active.includes("proxy") ? snap.context.leaseUntil - now : 0,
    );
    this.opts.tunnel?.role(held.includes("tunnel"), snap.context.term);
    try {
      nc.publish(subjects.gatewayHeartbeat(domain, node), encode("gw.hb", body));
    } catch (err) {
      counters.inc("raven_publish_errors_total");
      this.log.warn({ err: describeError(err) }, "heartbeat not published");
    }
  }

  /** Graceful stop: an active drains until a successor is elected (or drainTimeoutMs); a standby stops at once. */
  async drain(): Promise<void> {
    const { clock } = this.opts;
    this.actor.send({ type: "DRAIN", now: clock.now() });
    this.heartbeat();
    await new Promise<void>((resolve) => {
      const check = clock.setInterval(() => {
        if (this.role === "stopped") {
          clock.clearInterval(check);
          resolve();
        }
      }, 10);
    });
    this.heartbeat();
  }

  stop(): void {
    this.stopped = true;
    if (this.leaseTimer) this.opts.clock.clearTimeout(this.leaseTimer);
    if (this.heartbeatTimer) this.opts.clock.clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = null;
    for (const sub of this.subs) sub.unsubscribe();
    this.actor.stop();
  }
}
