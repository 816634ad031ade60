// The coordinator process's wiring: NATS subscriptions (registrations, heartbeats, status requests), the
// lease, and the Coordinator statechart, over three parts with one job each: the HealthTracker (health.ts,
// the heartbeat hot path), the Sweeper (sweeper.ts, failure detection over time and load) and the
// DomainPool (domain-pool.ts, the DomainActors and what they decide). The Inventory keeps the KV in view.
//
// Both replicas watch the KV, so a standby that wins the lease has the whole inventory at once. Heartbeats,
// the fleet's largest stream, only the active follows, and a standby whose lease holder looks gone or
// announced its release (the machine's standby.following): it wakes early enough to take over from a warm
// view (no cold re-election) and otherwise costs nothing for them. Only the lease holder replies,
// acknowledges heartbeats, publishes assignments and writes records; every one of those checks
// `lease.valid()` at the moment it acts.
//
// Acknowledgements are the gateways' leases: which heartbeat earns one is shared/fencing.ts's ackDecision
// (healthy, named in its unit's record, the record settled), so a candidate about to be replaced never gets
// its lease extended, and nothing is acknowledged before this coordinator's DomainActor has written the
// record once (a write of a deposed coordinator still in flight then fails its compare-and-swap instead of
// landing behind an acknowledgement based on an older record).
//
// Just over 400 lines: the wiring and the message handlers, which share the lease check and the counters;
// the work is in health.ts, sweeper.ts and domain-pool.ts.
import { createActor, fromCallback, fromPromise, type Actor } from "xstate";
import type { Subscription } from "@nats-io/transport-node";
import { coordinatorMachine } from "../../statecharts";
import { sleep, type Clock, type TimerHandle } from "../../shared/clock";
import type { Timings } from "../../shared/config";
import { domainOf, domainProblem } from "../../shared/domains";
import { InvalidMessageError, describeError, errorToWire } from "../../shared/errors";
import { AckDecision } from "../../shared/fencing";
import type { ActorInspector } from "../../shared/inspect";
import type { Logger } from "../../shared/log";
import { counters } from "../../shared/metrics";
import type { HubBuckets, NatsConnection } from "../../shared/nats";
import {
  REJECTED_COUNTER,
  encode,
  subjectMatches,
  subjects,
  tryDecode,
  type MessageBody,
  type MessageType,
  type StatusReply,
} from "../../shared/protocol";
import type { KubeClient } from "../../lib/kube";
import { DomainPool } from "./domain-pool";
import { HealthTracker } from "./health";
import { Inventory } from "./inventory";
import { KubeSync } from "./kube";
import { CoordinatorLease } from "./lease";
import { buildStatus } from "./status";
import { Sweeper } from "./sweeper";

export type CoordinatorOptions = Readonly<{
  nc: NatsConnection;
  buckets: HubBuckets;
  id: string;
  timings: Timings;
  clock: Clock;
  log: Logger;
  /** A statechart failed: the process can no longer be trusted to decide; the entrypoint exits. */
  onFatal: (err: unknown) => void;
  /** Inspection for `raven ui`: the coordinator statechart as itself, each DomainActor as domain/<unit name>. */
  inspector?: ActorInspector;
  /** Kubernetes as the source of truth (kube/kube-sync.ts); without it, the KV records are. */
  kube?: Readonly<{ client: KubeClient; proxyAddress?: string; resyncMs?: number }>;
}>;

const MAX_CONCURRENT_REGISTRATIONS = 64;
/** Above this, registrations are shed (the node retries): heartbeats come first. */
const BUSY_FOR_REGISTRATIONS = 0.9;

export class CoordinatorService {
  readonly tracker: HealthTracker;
  readonly inventory: Inventory;
  readonly lease: CoordinatorLease;
  private readonly pool: DomainPool;
  private readonly sweeper: Sweeper;
  readonly kube: KubeSync | null;
  private actor: Actor<typeof coordinatorMachine> | null = null;
  private readonly subs: Subscription[] = [];
  private readonly timers: TimerHandle[] = [];
  /** Gateway and node heartbeat subscriptions, exactly while following them (see the head of this file). */
  private following: Subscription[] | null = null;
  private registrationsInFlight = 0;
  private stopTask: Promise<void> | null = null;

  constructor(private readonly opts: CoordinatorOptions) {
    const { timings, clock, log, buckets, id } = opts;
    this.tracker = new HealthTracker(
      {
        deadAfterMs: timings.gatewayDeadAfterMs,
        heartbeatMs: timings.gatewayHeartbeatMs,
        riseCount: timings.gatewayRiseCount,
        nodeDeadAfterMs: timings.nodeDeadAfterMs,
      },
      clock.now(),
    );
    this.lease = new CoordinatorLease(
      buckets.leases,
      id,
      { leaseMs: timings.coordinatorLeaseMs, renewMs: timings.coordinatorRenewMs, pollMs: timings.coordinatorRenewMs },
      clock,
      log,
    );
    this.inventory = new Inventory(buckets, clock, log, (change) => {
      if (change.partition) {
        this.pool.reconcile(this.matches("active"));
        this.pool.refreshCandidates();
      }
      this.pool.membersChanged(change.gatewaysChanged ? this.inventory.partition.units.keys() : change.membersOf);
      for (const key of change.records) this.pool.recordChanged(key);
      this.kube?.recordsChanged(change.records);
    });
    this.kube = opts.kube
      ? new KubeSync({
          ...opts.kube,
          clock,
          log: log.child({ part: "kube" }),
          gateways: buckets.gateways,
          records: () => this.inventory.gateways,
          nodes: () => this.inventory.nodes,
          putNode: (rec) => this.inventory.putNode(rec),
          isActive: () => this.isActive,
        })
      : null;
    this.pool = new DomainPool({
      ...opts,
      tracker: this.tracker,
      inventory: this.inventory,
      lease: this.lease,
      warm: () => this.matches({ active: "deciding" }),
    });
    this.sweeper = new Sweeper({
      timings,
      clock,
      log,
      tracker: this.tracker,
      beforeSweep: (now) => {
        if (this.matches("active") && !this.lease.valid(now))
          this.actor!.send({ type: "LEASE_LOST", reason: "lease expired before it could be renewed" });
      },
      onSwept: (flipped, now) => {
        if (!this.tracker.warm(now)) return true;
        if (this.matches({ active: "warming" })) {
          this.actor!.send({ type: "WARM" });
          return true;
        }
        return this.pool.healthChanged(flipped, now);
      },
    });
  }

  get isActive(): boolean {
    return this.matches("active") && this.lease.valid();
  }

  private matches(state: "active" | { active: "warming" | "deciding" } | { standby: "following" }): boolean {
    return this.actor?.getSnapshot().matches(state) ?? false;
  }

  async start(): Promise<void> {
    const { clock, timings } = this.opts;
    this.inventory.start();
    this.kube?.start();
    this.subs.push(
      this.listen(subjects.allNodeRegisters(), (m) => this.onRegister(m.subject, m.data, (d) => m.respond(d))),
    );
    this.subs.push(this.listen(subjects.status(), (m) => this.onStatus(m.data, (d) => m.respond(d))));
    this.timers.push(clock.setInterval(() => this.resync(), timings.resyncMs));
    // The campaign takes the lease once it has seen one revision for leaseMs; it wakes once it has seen it for
    // wakeAfterMs, so it has followed heartbeats for leaseMs - wakeAfterMs by then (600 ms with the defaults:
    // every live candidate heard riseCount times, a standby's 300 ms period included). Never before two
    // renewals were missed (a late one is no reason to wake), and at least one poll before the takeover.
    const warmMs = this.warmUpMs();
    const wakeAfterMs = Math.min(
      timings.coordinatorLeaseMs - this.lease.settings.pollMs,
      Math.max(2 * timings.coordinatorRenewMs, timings.coordinatorLeaseMs - warmMs),
    );

    const machine = coordinatorMachine.provide({
      actors: {
        campaign: fromPromise(({ signal }) => {
          // The verdict comes after every poll; the machine hears only its changes (an event is not free).
          let told: boolean | null = null;
          const tell = (stale: boolean) => {
            if (stale === told) return;
            told = stale;
            this.actor?.send({ type: stale ? "HOLDER_STALE" : "HOLDER_FRESH" });
          };
          return this.lease.campaign(signal, tell, wakeAfterMs);
        }),
        hold: fromCallback(({ sendBack }) => {
          let busy = false;
          const renew = clock.setInterval(() => {
            if (busy) return;
            busy = true;
            void this.lease.renew().then((held) => {
              busy = false;
              if (!held) sendBack({ type: "LEASE_LOST", reason: "lease taken by another coordinator" });
            });
          }, timings.coordinatorRenewMs);
          // Its expiry is checked on every sweep (one timer, not two waking the process apart).
          return () => clock.clearInterval(renew);
        }),
      },
      actions: {
        warmed: () => this.pool.announceWarm(),
      },
    });
    this.actor = createActor(machine, { clock, input: { id: this.opts.id, retryMs: timings.retryMs } });
    this.opts.inspector?.attach(this.actor);
    let lastValue: unknown = "standby";
    this.actor.subscribe({
      next: (snap) => {
        const value = typeof snap.value === "string" ? snap.value : Object.keys(snap.value)[0];
        if (value !== lastValue) {
          this.opts.log.info(
            { from: lastValue, to: value, reason: snap.context.lastError ?? undefined },
            "coordinator role",
          );
          lastValue = value;
          if (value === "active") this.kube?.activated();
        }
        this.pool.reconcile(this.matches("active"));
        this.followHeartbeats();
        // A takeover from a standby that followed heartbeats long enough decides at once.
        if (snap.matches({ active: "warming" }) && this.tracker.warm(clock.now())) this.actor!.send({ type: "WARM" });
      },
      error: (err) => {
        this.opts.log.fatal({ err: describeError(err) }, "coordinator statechart failed");
        this.opts.onFatal(err);
      },
    });
    this.actor.start();
  }

  stop(): Promise<void> {
    this.stopTask ??= this.stopOnce();
    return this.stopTask;
  }

  private async stopOnce(): Promise<void> {
    // A standby is told first and given the time to follow heartbeats, so it takes over warm: this
    // coordinator goes on acknowledging meanwhile. Neither KV write may hold the stop up for long: when the
    // whole fleet stops at once (Ctrl-C), the hub may already be gone, and the standby then waits for expiry.
    const { clock, timings } = this.opts;
    const quickly = <T>(p: Promise<T>) =>
      Promise.race([p, sleep(timings.coordinatorRenewMs, clock).then(() => undefined)]);
    if (this.isActive && (await quickly(this.lease.announceRelease()))) await sleep(this.releaseNoticeMs(), clock);
    for (const t of this.timers) clock.clearInterval(t);
    this.actor?.send({ type: "STOP" }); // the subscription stops the DomainActors and the heartbeats
    await quickly(this.lease.release());
    this.inventory.stop();
    for (const s of this.subs) s.unsubscribe();
    // Bounded like the KV writes above: an API server that is gone must not hold the stop up.
    if (this.kube) await quickly(this.kube.stop());
  }

  /** A standby's poll, then what its tracker needs to be warm (warmUpMs). */
  private releaseNoticeMs(): number {
    return this.lease.settings.pollMs + this.warmUpMs();
  }

  /** Heartbeats followed this long, a tracker is warm and every live candidate has risen, standbys included. */
  private warmUpMs(): number {
    const t = this.opts.timings;
    return Math.max(t.gatewayDeadAfterMs, t.gatewayRiseCount * t.gatewayStandbyHeartbeatMs);
  }

  /**
   * Subscribes to gateway and node heartbeats and sweeps them while active or standby.following; otherwise
   * neither. Waking starts from a new tracker's view: health heard before the sleep is stale, and nothing is
   * judged until a whole dead-after window has been heard.
   */
  private followHeartbeats(): void {
    const want = this.matches("active") || this.matches({ standby: "following" });
    if (want === (this.following !== null)) return;
    if (!want) {
      for (const sub of this.following!) sub.unsubscribe();
      this.following = null;
      this.sweeper.stop();
      return;
    }
    this.tracker.restart(this.opts.clock.now());
    // Node heartbeats only feed `raven status` (READY): a node not heard since the wake shows not ready until
    // its next heartbeat, a second at most.
    this.following = [
      this.listen(subjects.allGatewayHeartbeats(), (m) => this.onGatewayHeartbeat(m.subject, m.data)),
      this.listen(subjects.allNodeHeartbeats(), (m) => this.onNodeHeartbeat(m.subject, m.data)),
    ];
    this.sweeper.start();
  }

  // --- messages ----------------------------------------------------------------------------------------------

  /**
   * Handlers are synchronous and run as nats.js parses each socket read. That is deliberate for this
   * firehose (tens of thousands of heartbeats a second): the acknowledgements published while handling one
   * read leave in a single socket write, where an async-iterator loop would yield between messages and
   * flush (one write syscall) per acknowledgement. Nothing here awaits.
   */
  private listen(
    subject: string,
    handle: (m: { subject: string; data: Uint8Array; respond(d: Uint8Array): boolean }) => void,
  ): Subscription {
    return this.opts.nc.subscribe(subject, {
      callback: (err, m) => {
        if (err) return;
        try {
          handle(m);
        } catch (e) {
          counters.inc("raven_handler_errors_total", { subject });
          this.opts.log.error({ err: describeError(e), subject: m.subject }, "message handler failed");
        }
      },
    });
  }

  private decodeOn<T extends MessageType>(subject: string, data: Uint8Array, type: T): MessageBody<T> | undefined {
    const msg = tryDecode(data, (err) =>
      this.opts.log.debug({ subject, err: err.message }, "dropped malformed message"),
    );
    if (!msg) return undefined;
    if (msg.type !== type) {
      counters.inc(REJECTED_COUNTER, { reason: "WRONG_TYPE" });
      return undefined;
    }
    return msg.body as MessageBody<T>;
  }

  /** A body that names another domain or node than its subject is refused (and counted): no spoofing across domains. */
  private fromItsSubject(subject: string, body: { domain: string; node: string }): boolean {
    if (subjectMatches(subject, body.domain, body.node)) return true;
    counters.inc(REJECTED_COUNTER, { reason: "SUBJECT_MISMATCH" });
    return false;
  }

  private onGatewayHeartbeat(subject: string, data: Uint8Array): void {
    const hb = this.decodeOn(subject, data, "gw.hb");
    if (!hb || !this.fromItsSubject(subject, hb)) return;
    const now = this.opts.clock.now();
    const c = this.tracker.gateway(hb, now);
    // A change of health (a recovery, a draining candidate) is told at the next sweep: make it a near one.
    if (this.tracker.flipsPending) this.sweeper.soon();
    counters.inc("raven_gateway_heartbeats_total");
    if (!this.isActive) return;
    const key = this.inventory.candidateUnit.get(hb.node);
    if (!key) {
      counters.inc("raven_heartbeats_unknown_candidate_total");
      return;
    }
    const unit = this.inventory.partition.units.get(key);
    if (unit?.domain !== undefined && unit.domain !== hb.domain) {
      counters.inc(REJECTED_COUNTER, { reason: "WRONG_DOMAIN" });
      return;
    }
    if (hb.gateway !== unit?.name) {
      counters.inc("raven_heartbeats_wrong_gateway_total");
      return;
    }
    const d = this.pool.decideAck(key, hb.node, c.healthy, hb.term, hb.active.length > 0);
    if (!d || d.decision === AckDecision.Ignore) return;
    this.pool.publishAssignment(
      unit,
      d.record,
      d.decision === AckDecision.Ack ? [{ nodeName: hb.node, seq: hb.seq }] : [],
      hb.node,
    );
  }

  private onNodeHeartbeat(subject: string, data: Uint8Array): void {
    const hb = this.decodeOn(subject, data, "node.hb");
    if (!hb || !this.fromItsSubject(subject, hb)) return;
    this.tracker.node(hb, this.opts.clock.now());
  }

  private onRegister(subject: string, data: Uint8Array, respond: (d: Uint8Array) => void): void {
    if (!this.isActive) return; // the standby stays silent; the node retries until the active answers
    const reg = this.decodeOn(subject, data, "node.register");
    const reply = (err: unknown) => respond(encode("error", errorToWire(err)));
    if (!reg) return reply(new InvalidMessageError("malformed node.register"));
    if (!subjectMatches(subject, reg.domain, reg.node))
      return reply(new InvalidMessageError("subject does not match the node and domain in the body"));
    // With Kubernetes, the Node's labels place the node, not the ones its agent was started with.
    const kubeLabels = this.kube?.labelsOf(reg.node);
    if (kubeLabels?.kind === "not-synced") {
      counters.inc("raven_registrations_shed_total");
      return; // the node retries once the informers have listed
    }
    if (kubeLabels?.kind === "unknown")
      return reply(new InvalidMessageError(`node ${reg.node} is not a Node in Kubernetes; it cannot register`));
    const labels = kubeLabels?.kind === "labels" ? { ...kubeLabels.labels } : reg.labels;
    const problem = domainProblem({ name: reg.node, labels });
    if (problem) return reply(new InvalidMessageError(problem));
    if (domainOf({ name: reg.node, labels }) !== reg.domain) {
      counters.inc(REJECTED_COUNTER, { reason: "WRONG_DOMAIN" });
      return reply(
        new InvalidMessageError(
          `node ${reg.node} registers in domain ${reg.domain} but its labels${kubeLabels ? " in Kubernetes" : ""} place it in ${domainOf({ name: reg.node, labels })}`,
        ),
      );
    }
    // Elections first: while DomainActor work is queued (a takeover, a burst of health changes) or the health
    // view is still warming, registrations wait; so does everything when the loop is busy. The node retries
    // with backoff.
    const electionsPending = this.pool.pending > 0 || !this.matches({ active: "deciding" });
    if (
      this.registrationsInFlight >= MAX_CONCURRENT_REGISTRATIONS ||
      electionsPending ||
      this.sweeper.loopBusy > BUSY_FOR_REGISTRATIONS
    ) {
      counters.inc("raven_registrations_shed_total");
      return; // the node retries with backoff
    }
    this.registrationsInFlight++;
    const place = this.inventory.place({ name: reg.node, labels });
    this.inventory
      .putNode({
        name: reg.node,
        labels,
        internalIP: reg.internalIP,
        ...(reg.podCIDR ? { podCIDR: reg.podCIDR } : {}),
        domain: reg.domain,
        registeredAt: this.opts.clock.wallMs(),
      })
      .then(
        () => {
          counters.inc("raven_registrations_total");
          respond(
            encode("node.registered", {
              node: reg.node,
              domain: reg.domain,
              gateway: place.solo ? null : place.name,
              solo: place.solo,
            }),
          );
        },
        (err) => reply(err),
      )
      .catch((err) => this.opts.log.warn({ node: reg.node, err: describeError(err) }, "registration reply failed"))
      .finally(() => this.registrationsInFlight--);
  }

  private onStatus(data: Uint8Array, respond: (d: Uint8Array) => void): void {
    if (!this.isActive) return;
    const msg = tryDecode(data);
    const filter = msg?.type === "status.request" ? msg.body.domain : undefined;
    respond(encode("status.reply", this.status(filter)));
  }

  private resync(): void {
    this.tracker.prune(
      this.opts.clock.now(),
      (node) => this.inventory.candidateUnit.has(node) || this.inventory.nodes.has(node),
    );
    if (this.isActive) this.pool.resync();
  }

  // --- status --------------------------------------------------------------------------------------------------

  status(domainFilter?: string): StatusReply {
    return buildStatus({
      coordinator: this.opts.id,
      activeSince: this.lease.heldSince(),
      units: this.inventory.partition.units.values(),
      record: (key) => this.pool.record(key),
      nodeIP: (name) => this.inventory.nodes.get(name)?.internalIP ?? "",
      tracker: this.tracker,
      termChanges: this.pool.termChanges,
      now: this.opts.clock.now(),
      deadAfterMs: this.opts.timings.gatewayDeadAfterMs,
      ...(domainFilter ? { domainFilter } : {}),
    });
  }
}
