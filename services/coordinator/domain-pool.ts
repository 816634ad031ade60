// DomainPool: the active coordinator's DomainActors, one per election unit (a Gateway record and its domain,
// or a solo node), and the facts it feeds them: membership (MEMBERS, with tunnel mode's pod-CIDR verdict),
// candidate health (HEALTH, with the comeback hold), record changes (RECORD) and the periodic RESYNC. It also
// carries out what they decide: compare-and-swap writes of the record, and assignments on the mesh.
//
// Ordering: bulk events go through a sliced queue (WORK_SLICE_MS per turn of the event loop), each built when
// it is delivered from the facts as they are then (level-triggered), so an event that waited can never carry
// older facts than one sent directly meanwhile; health flips, which failover waits on, skip the queue.
// Fencing: every write and every published assignment checks the coordinator's lease at the moment it acts,
// and acknowledgements follow shared/fencing.ts.
//
// Just over 400 lines, one concept: the DomainActors' world (what they are told, what they cause).
import { createActor, fromPromise, type Actor } from "xstate";
import { domainMachine, type DomainEvent, type WriteInput } from "../../statecharts";
import type { Clock } from "../../shared/clock";
import type { Timings } from "../../shared/config";
import type { Unit } from "../../shared/domains";
import { CasConflictError, NotLeaderError, describeError } from "../../shared/errors";
import { AckDecision, ackDecision, handoverMs } from "../../shared/fencing";
import type { Gateway } from "../../shared/gateway";
import { parseGatewayRecord } from "../../shared/gateway-manifest";
import type { ActorInspector } from "../../shared/inspect";
import { casPut, readJson } from "../../shared/kv";
import type { Logger } from "../../shared/log";
import { counters, metrics } from "../../shared/metrics";
import type { HubBuckets, NatsConnection } from "../../shared/nats";
import { encode, subjects, type Assignment } from "../../shared/protocol";
import { podCidrProblems } from "../../shared/pod-cidrs";
import type { HealthTracker } from "./health";
import type { Inventory } from "./inventory";
import type { CoordinatorLease } from "./lease";
import { TermChangeWindow } from "./term-changes";
import { SlicedQueue } from "./work-queue";

export type DomainActor = Actor<typeof domainMachine>;

/** Longest stretch of DomainActor work between two turns of the event loop. */
const WORK_SLICE_MS = 10;

export type DomainPoolOptions = Readonly<{
  nc: NatsConnection;
  buckets: HubBuckets;
  id: string;
  timings: Timings;
  clock: Clock;
  log: Logger;
  tracker: HealthTracker;
  inventory: Inventory;
  lease: CoordinatorLease;
  /** Whether the coordinator's health view is warm (its machine is in active.deciding): HEALTH goes out only then. */
  warm: () => boolean;
  inspector?: ActorInspector;
}>;

export class DomainPool {
  private readonly actors = new Map<string, DomainActor>();
  private readonly work: SlicedQueue;
  private readonly logic: typeof domainMachine;
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
  /** When this coordinator raised each unit's term, for `raven status` (a standby taking over starts empty). */
  readonly termChanges = new TermChangeWindow();

  constructor(private readonly o: DomainPoolOptions) {
    this.work = new SlicedQueue(WORK_SLICE_MS, (err) =>
      o.log.error({ err: describeError(err) }, "domain actor task failed"),
    );
    this.logic = domainMachine.provide({
      actors: {
        // The inventory's watch already holds every record: a takeover of 1,000 units costs no KV reads.
        // After a lost compare-and-swap the watch may lag behind the winner, so that reload goes to KV.
        loadRecord: fromPromise(async ({ input }) => {
          const warm = o.inventory.gateways.get(input.key);
          if (warm && !this.readFresh.delete(input.key)) return { record: warm.value, revision: warm.revision };
          const v = await readJson(o.buckets.gateways, input.key, (raw) => parseGatewayRecord(raw, input.key));
          return { record: v.value, revision: v.revision };
        }),
        writeRecord: fromPromise(({ input }) => this.writeRecord(input)),
      },
    });
  }

  /** DomainActor work queued and not done yet (a takeover, a burst of health changes). */
  get pending(): number {
    return this.work.length;
  }

  get(key: string): DomainActor | undefined {
    return this.actors.get(key);
  }

  keys(): IterableIterator<string> {
    return this.actors.keys();
  }

  /** The unit's record as its DomainActor holds it, else as the inventory's watch does. */
  record(key: string): Gateway | null {
    return this.actors.get(key)?.getSnapshot().context.record ?? this.o.inventory.gateways.get(key)?.value ?? null;
  }

  /** While `active`: one DomainActor per unit (created through the queue); otherwise none. */
  reconcile(active: boolean): void {
    const wanted = active ? this.o.inventory.partition.units : new Map<string, Unit>();
    for (const [key, ref] of this.actors) {
      if (wanted.has(key)) continue;
      ref.stop();
      this.actors.delete(key);
    }
    const { timings } = this.o;
    for (const unit of wanted.values()) {
      if (this.actors.has(unit.key)) continue;
      const ref = createActor(this.logic, {
        clock: this.o.clock,
        input: {
          key: unit.key,
          name: unit.name,
          solo: unit.solo,
          retryMs: timings.retryMs,
          handoverMs: handoverMs(timings.gatewayFenceMs, timings.sweepMs),
          stampFirst: true,
        },
      });
      this.actors.set(unit.key, ref);
      this.o.inspector?.attach(ref, `domain/${unit.name}`);
      this.work.push(() => {
        if (this.actors.get(unit.key) !== ref) return; // stopped before it started
        ref.on("assignment", (e) =>
          this.publishAssignment(this.o.inventory.partition.units.get(e.key), e.record, this.acksFor(e.record)),
        );
        ref.subscribe({
          error: (err) =>
            this.o.log.error(
              { unit: unit.key, domain: unit.domain ?? null, err: describeError(err) },
              "domain actor failed",
            ),
        });
        ref.start();
        const current = this.o.inventory.partition.units.get(unit.key);
        if (current) {
          ref.send({ type: "MEMBERS", nodes: this.membersOf(current), tunnelProblem: this.tunnelProblemOf(current) });
          if (this.o.warm()) ref.send(this.healthEvent(current));
        }
      });
    }
  }

  /** The health view just became warm: every unit decides with it. */
  announceWarm(): void {
    for (const key of this.actors.keys()) this.send(key, () => this.healthOf(key));
  }

  /** A unit whose candidate list changed must re-decide with its current health (no flip will tell it). */
  refreshCandidates(): void {
    for (const unit of this.o.inventory.partition.units.values()) {
      const sig = unit.candidates.join(",");
      if (this.candidateSignature.get(unit.key) === sig) continue;
      this.candidateSignature.set(unit.key, sig);
      if (this.o.warm()) this.send(unit.key, () => this.healthOf(unit.key));
    }
  }

  /** These units' members may have changed: they get MEMBERS on the next resync. */
  membersChanged(keys: Iterable<string>): void {
    for (const key of keys) this.membersDirty.add(key);
  }

  /** The stored record of a unit changed (the inventory's watch). */
  recordChanged(key: string): void {
    this.send(key, () => {
      const v = this.o.inventory.gateways.get(key);
      return { type: "RECORD", record: v?.value ?? null, revision: v?.revision ?? 0 };
    });
  }

  /**
   * The periodic resync: units whose membership changed get their MEMBERS (so a burst of registrations costs
   * each unit at most one status write per resyncMs), and every unit a RESYNC.
   */
  resync(): void {
    if (this.membersDirty.size > 0) this.refreshTunnelProblems();
    for (const key of this.membersDirty) {
      this.send(key, () => {
        const unit = this.o.inventory.partition.units.get(key);
        return unit && { type: "MEMBERS", nodes: this.membersOf(unit), tunnelProblem: this.tunnelProblemOf(unit) };
      });
    }
    this.membersDirty.clear();
    for (const key of this.actors.keys()) this.send(key, () => ({ type: "RESYNC" }));
  }

  /**
   * Candidates whose health flipped at `now` (a sweep), and comeback holds that ran out: their units get a
   * fresh HEALTH straight away, ahead of queued bulk work. Returns whether a hold is still waiting.
   */
  healthChanged(flipped: Iterable<string>, now: number): boolean {
    const touched = new Set<string>();
    for (const node of flipped) {
      const key = this.o.inventory.candidateUnit.get(node);
      if (key) touched.add(key);
      // The first flip of a burst starts the clock; one that led to no new term is forgotten after 2 s.
      const since = key ? this.healthChangedAt.get(key) : undefined;
      if (key && (since === undefined || now - since > 2_000)) this.healthChangedAt.set(key, now);
      const c = this.o.tracker.candidates.get(node);
      if (c && !c.healthy && !c.alive) counters.inc("raven_heartbeats_missed_total", { domain: c.domain });
    }
    for (const [key, until] of this.comebackHolds) {
      if (now < until) continue;
      this.comebackHolds.delete(key);
      touched.add(key);
    }
    for (const key of touched) {
      const unit = this.o.inventory.partition.units.get(key);
      if (unit) this.actors.get(key)?.send(this.healthEvent(unit));
    }
    return this.comebackHolds.size > 0;
  }

  /**
   * What a heartbeat of `node` (believing `term`, acting or not) earns (shared/fencing.ts ackDecision), or null
   * when its unit has no actor or record here yet.
   */
  decideAck(
    key: string,
    node: string,
    healthy: boolean,
    term: number,
    acts: boolean,
  ): { decision: AckDecision; record: Gateway } | null {
    const snap = this.actors.get(key)?.getSnapshot();
    const record = snap?.context.record;
    if (!snap || !record) return null;
    const decision = ackDecision({
      named: record.status.activeEndpoints.some((e) => e.nodeName === node),
      healthy,
      settled: snap.value !== "writing" && snap.context.stamped,
      recordTerm: record.status.term,
      heartbeatTerm: term,
      heartbeatActs: acts,
    });
    return { decision, record };
  }

  /** To the whole domain, or (an acknowledgement, a correction) to the one candidate `to`. */
  publishAssignment(unit: Unit | undefined, record: Gateway, acks: Assignment["acks"], to?: string): void {
    if (!this.o.lease.valid()) return;
    const domain = unit?.domain ?? this.o.tracker.candidates.get(unit?.candidates[0] ?? "")?.domain;
    if (!domain) return;
    const body: Assignment = {
      domain,
      gateway: record.metadata.name,
      term: record.status.term,
      active: record.status.activeEndpoints.map((e) => ({ nodeName: e.nodeName, type: e.type })),
      acks,
      leaseMs: this.o.timings.gatewayFenceMs,
      coordinator: this.o.id,
      issuedAt: this.o.clock.wallMs(),
    };
    this.o.nc.publish(
      to ? subjects.gatewayAssignment(domain, to) : subjects.assignment(domain),
      encode("assignment", body),
    );
    counters.inc("raven_assignments_published_total");
  }

  // --- facts for the DomainActors ------------------------------------------------------------------------------

  private send(key: string, event: () => DomainEvent | undefined): void {
    if (!this.actors.has(key)) return;
    this.work.push(() => {
      const e = event();
      if (e) this.actors.get(key)?.send(e);
    });
  }

  /**
   * Tunnel mode refuses domains whose pod CIDRs overlap another domain's (shared/pod-cidrs.ts). A change of
   * one node's podCIDR can change the verdict of other units: those become dirty too.
   */
  private refreshTunnelProblems(): void {
    const { inventory } = this.o;
    const byDomain = new Map<string, string[]>();
    for (const unit of inventory.partition.units.values()) {
      if (unit.domain === undefined) continue;
      const list = byDomain.get(unit.domain) ?? [];
      for (const n of unit.nodes) {
        const cidr = inventory.nodes.get(n)?.podCIDR;
        if (cidr) list.push(cidr);
      }
      byDomain.set(unit.domain, list);
    }
    const next = podCidrProblems([...byDomain].map(([domain, podCidrs]) => ({ domain, podCidrs })));
    for (const unit of inventory.partition.units.values()) {
      const d = unit.domain;
      if (d !== undefined && (next.get(d) ?? null) !== (this.tunnelProblems.get(d) ?? null))
        this.membersDirty.add(unit.key);
    }
    this.tunnelProblems = next;
  }

  private tunnelProblemOf(unit: Unit): string | null {
    return unit.domain === undefined ? null : (this.tunnelProblems.get(unit.domain) ?? null);
  }

  private membersOf(unit: Unit) {
    return unit.nodes.map((n) => {
      const rec = this.o.inventory.nodes.get(n);
      return { nodeName: n, privateIP: rec?.internalIP ?? "", subnets: rec?.podCIDR ? [rec.podCIDR] : [] };
    });
  }

  private healthOf(key: string) {
    const unit = this.o.inventory.partition.units.get(key);
    return unit && this.healthEvent(unit);
  }

  /**
   * The unit's candidate health for its DomainActor. One hold: when the unit's current active is silent, a
   * candidate that came back from silence itself less than gatewayDeadAfterMs ago is not offered as healthy
   * yet. After a cut that silenced the whole domain, its candidates come back within milliseconds of each
   * other, in no particular order; without the hold, whichever was heard first would replace the active —
   * one election that the cut itself no longer costs (statecharts/domain.ts keptSilent). The active gets
   * that long to be heard; after it, the HEALTH is sent again (healthChanged) and the election goes on as
   * after any death. A candidate that was never silent (the usual standby of an active that died) is not held.
   */
  private healthEvent(unit: Unit) {
    const { tracker } = this.o;
    const now = this.o.clock.now();
    const healthy: string[] = [];
    const alive: string[] = [];
    const rising: string[] = [];
    const actives = this.actors.get(unit.key)?.getSnapshot().context.record?.status.activeEndpoints ?? [];
    const activeSilent = actives.some((e) => !tracker.candidates.get(e.nodeName)?.alive);
    const holdMs = this.o.timings.gatewayDeadAfterMs;
    for (const c of unit.candidates) {
      const h = tracker.candidates.get(c);
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

  // --- what the DomainActors decide --------------------------------------------------------------------------

  private async writeRecord(input: WriteInput) {
    if (!this.o.lease.valid()) throw new NotLeaderError("coordinator lease is not valid; not writing");
    const before = this.actors.get(input.key)?.getSnapshot().context.record?.status.term ?? 0;
    let revision: number;
    try {
      revision = await casPut(this.o.buckets.gateways, input.key, input.record, input.revision);
    } catch (err) {
      if (err instanceof CasConflictError) this.readFresh.add(input.key);
      throw err;
    }
    counters.inc("raven_record_writes_total");
    if (input.record.status.term !== before) {
      counters.inc("raven_elections_total");
      this.termChanges.record(input.key, this.o.clock.now());
      this.measureElection(input, before);
      this.o.log.info(
        {
          unit: input.key,
          domain: this.o.inventory.partition.units.get(input.key)?.domain ?? null,
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
    const unit = this.o.inventory.partition.units.get(input.key);
    const domain = unit?.domain ?? "";
    metrics.domainTerm.set({ domain, gateway: input.record.metadata.name }, input.record.status.term);
    const prev = this.actors.get(input.key)?.getSnapshot().context.record?.status.activeEndpoints ?? [];
    const now = input.record.status.activeEndpoints.map((e) => e.nodeName);
    if (termBefore > 0 && prev.some((e) => !now.includes(e.nodeName)))
      counters.inc("raven_failovers_total", { domain });
    const since = this.healthChangedAt.get(input.key);
    if (since !== undefined) {
      metrics.electionLatency.observe({ domain }, Math.max(0, this.o.clock.now() - since) / 1000);
      this.healthChangedAt.delete(input.key);
    }
  }

  /** The acknowledgements an assignment after a write carries: the named candidates that earn one (fencing.ts). */
  private acksFor(record: Gateway): Assignment["acks"] {
    const acks: Assignment["acks"] = [];
    const seen = new Set<string>();
    for (const e of record.status.activeEndpoints) {
      if (seen.has(e.nodeName)) continue;
      seen.add(e.nodeName);
      const h = this.o.tracker.candidates.get(e.nodeName);
      if (!h) continue;
      const decision = ackDecision({
        named: true,
        healthy: h.healthy,
        settled: true, // just written by this coordinator
        recordTerm: record.status.term,
        heartbeatTerm: h.term,
        heartbeatActs: h.acting.length > 0,
      });
      if (decision === AckDecision.Ack) acks.push({ nodeName: e.nodeName, seq: h.seq });
    }
    return acks;
  }
}
