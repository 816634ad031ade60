// The coordinator process's wiring: NATS subscriptions (registrations, heartbeats, status requests), the
// HealthTracker, the Inventory, the lease, and the Coordinator statechart with its DomainActors.
//
// Both replicas track every heartbeat and watch the KV, so a standby that wins the lease decides at once
// from a warm view (no cold re-election). Only the lease holder replies, acknowledges heartbeats, publishes
// assignments and writes records; every one of those checks `lease.valid()` at the moment it acts.
//
// Acknowledgements are the gateways' leases: a heartbeat from a candidate is acknowledged (an assignment
// naming its seq) only while it is healthy, active in its unit's record, and the unit is not mid-write, so
// a candidate about to be replaced never gets its lease extended.
import { createActor, fromCallback, fromPromise, type Actor, type ActorRefFrom } from "xstate";
import type { Subscription } from "@nats-io/transport-node";
import { coordinatorMachine, domainMachine, type UnitRef, type WriteInput } from "../../statecharts";
import type { Clock, TimerHandle } from "../../shared/clock";
import type { Timings } from "../../shared/config";
import { domainOf, domainProblem, type Unit } from "../../shared/domains";
import { InvalidMessageError, RavenError, describeError, errorToWire } from "../../shared/errors";
import { parseGatewayRecord, type Gateway } from "../../shared/gateway";
import { casPut, readJson } from "../../shared/kv";
import type { Logger } from "../../shared/log";
import { counters } from "../../shared/metrics";
import type { HubBuckets, NatsConnection } from "../../shared/nats";
import {
  encode,
  nameToken,
  subjects,
  tryDecode,
  type Assignment,
  type DomainStatus,
  type MessageBody,
  type MessageType,
  type StatusReply,
} from "../../shared/protocol";
import { HealthTracker } from "./health";
import { Inventory } from "./inventory";
import { CoordinatorLease } from "./lease";

export type CoordinatorOptions = Readonly<{
  nc: NatsConnection;
  buckets: HubBuckets;
  id: string;
  timings: Timings;
  clock: Clock;
  log: Logger;
}>;

type DomainRef = ActorRefFrom<typeof domainMachine>;

const MAX_CONCURRENT_REGISTRATIONS = 64;
/** A sweep this late means the event loop stalled. */
const STALL_MS = 50;

/** Checks that a message's body names the same domain and node as the subject it came on. */
function subjectMatches(subject: string, domain: string, node: string): boolean {
  const parts = subject.split(".");
  return parts[2] === domain && parts[4] === nameToken(node);
}

export class CoordinatorService {
  readonly tracker: HealthTracker;
  readonly inventory: Inventory;
  readonly lease: CoordinatorLease;
  private actor: Actor<typeof coordinatorMachine> | null = null;
  private readonly subs: Subscription[] = [];
  private readonly timers: TimerHandle[] = [];
  private readonly listening = new WeakSet<object>();
  private warmAnnounced = false;
  private lastSweepAt = 0;
  private registrationsInFlight = 0;
  private stopped = false;

  constructor(private readonly opts: CoordinatorOptions) {
    const { timings, clock, log, buckets, id } = opts;
    this.tracker = new HealthTracker(
      { deadAfterMs: timings.gatewayDeadAfterMs, riseCount: timings.gatewayRiseCount, nodeDeadAfterMs: timings.nodeDeadAfterMs },
      clock.now(),
    );
    this.lease = new CoordinatorLease(
      buckets.leases,
      id,
      { leaseMs: timings.coordinatorLeaseMs, renewMs: timings.coordinatorRenewMs, pollMs: Math.max(10, Math.floor(timings.coordinatorRenewMs / 2)) },
      clock,
      log,
    );
    this.inventory = new Inventory(buckets, clock, log, (change) => {
      if (change.partition) {
        this.sendUnits();
        this.sendMembers();
      }
      for (const key of change.records) {
        const v = this.inventory.gateways.get(key);
        this.domain(key)?.send({ type: "RECORD", record: v?.value ?? null, revision: v?.revision ?? 0 });
      }
    });
  }

  get isActive(): boolean {
    return this.actor?.getSnapshot().value === "active" && this.lease.valid();
  }

  async start(): Promise<void> {
    const { nc, clock, timings } = this.opts;
    this.inventory.start();
    this.listen(subjects.allGatewayHeartbeats(), (m) => this.onGatewayHeartbeat(m.subject, m.data));
    this.listen(subjects.allNodeHeartbeats(), (m) => this.onNodeHeartbeat(m.subject, m.data));
    this.listen(subjects.allNodeRegisters(), (m) => this.onRegister(m.subject, m.data, (d) => m.respond(d)));
    this.listen(subjects.status(), (m) => this.onStatus(m.data, (d) => m.respond(d)));
    this.timers.push(clock.setInterval(() => this.sweep(), timings.sweepMs));
    this.timers.push(clock.setInterval(() => this.resync(), timings.resyncMs));

    const machine = coordinatorMachine.provide({
      actors: {
        campaign: fromPromise(({ signal }) => this.lease.campaign(signal)),
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
          const check = clock.setInterval(() => {
            if (!this.lease.valid()) sendBack({ type: "LEASE_LOST", reason: "lease expired before it could be renewed" });
          }, timings.sweepMs);
          return () => {
            clock.clearInterval(renew);
            clock.clearInterval(check);
          };
        }),
        domain: domainMachine.provide({
          actors: {
            loadRecord: fromPromise(({ input }) => readJson(this.opts.buckets.gateways, input.key, (raw) => parseGatewayRecord(raw, input.key)).then((v) => ({ record: v.value, revision: v.revision }))),
            writeRecord: fromPromise(({ input }) => this.writeRecord(input)),
          },
        }),
      },
    });
    this.actor = createActor(machine, {
      input: { id: this.opts.id, retryMs: timings.retryMs, handoverMs: timings.gatewayFenceMs + timings.sweepMs },
    });
    this.actor.subscribe({
      next: (snap) => {
        if (snap.value === "active") this.attachDomains();
      },
      error: (err) => {
        this.opts.log.fatal({ err: describeError(err) }, "coordinator statechart failed");
        throw err;
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
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) this.opts.clock.clearInterval(t);
    this.actor?.send({ type: "STOP" });
    await this.lease.release();
    this.inventory.stop();
    for (const s of this.subs) s.unsubscribe();
  }

  // --- messages ----------------------------------------------------------------------------------------------

  private listen(subject: string, handle: (m: { subject: string; data: Uint8Array; respond(d: Uint8Array): boolean }) => void): void {
    const sub = this.opts.nc.subscribe(subject);
    this.subs.push(sub);
    void (async () => {
      for await (const m of sub) {
        try {
          handle(m);
        } catch (err) {
          counters.inc("raven_handler_errors_total", { subject });
          this.opts.log.error({ err: describeError(err), subject: m.subject }, "message handler failed");
        }
      }
    })();
  }

  private decodeOn<T extends MessageType>(subject: string, data: Uint8Array, type: T): MessageBody<T> | undefined {
    const msg = tryDecode(data, (err) => this.opts.log.debug({ subject, err: err.message }, "dropped malformed message"));
    if (!msg) return undefined;
    if (msg.type !== type) {
      counters.inc("raven_messages_rejected_total", { reason: "WRONG_TYPE" });
      return undefined;
    }
    return msg.body as MessageBody<T>;
  }

  private onGatewayHeartbeat(subject: string, data: Uint8Array): void {
    const hb = this.decodeOn(subject, data, "gw.hb");
    if (!hb) return;
    if (!subjectMatches(subject, hb.domain, hb.node)) {
      counters.inc("raven_messages_rejected_total", { reason: "SUBJECT_MISMATCH" });
      return;
    }
    const now = this.opts.clock.now();
    const c = this.tracker.gateway(hb, now);
    counters.inc("raven_gateway_heartbeats_total");
    if (!this.isActive) return;
    const key = this.inventory.candidateUnit.get(hb.node);
    if (!key) {
      counters.inc("raven_heartbeats_unknown_candidate_total");
      return;
    }
    const unit = this.inventory.partition.units.get(key);
    if (unit?.domain !== undefined && unit.domain !== hb.domain) {
      counters.inc("raven_messages_rejected_total", { reason: "WRONG_DOMAIN" });
      return;
    }
    const ref = this.domain(key);
    const snap = ref?.getSnapshot();
    const record = snap?.context.record;
    if (!snap || !record || snap.value === "writing") return;
    const assigned = record.status.activeEndpoints.some((e) => e.nodeName === hb.node);
    const ackable = assigned && c.healthy;
    const confused = hb.term !== record.status.term || (hb.active.length > 0 && !assigned);
    if (ackable || confused) {
      this.publishAssignment(unit, record, ackable ? [{ nodeName: hb.node, seq: hb.seq }] : []);
    }
  }

  private onNodeHeartbeat(subject: string, data: Uint8Array): void {
    const hb = this.decodeOn(subject, data, "node.hb");
    if (!hb) return;
    if (!subjectMatches(subject, hb.domain, hb.node)) {
      counters.inc("raven_messages_rejected_total", { reason: "SUBJECT_MISMATCH" });
      return;
    }
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
    if (this.registrationsInFlight >= MAX_CONCURRENT_REGISTRATIONS) {
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
      .finally(() => this.registrationsInFlight--);
  }

  private onStatus(data: Uint8Array, respond: (d: Uint8Array) => void): void {
    if (!this.isActive) return;
    const msg = tryDecode(data);
    const filter = msg?.type === "status.request" ? msg.body.domain : undefined;
    respond(encode("status.reply", this.status(filter)));
  }

  // --- domain actors -----------------------------------------------------------------------------------------

  private domain(key: string): DomainRef | undefined {
    return this.actor?.getSnapshot().children[key] as DomainRef | undefined;
  }

  private unitRefs(): UnitRef[] {
    return [...this.inventory.partition.units.values()].map((u) => ({ key: u.key, name: u.name, solo: u.solo }));
  }

  private sendUnits(): void {
    this.actor?.send({ type: "UNITS", units: this.unitRefs() });
    this.attachDomains();
  }

  /** Wires every newly spawned DomainActor: its assignments go out on the mesh; it learns health and members. */
  private attachDomains(): void {
    const children = this.actor?.getSnapshot().children ?? {};
    for (const [key, child] of Object.entries(children)) {
      if (!child || this.listening.has(child)) continue;
      this.listening.add(child);
      const ref = child as DomainRef;
      ref.on("assignment", (e) => {
        this.publishAssignment(this.inventory.partition.units.get(e.key), e.record, this.acksFor(e.record));
      });
      ref.subscribe({ error: (err) => this.opts.log.error({ unit: key, err: describeError(err) }, "domain actor failed") });
      const unit = this.inventory.partition.units.get(key);
      if (unit) ref.send({ type: "MEMBERS", nodes: this.membersOf(unit) });
      if (unit && this.warmAnnounced) ref.send(this.healthEvent(unit));
    }
  }

  /** Membership may change with any partition change; the DomainActor writes only when it differs. */
  private sendMembers(): void {
    for (const unit of this.inventory.partition.units.values()) {
      this.domain(unit.key)?.send({ type: "MEMBERS", nodes: this.membersOf(unit) });
    }
  }

  private membersOf(unit: Unit) {
    return unit.nodes.map((n) => {
      const rec = this.inventory.nodes.get(n);
      return { nodeName: n, privateIP: rec?.internalIP ?? "", subnets: rec?.podCIDR ? [rec.podCIDR] : [] };
    });
  }

  private healthEvent(unit: Unit) {
    const healthy: string[] = [];
    const alive: string[] = [];
    for (const c of unit.candidates) {
      const h = this.tracker.candidates.get(c);
      if (h?.healthy) healthy.push(c);
      if (h?.alive) alive.push(c);
    }
    return { type: "HEALTH" as const, healthy, alive };
  }

  private sweep(): void {
    const now = this.opts.clock.now();
    // After an event-loop stall, timers run before the I/O that queued up meanwhile: heartbeats that did
    // arrive are still unread. Judge nobody this round; the next sweep runs after they are processed.
    const late = now - this.lastSweepAt - this.opts.timings.sweepMs;
    this.lastSweepAt = now;
    if (late > STALL_MS) {
      counters.inc("raven_sweeps_deferred_total");
      return;
    }
    const flipped = this.tracker.sweep(now);
    if (!this.tracker.warm(now)) return;
    if (!this.warmAnnounced) {
      this.warmAnnounced = true;
      for (const unit of this.inventory.partition.units.values()) this.domain(unit.key)?.send(this.healthEvent(unit));
      return;
    }
    const touched = new Set<string>();
    for (const node of flipped) {
      const key = this.inventory.candidateUnit.get(node);
      if (key) touched.add(key);
    }
    for (const key of touched) {
      const unit = this.inventory.partition.units.get(key);
      if (unit) this.domain(key)?.send(this.healthEvent(unit));
    }
  }

  private resync(): void {
    if (!this.isActive) return;
    for (const unit of this.inventory.partition.units.values()) this.domain(unit.key)?.send({ type: "RESYNC" });
  }

  // --- I/O -----------------------------------------------------------------------------------------------------

  private async writeRecord(input: WriteInput) {
    if (!this.lease.valid()) throw new RavenError("NOT_LEADER", "coordinator lease is not valid; not writing");
    const before = this.domain(input.key)?.getSnapshot().context.record?.status.term ?? 0;
    const revision = await casPut(this.opts.buckets.gateways, input.key, input.record, input.revision);
    counters.inc("raven_record_writes_total");
    if (input.record.status.term !== before) {
      counters.inc("raven_elections_total");
      this.opts.log.info(
        {
          unit: input.key,
          term: input.record.status.term,
          active: input.record.status.activeEndpoints.map((e) => `${e.type}/${e.nodeName}`),
          problem: input.record.status.problem,
        },
        "elected",
      );
    }
    return { record: input.record, revision, handover: input.handover };
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

  private publishAssignment(unit: Unit | undefined, record: Gateway, acks: Assignment["acks"]): void {
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
    this.opts.nc.publish(subjects.assignment(domain), encode("assignment", body));
    counters.inc("raven_assignments_published_total");
  }

  // --- status --------------------------------------------------------------------------------------------------

  status(domainFilter?: string): StatusReply {
    const now = this.opts.clock.now();
    const age = (t: number | undefined) => (t === undefined ? null : Math.max(0, Math.round(now - t)));
    const domains: DomainStatus[] = [];
    let budget = 200_000; // keep the reply under the message size limit
    let truncated = false;
    const units = [...this.inventory.partition.units.values()].sort((a, b) => ((a.domain ?? "") + a.key).localeCompare((b.domain ?? "") + b.key));
    for (const unit of units) {
      if (!unit.domain || (domainFilter && unit.domain !== domainFilter)) continue;
      const record = this.domain(unit.key)?.getSnapshot().context.record ?? this.inventory.gateways.get(unit.key)?.value ?? null;
      const spec = record?.spec;
      const ds: DomainStatus = {
        domain: unit.domain,
        gateway: unit.name,
        solo: unit.solo,
        term: record?.status.term ?? 0,
        replicas: { proxy: spec?.proxyConfig.replicas ?? 0, tunnel: spec?.tunnelConfig.replicas ?? 0 },
        active: (record?.status.activeEndpoints ?? []).map((e) => ({ nodeName: e.nodeName, type: e.type })),
        candidates: unit.candidates.map((c) => {
          const h = this.tracker.candidates.get(c);
          return {
            node: c,
            types: [...new Set((spec?.endpoints ?? []).filter((e) => e.nodeName === c).map((e) => e.type))],
            healthy: h?.healthy ?? false,
            draining: h?.draining ?? false,
            datapathOk: h?.datapathOk ?? false,
            actingActive: h && now - h.lastSeenAt < this.opts.timings.gatewayDeadAfterMs ? h.acting : [],
            lastHeartbeatAgeMs: age(h?.lastSeenAt),
          };
        }),
        nodes: unit.nodes.map((n) => {
          const live = this.tracker.nodes.get(n);
          return {
            node: n,
            internalIP: this.inventory.nodes.get(n)?.internalIP ?? "",
            ready: this.tracker.nodeReady(n, now),
            lastHeartbeatAgeMs: age(live?.lastSeenAt),
          };
        }),
      };
      const problem = unit.problem ?? record?.status.problem;
      if (problem) ds.problem = problem;
      budget -= 200 + 120 * (ds.nodes.length + ds.candidates.length);
      if (budget < 0) {
        truncated = true;
        break;
      }
      domains.push(ds);
    }
    return { coordinator: this.opts.id, activeSince: this.lease.heldSince(), domains, truncated };
  }
}
