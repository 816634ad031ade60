// The coordinator process's wiring: NATS subscriptions (registrations, heartbeats, status requests), the
// HealthTracker, the Inventory, the lease, and the Coordinator statechart with its DomainActors.
//
// Both replicas watch the KV, so a standby that wins the lease has the whole inventory at once. Heartbeats,
// the fleet's largest stream, only the active follows, and a standby whose lease holder looks gone
// (followHeartbeats): it wakes early enough to take over from a warm view (no cold re-election) and
// otherwise costs nothing for them. Only the lease holder replies, acknowledges heartbeats, publishes
// assignments and writes records; every one of those checks `lease.valid()` at the moment it acts.
//
// Acknowledgements are the gateways' leases (the rule and its argument: shared/fencing.ts): a heartbeat from a candidate is acknowledged (an assignment
// naming its seq) only while it is healthy, active in its unit's record, and the unit is not mid-write, so
// a candidate about to be replaced never gets its lease extended; and only after this coordinator's
// DomainActor has written the record once (a write of a deposed coordinator still in flight then fails
// its compare-and-swap instead of landing behind an acknowledgement based on an older record).
import { createActor, fromCallback, fromPromise, type Actor } from "xstate";
import type { ActorInspector } from "../../shared/inspect";
import type { Subscription } from "@nats-io/transport-node";
import { coordinatorMachine, domainMachine, type DomainEvent, type WriteInput } from "../../statecharts";
import { sleep, type Clock, type TimerHandle } from "../../shared/clock";
import type { Timings } from "../../shared/config";
import { domainOf, domainProblem, type Unit } from "../../shared/domains";
import { CasConflictError, InvalidMessageError, NotLeaderError, describeError, errorToWire } from "../../shared/errors";
import { parseGatewayRecord, type Gateway } from "../../shared/gateway";
import { casPut, readJson } from "../../shared/kv";
import type { Logger } from "../../shared/log";
import { counters, metrics } from "../../shared/metrics";
import type { HubBuckets, NatsConnection } from "../../shared/nats";
import {
  REJECTED_COUNTER,
  encode,
  subjectMatches,
  subjects,
  tryDecode,
  type Assignment,
  type MessageBody,
  type MessageType,
  type StatusReply,
} from "../../shared/protocol";
import { ackDecision, AckDecision, handoverMs } from "../../shared/fencing";
import { judgeSilence, STALL_MS } from "./detector";
import { HealthTracker } from "./health";
import { Inventory } from "./inventory";
import { CoordinatorLease } from "./lease";
import { buildStatus } from "./status";
import { TermChangeWindow } from "./term-changes";
import { SlicedQueue } from "./work-queue";
import { podCidrProblems } from "../tunnel/overlap";

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
}>;

type DomainActor = Actor<typeof domainMachine>;

const MAX_CONCURRENT_REGISTRATIONS = 64;
/** Longest stretch of DomainActor work between two turns of the event loop. */
const WORK_SLICE_MS = 10;
/** Above this, registrations are shed (the node retries): heartbeats come first. */
const BUSY_FOR_REGISTRATIONS = 0.9;

export class CoordinatorService {
  readonly tracker: HealthTracker;
  readonly inventory: Inventory;
  readonly lease: CoordinatorLease;
  private actor: Actor<typeof coordinatorMachine> | null = null;
  /** One DomainActor per unit, exactly while this coordinator is active. */
  private readonly domains = new Map<string, DomainActor>();
  private readonly work: SlicedQueue;
  private readonly domainLogic: typeof domainMachine;
  private readonly subs: Subscription[] = [];
  private readonly timers: TimerHandle[] = [];
  private warmAnnounced = false;
  private readonly membersDirty = new Set<string>();
  /** Domain -> why tunnel mode refuses it (overlapping pod CIDRs), from the last membership flush. */
  private tunnelProblems = new Map<string, string>();
  private readonly candidateSignature = new Map<string, string>();
  /** Units whose next load must read KV (their last compare-and-swap lost). */
  private readonly readFresh = new Set<string>();
  /** When a unit's candidate health last changed without a new term yet: the start of its election latency. */
  private readonly healthChangedAt = new Map<string, number>();
  /** Units whose comeback hold (healthEvent) ends at this time: their HEALTH is sent again then. */
  private readonly comebackHolds = new Map<string, number>();
  /** When this coordinator raised each unit's term, for `raven status` (term-changes.ts: a standby taking over starts empty). */
  private readonly termChanges = new TermChangeWindow();
  private lastSweepAt = 0;
  /** Following gateway heartbeats (subscribed, swept): while active, or while the lease holder looks gone. */
  private following: Subscription[] | null = null;
  /** The next sweep: when it is due, and its timer. */
  private sweepTimer: TimerHandle | null = null;
  private sweepDueAt = Infinity;
  /** The campaign's verdict: the lease holder looks gone (or announced its release). */
  private holderStale = false;
  /** Since when a silence across several domains has been waited out (detector.ts), or null. */
  private deferringSince: number | null = null;
  private lastElu = performance.eventLoopUtilization();
  /** Event-loop utilisation, smoothed over about half a second. */
  private loopBusy = 0;
  private registrationsInFlight = 0;
  private stopping = false;
  private stopped = false;

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
    this.work = new SlicedQueue(WORK_SLICE_MS, (err) => log.error({ err: describeError(err) }, "domain actor task failed"));
    this.domainLogic = domainMachine.provide({
      actors: {
        // The inventory's watch already holds every record: a takeover of 1,000 units costs no KV reads.
        // After a lost compare-and-swap the watch may lag behind the winner, so that reload goes to KV.
        loadRecord: fromPromise(async ({ input }) => {
          const warm = this.inventory.gateways.get(input.key);
          if (warm && !this.readFresh.delete(input.key)) return { record: warm.value, revision: warm.revision };
          const v = await readJson(buckets.gateways, input.key, (raw) => parseGatewayRecord(raw, input.key));
          return { record: v.value, revision: v.revision };
        }),
        writeRecord: fromPromise(({ input }) => this.writeRecord(input)),
      },
    });
    this.inventory = new Inventory(buckets, clock, log, (change) => {
      if (change.partition) {
        this.reconcileDomains();
        this.refreshCandidates();
      }
      const dirty = change.gatewaysChanged ? this.inventory.partition.units.keys() : change.membersOf;
      for (const key of dirty) this.membersDirty.add(key);
      for (const key of change.records) {
        this.sendDomain(key, () => {
          const v = this.inventory.gateways.get(key);
          return { type: "RECORD", record: v?.value ?? null, revision: v?.revision ?? 0 };
        });
      }
    });
  }

  get isActive(): boolean {
    return this.actor?.getSnapshot().value === "active" && this.lease.valid();
  }

  async start(): Promise<void> {
    const { nc, clock, timings } = this.opts;
    this.inventory.start();
    this.subs.push(this.listen(subjects.allNodeRegisters(), (m) => this.onRegister(m.subject, m.data, (d) => m.respond(d))));
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
        campaign: fromPromise(({ signal }) =>
          this.lease.campaign(
            signal,
            (stale) => {
              this.holderStale = stale;
              this.followHeartbeats();
            },
            wakeAfterMs,
          ),
        ),
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
    });
    this.actor = createActor(machine, { clock, input: { id: this.opts.id, retryMs: timings.retryMs } });
    this.opts.inspector?.attach(this.actor);
    this.actor.subscribe({
      next: () => {
        this.reconcileDomains();
        this.followHeartbeats();
      },
      error: (err) => {
        this.opts.log.fatal({ err: describeError(err) }, "coordinator statechart failed");
        this.opts.onFatal(err);
      },
    });
    let lastValue: unknown = "standby";
    this.actor.subscribe((snap) => {
      if (snap.value !== lastValue) {
        this.opts.log.info({ from: lastValue, to: snap.value, reason: snap.context.lastError ?? undefined }, "coordinator role");
        lastValue = snap.value;
      }
    });
    this.actor.start();
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    // A standby is told first and given the time to follow heartbeats, so it takes over warm: this
    // coordinator goes on acknowledging meanwhile. Neither KV write may hold the stop up for long: when the
    // whole fleet stops at once (Ctrl-C), the hub may already be gone, and the standby then waits for expiry.
    const { clock, timings } = this.opts;
    const quickly = <T>(p: Promise<T>) => Promise.race([p, sleep(timings.coordinatorRenewMs, clock).then(() => undefined)]);
    if (this.isActive && (await quickly(this.lease.announceRelease()))) await sleep(this.releaseNoticeMs(), clock);
    this.stopped = true;
    for (const t of this.timers) clock.clearInterval(t);
    this.actor?.send({ type: "STOP" });
    this.reconcileDomains();
    this.followHeartbeats();
    await quickly(this.lease.release());
    this.inventory.stop();
    for (const s of this.subs) s.unsubscribe();
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
   * Subscribes to gateway and node heartbeats and sweeps them while active or while the lease holder looks gone;
   * otherwise neither (see the head of this file). Waking starts from a new tracker's view: health heard
   * before the sleep is stale, and nothing is judged until a whole dead-after window has been heard.
   */
  private followHeartbeats(): void {
    const active = this.actor?.getSnapshot().value === "active";
    const want = !this.stopped && (active || this.holderStale);
    if (want === (this.following !== null)) return;
    const { clock, timings } = this.opts;
    if (!want) {
      for (const sub of this.following!) sub.unsubscribe();
      this.following = null;
      if (this.sweepTimer) clock.clearTimeout(this.sweepTimer);
      this.sweepTimer = null;
      this.sweepDueAt = Infinity;
      return;
    }
    const now = clock.now();
    this.tracker.restart(now);
    this.warmAnnounced = false;
    this.deferringSince = null; // a wait left over from before the sleep is not this silence's
    this.lastSweepAt = now;
    // Node heartbeats only feed `raven status` (READY): a node not heard since the wake shows not ready until
    // its next heartbeat, a second at most.
    this.following = [
      this.listen(subjects.allGatewayHeartbeats(), (m) => this.onGatewayHeartbeat(m.subject, m.data)),
      this.listen(subjects.allNodeHeartbeats(), (m) => this.onNodeHeartbeat(m.subject, m.data)),
    ];
    this.sweepWithin(timings.sweepMs);
  }

  /**
   * Sweeps are scheduled, not periodic: every sweepMs while a deadline is near (some candidate's silence could
   * reach its window by a slower sweep), a flip is waiting to be told, or anything is being waited out;
   * otherwise a third of the shortest window (100 ms). A deadline is still judged within sweepMs of passing,
   * and an idle coordinator wakes 10 times a second instead of 50.
   */
  private sweepWithin(ms: number): void {
    const { clock } = this.opts;
    const at = clock.now() + ms;
    if (!this.following || (this.sweepTimer && this.sweepDueAt <= at)) return;
    if (this.sweepTimer) clock.clearTimeout(this.sweepTimer);
    this.sweepDueAt = at;
    this.sweepTimer = clock.setTimeout(() => {
      this.sweepTimer = null;
      let close = true;
      try {
        close = this.sweep();
      } finally {
        // Also after a throw: without sweeps nobody is ever declared dead again, nor the lease's expiry seen.
        this.sweepWithin(close ? this.opts.timings.sweepMs : this.idleSweepMs());
      }
    }, ms);
  }

  /** The sweeps' spacing while no deadline is near: a third of the shortest window. */
  private idleSweepMs(): number {
    const { timings } = this.opts;
    return Math.max(timings.sweepMs, Math.floor(timings.gatewayDeadAfterMs / 3));
  }

  // --- messages ----------------------------------------------------------------------------------------------

  /**
   * Handlers are synchronous and run as nats.js parses each socket read. That is deliberate for this
   * firehose (tens of thousands of heartbeats a second): the acknowledgements published while handling one
   * read leave in a single socket write, where an async-iterator loop would yield between messages and
   * flush (one write syscall) per acknowledgement. Nothing here awaits.
   */
  private listen(subject: string, handle: (m: { subject: string; data: Uint8Array; respond(d: Uint8Array): boolean }) => void): Subscription {
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
    const msg = tryDecode(data, (err) => this.opts.log.debug({ subject, err: err.message }, "dropped malformed message"));
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
    if (this.tracker.flipsPending) this.sweepWithin(this.opts.timings.sweepMs);
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
    const ref = this.domain(key);
    const snap = ref?.getSnapshot();
    const record = snap?.context.record;
    if (!snap || !record) return;
    if (hb.gateway !== unit?.name) {
      counters.inc("raven_heartbeats_wrong_gateway_total");
      return;
    }
    const decision = ackDecision({
      named: record.status.activeEndpoints.some((e) => e.nodeName === hb.node),
      healthy: c.healthy,
      settled: snap.value !== "writing" && snap.context.stamped,
      recordTerm: record.status.term,
      heartbeatTerm: hb.term,
      heartbeatActs: hb.active.length > 0,
    });
    if (decision !== AckDecision.Ignore) {
      this.publishAssignment(unit, record, decision === AckDecision.Ack ? [{ nodeName: hb.node, seq: hb.seq }] : [], hb.node);
    }
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
    if (!subjectMatches(subject, reg.domain, reg.node)) return reply(new InvalidMessageError("subject does not match the node and domain in the body"));
    const problem = domainProblem({ name: reg.node, labels: reg.labels });
    if (problem) return reply(new InvalidMessageError(problem));
    if (domainOf({ name: reg.node, labels: reg.labels }) !== reg.domain) {
      return reply(new InvalidMessageError(`node ${reg.node} registers in domain ${reg.domain} but its labels place it in ${domainOf({ name: reg.node, labels: reg.labels })}`));
    }
    // Elections first: while DomainActor work is queued (a takeover, a burst of health changes), registrations
    // wait; so does everything when the loop is busy. The node retries with backoff.
    const electionsPending = this.work.length > 0 || !this.warmAnnounced;
    if (this.registrationsInFlight >= MAX_CONCURRENT_REGISTRATIONS || electionsPending || this.loopBusy > BUSY_FOR_REGISTRATIONS) {
      counters.inc("raven_registrations_shed_total");
      return; // the node retries with backoff
    }
    this.registrationsInFlight++;
    const place = this.inventory.place({ name: reg.node, labels: reg.labels });
    this.inventory
      .putNode({
        name: reg.node,
        labels: reg.labels,
        internalIP: reg.internalIP,
        ...(reg.podCIDR ? { podCIDR: reg.podCIDR } : {}),
        domain: reg.domain,
        registeredAt: this.opts.clock.wallMs(),
      })
      .then(
        () => {
          counters.inc("raven_registrations_total");
          respond(encode("node.registered", { node: reg.node, domain: reg.domain, gateway: place.solo ? null : place.name, solo: place.solo }));
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

  // --- domain actors -----------------------------------------------------------------------------------------

  private domain(key: string): DomainActor | undefined {
    return this.domains.get(key);
  }

  /**
   * Every bulk event for a DomainActor goes through the sliced queue, so bursts never block the loop. The
   * event is built when it is delivered, from the facts as they are then (level-triggered), so an event that
   * waited in the queue can never carry older facts than one sent directly meanwhile.
   */
  private sendDomain(key: string, event: () => DomainEvent | undefined): void {
    if (!this.domains.has(key)) return;
    this.work.push(() => {
      const e = event();
      if (e) this.domains.get(key)?.send(e);
    });
  }

  /** While active: one DomainActor per unit (created through the queue); otherwise none. */
  private reconcileDomains(): void {
    const active = this.actor?.getSnapshot().value === "active" && !this.stopped;
    const wanted = active ? this.inventory.partition.units : new Map<string, Unit>();
    for (const [key, ref] of this.domains) {
      if (wanted.has(key)) continue;
      ref.stop();
      this.domains.delete(key);
    }
    for (const unit of wanted.values()) {
      if (this.domains.has(unit.key)) continue;
      const ref = createActor(this.domainLogic, {
        clock: this.opts.clock,
        input: {
          key: unit.key,
          name: unit.name,
          solo: unit.solo,
          retryMs: this.opts.timings.retryMs,
          handoverMs: handoverMs(this.opts.timings.gatewayFenceMs, this.opts.timings.sweepMs),
          stampFirst: true,
        },
      });
      this.domains.set(unit.key, ref);
      this.opts.inspector?.attach(ref, `domain/${unit.name}`);
      this.work.push(() => {
        if (this.domains.get(unit.key) !== ref) return; // stopped before it started
        ref.on("assignment", (e) => this.publishAssignment(this.inventory.partition.units.get(e.key), e.record, this.acksFor(e.record)));
        ref.subscribe({ error: (err) => this.opts.log.error({ unit: unit.key, domain: unit.domain ?? null, err: describeError(err) }, "domain actor failed") });
        ref.start();
        const current = this.inventory.partition.units.get(unit.key);
        if (current) {
          ref.send({ type: "MEMBERS", nodes: this.membersOf(current), tunnelProblem: this.tunnelProblemOf(current) });
          if (this.warmAnnounced) ref.send(this.healthEvent(current));
        }
      });
    }
  }

  /** A unit whose candidate list changed must re-decide with its current health (no flip will tell it). */
  private refreshCandidates(): void {
    for (const unit of this.inventory.partition.units.values()) {
      const sig = unit.candidates.join(",");
      if (this.candidateSignature.get(unit.key) === sig) continue;
      this.candidateSignature.set(unit.key, sig);
      if (this.warmAnnounced) this.sendDomain(unit.key, () => this.healthOf(unit.key));
    }
  }

  /**
   * Units whose membership changed get their MEMBERS on the next resync tick, so a burst of registrations
   * costs each unit at most one status write per resyncMs.
   */
  private flushMembers(): void {
    if (this.membersDirty.size > 0) this.refreshTunnelProblems();
    for (const key of this.membersDirty) {
      this.sendDomain(key, () => {
        const unit = this.inventory.partition.units.get(key);
        return unit && { type: "MEMBERS", nodes: this.membersOf(unit), tunnelProblem: this.tunnelProblemOf(unit) };
      });
    }
    this.membersDirty.clear();
  }

  /**
   * Tunnel mode refuses domains whose pod CIDRs overlap another domain's (services/tunnel/overlap.ts). A
   * change of one node's podCIDR can change the verdict of other units: those become dirty too.
   */
  private refreshTunnelProblems(): void {
    const byDomain = new Map<string, string[]>();
    for (const unit of this.inventory.partition.units.values()) {
      if (unit.domain === undefined) continue;
      const list = byDomain.get(unit.domain) ?? [];
      for (const n of unit.nodes) {
        const cidr = this.inventory.nodes.get(n)?.podCIDR;
        if (cidr) list.push(cidr);
      }
      byDomain.set(unit.domain, list);
    }
    const next = podCidrProblems([...byDomain].map(([domain, podCidrs]) => ({ domain, podCidrs })));
    for (const unit of this.inventory.partition.units.values()) {
      const d = unit.domain;
      if (d !== undefined && (next.get(d) ?? null) !== (this.tunnelProblems.get(d) ?? null)) this.membersDirty.add(unit.key);
    }
    this.tunnelProblems = next;
  }

  private tunnelProblemOf(unit: Unit): string | null {
    return unit.domain === undefined ? null : (this.tunnelProblems.get(unit.domain) ?? null);
  }

  private membersOf(unit: Unit) {
    return unit.nodes.map((n) => {
      const rec = this.inventory.nodes.get(n);
      return { nodeName: n, privateIP: rec?.internalIP ?? "", subnets: rec?.podCIDR ? [rec.podCIDR] : [] };
    });
  }

  private healthOf(key: string) {
    const unit = this.inventory.partition.units.get(key);
    return unit && this.healthEvent(unit);
  }

  /**
   * The unit's candidate health for its DomainActor. One hold: when the unit's current active is silent, a
   * candidate that came back from silence itself less than gatewayDeadAfterMs ago is not offered as healthy
   * yet. After a cut that silenced the whole domain, its candidates come back within milliseconds of each
   * other, in no particular order; without the hold, whichever was heard first would replace the active —
   * one election that the cut itself no longer costs (statecharts/domain.ts keptSilent). The active gets
   * that long to be heard; after it, the HEALTH is sent again (sweep) and the election goes on as after any
   * death. A candidate that was never silent (the usual standby of an active that died) is not held.
   */
  private healthEvent(unit: Unit) {
    const now = this.opts.clock.now();
    const healthy: string[] = [];
    const alive: string[] = [];
    const rising: string[] = [];
    const actives = this.domain(unit.key)?.getSnapshot().context.record?.status.activeEndpoints ?? [];
    const activeSilent = actives.some((e) => !this.tracker.candidates.get(e.nodeName)?.alive);
    const holdMs = this.opts.timings.gatewayDeadAfterMs;
    for (const c of unit.candidates) {
      const h = this.tracker.candidates.get(c);
      if (h?.alive) alive.push(c);
      if (h?.rising) rising.push(c);
      // A candidate serving another Gateway (stale --gateway, moved label) would be elected and never act.
      if (!h?.healthy || h.gateway !== unit.name) continue;
      const held = activeSilent && !actives.some((e) => e.nodeName === c) && now - h.revivedAt < holdMs;
      if (!held) {
        healthy.push(c);
        continue;
      }
      const until = h.revivedAt + holdMs;
      if ((this.comebackHolds.get(unit.key) ?? -Infinity) < until) this.comebackHolds.set(unit.key, until);
    }
    return { type: "HEALTH" as const, healthy, alive, rising };
  }

  /** One sweep; returns whether the next must come soon (sweepWithin). */
  private sweep(): boolean {
    const { timings } = this.opts;
    const now = this.opts.clock.now();
    if (this.actor?.getSnapshot().value === "active" && !this.lease.valid(now)) {
      this.actor.send({ type: "LEASE_LOST", reason: "lease expired before it could be renewed" });
    }
    const late = now - this.sweepDueAt;
    this.sweepDueAt = Infinity;
    const sinceLast = now - this.lastSweepAt;
    this.lastSweepAt = now;
    const elu = performance.eventLoopUtilization(this.lastElu);
    this.lastElu = performance.eventLoopUtilization();
    // Smoothed over ~0.5 s for shedding registrations (whatever the sweeps' spacing): one busy sweep window
    // must not stall them.
    const weight = 1 - Math.pow(0.96, Math.min(sinceLast, 1_000) / timings.sweepMs);
    this.loopBusy = (1 - weight) * this.loopBusy + weight * elu.utilization;
    const silences = this.tracker.silences(now);
    // Near: an idle-spaced next sweep could find it past its window, and, running up to STALL_MS late without
    // being judged a stall, could miss heartbeats a stall left unread. So every sweep that can declare a death
    // is at most sweepMs after the one before, as with periodic sweeps, and the stall rule guards it alike.
    const reach = this.idleSweepMs() + STALL_MS;
    const deadlineNear = silences.some((c) => c.silentMs + reach >= c.deadAfterMs);
    // Whether silent candidates may be declared dead now, or the silence is more likely ours (detector.ts).
    const verdict = judgeSilence({
      deadAfterMs: timings.gatewayDeadAfterMs,
      candidates: silences,
      sweepLateMs: late,
      loopUtilisation: elu.utilization,
      deferredForMs: this.deferringSince === null ? 0 : now - this.deferringSince,
    });
    if (verdict.kind === "defer") {
      counters.inc("raven_sweeps_deferred_total", { reason: verdict.reason });
      // A stalled or saturated loop has heartbeats waiting unread: judge nothing, not even recoveries, until
      // the next sweep runs after they are processed.
      if (verdict.reason !== "correlated") return true;
      if (this.deferringSince === null) {
        this.deferringSince = now;
        this.opts.log.warn({ suspects: verdict.suspects }, "heartbeats late in several domains at once: waiting for them before declaring anyone dead");
      }
    } else if (this.deferringSince !== null) {
      this.opts.log.info({ waitedMs: Math.round(now - this.deferringSince), dead: verdict.dead }, "correlated silence over");
      this.deferringSince = null;
    }
    const flipped = this.tracker.sweep(now, verdict.kind === "judge" ? verdict.dead : []);
    if (!this.tracker.warm(now)) return true;
    if (!this.warmAnnounced) {
      this.warmAnnounced = true;
      for (const key of this.domains.keys()) this.sendDomain(key, () => this.healthOf(key));
      return true;
    }
    const touched = new Set<string>();
    for (const node of flipped) {
      const key = this.inventory.candidateUnit.get(node);
      if (key) touched.add(key);
      // The first flip of a burst starts the clock; one that led to no new term is forgotten after 2 s.
      const since = key ? this.healthChangedAt.get(key) : undefined;
      if (key && (since === undefined || now - since > 2_000)) this.healthChangedAt.set(key, now);
      const c = this.tracker.candidates.get(node);
      if (c && !c.healthy && !c.alive) counters.inc("raven_heartbeats_missed_total", { domain: c.domain });
    }
    for (const [key, until] of this.comebackHolds) {
      if (now < until) continue;
      this.comebackHolds.delete(key);
      touched.add(key);
    }
    for (const key of touched) {
      const unit = this.inventory.partition.units.get(key);
      // Health flips are what failover waits on: they go straight to the actor, ahead of queued bulk work.
      if (unit) this.domain(key)?.send(this.healthEvent(unit));
    }
    return deadlineNear || this.deferringSince !== null || this.comebackHolds.size > 0;
  }

  private resync(): void {
    this.tracker.prune(this.opts.clock.now(), (node) => this.inventory.candidateUnit.has(node) || this.inventory.nodes.has(node));
    if (!this.isActive) return;
    this.flushMembers();
    for (const key of this.domains.keys()) this.sendDomain(key, () => ({ type: "RESYNC" }));
  }

  // --- I/O -----------------------------------------------------------------------------------------------------

  private async writeRecord(input: WriteInput) {
    if (!this.lease.valid()) throw new NotLeaderError("coordinator lease is not valid; not writing");
    const before = this.domain(input.key)?.getSnapshot().context.record?.status.term ?? 0;
    let revision: number;
    try {
      revision = await casPut(this.opts.buckets.gateways, input.key, input.record, input.revision);
    } catch (err) {
      if (err instanceof CasConflictError) this.readFresh.add(input.key);
      throw err;
    }
    counters.inc("raven_record_writes_total");
    if (input.record.status.term !== before) {
      counters.inc("raven_elections_total");
      this.termChanges.record(input.key, this.opts.clock.now());
      this.measureElection(input, before);
      this.opts.log.info(
        {
          unit: input.key,
          domain: this.inventory.partition.units.get(input.key)?.domain ?? null,
          term: input.record.status.term,
          active: input.record.status.activeEndpoints.map((e) => `${e.type}/${e.nodeName}`),
          problem: input.record.status.problem,
        },
        "elected",
      );
    }
    return { record: input.record, revision, handover: input.handover };
  }

  /** Failovers (a term that removed an active), election latency since the health change, the unit's term. */
  private measureElection(input: WriteInput, termBefore: number): void {
    const unit = this.inventory.partition.units.get(input.key);
    const domain = unit?.domain ?? "";
    metrics.domainTerm.set({ domain, gateway: input.record.metadata.name }, input.record.status.term);
    const prev = this.domain(input.key)?.getSnapshot().context.record?.status.activeEndpoints ?? [];
    const now = input.record.status.activeEndpoints.map((e) => e.nodeName);
    if (termBefore > 0 && prev.some((e) => !now.includes(e.nodeName))) counters.inc("raven_failovers_total", { domain });
    const since = this.healthChangedAt.get(input.key);
    if (since !== undefined) {
      metrics.electionLatency.observe({ domain }, Math.max(0, this.opts.clock.now() - since) / 1000);
      this.healthChangedAt.delete(input.key);
    }
  }

  private acksFor(record: Gateway): Assignment["acks"] {
    const acks: Assignment["acks"] = [];
    const seen = new Set<string>();
    for (const e of record.status.activeEndpoints) {
      if (seen.has(e.nodeName)) continue;
      seen.add(e.nodeName);
      const h = this.tracker.candidates.get(e.nodeName);
      if (h?.healthy) acks.push({ nodeName: e.nodeName, seq: h.seq });
    }
    return acks;
  }

  /** To the whole domain, or (an acknowledgement, a correction) to the one candidate `to`. */
  private publishAssignment(unit: Unit | undefined, record: Gateway, acks: Assignment["acks"], to?: string): void {
    if (!this.lease.valid()) return;
    const domain = unit?.domain ?? this.tracker.candidates.get(unit?.candidates[0] ?? "")?.domain;
    if (!domain) return;
    const body: Assignment = {
      domain,
      gateway: record.metadata.name,
      term: record.status.term,
      active: record.status.activeEndpoints.map((e) => ({ nodeName: e.nodeName, type: e.type })),
      acks,
      leaseMs: this.opts.timings.gatewayFenceMs,
      coordinator: this.opts.id,
      issuedAt: this.opts.clock.wallMs(),
    };
    this.opts.nc.publish(to ? subjects.gatewayAssignment(domain, to) : subjects.assignment(domain), encode("assignment", body));
    counters.inc("raven_assignments_published_total");
  }

  // --- status --------------------------------------------------------------------------------------------------

  status(domainFilter?: string): StatusReply {
    return buildStatus({
      coordinator: this.opts.id,
      activeSince: this.lease.heldSince(),
      units: this.inventory.partition.units.values(),
      record: (key) => this.domain(key)?.getSnapshot().context.record ?? this.inventory.gateways.get(key)?.value ?? null,
      nodeIP: (name) => this.inventory.nodes.get(name)?.internalIP ?? "",
      tracker: this.tracker,
      termChanges: this.termChanges,
      now: this.opts.clock.now(),
      deadAfterMs: this.opts.timings.gatewayDeadAfterMs,
      ...(domainFilter ? { domainFilter } : {}),
    });
  }
}
