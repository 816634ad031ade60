// Fencing: the one rule for who may act for a Gateway, and until when. Pure functions, no clock (time comes
// in as arguments); every place that enforces a term or a lease calls one of them:
//
// - ackDecision: which heartbeat earns its candidate a lease (the coordinator, services/coordinator/domain-pool.ts).
// - gatewayLeaseEnd: the lease an acknowledgement gives (the gateway actor, services/gateway-actor/gateway.ts).
// - leaseRunning, isStaleTerm: the GatewayActor acts only with a lease and obeys the newest term
//   (statecharts/gateway.ts); the proxy thread reads the same lease from shared memory
//   (services/gateway-actor/proxy/lease-cell.ts).
// - handoverMs: a live active leaves the record a term before its successor enters it (the DomainActor's
//   `plan`, statecharts/domain.ts).
// - isStaleTerm: the edge refuses proxy channels of an older term (services/gateway-actor/proxy/edge.ts); a
//   TunnelActor ignores reports about an older peer term (statecharts/l3-tunnel.ts).
// - coordinatorLeaseEnd, mayTakeLease: one coordinator acts at a time (services/coordinator/lease.ts).
// - fenceTimingsProblem: the timings the argument below needs (shared/config.ts).
//
// The invariant they keep together: for each Gateway and endpoint type, no more than `replicas` candidates
// act at once, and every one of them acts under the record's current term.
//
// Why it holds, without synchronised clocks:
// 1. A candidate acts only while its lease runs, and the lease ends fenceMs after the *sending* time of the
//    newest heartbeat the coordinator acknowledged, measured on the candidate's own clock. The coordinator
//    acknowledges a heartbeat only when it arrives while the candidate is named in the record, healthy, and
//    the record is settled (not mid-write, and written once by this coordinator, so a write of a deposed
//    coordinator cannot land behind an acknowledgement).
// 2. The coordinator names a successor only after the old active was silent for deadAfterMs (> fenceMs) on
//    the coordinator's clock, or, when the old active is alive, in a second write handoverMs (> fenceMs)
//    after a first write that removed it. Either way the old active's last lease was granted for a heartbeat
//    sent before that silence or that removal began, so it ran out before the successor was named: transit
//    delay only makes the lease end earlier relative to the coordinator's view, never later.
// 3. Terms only grow (compare-and-swap on the record's revision) and everyone obeys the highest term seen;
//    a message carrying an older term is refused. A candidate that hears a newer term without itself in it
//    stops acting at once, lease or not.
// 4. Coordinators are fenced the same way: the holder acts until leaseMs after sending its newest
//    successful renewal; a campaigner takes the key only after seeing one revision for a whole leaseMs.
//
// What fencing does not claim: that a deposed active stops the bytes already in flight, or that a cut-off
// candidate learns of its replacement (it learns nothing; its lease simply runs out).

/** When the lease that an acknowledgement of the heartbeat sent at `heartbeatSentAt` gives ends (candidate's clock). */
export function gatewayLeaseEnd(heartbeatSentAt: number, fenceMs: number): number {
  return heartbeatSentAt + fenceMs;
}

/** Whether a lease that ends at `leaseUntil` still runs at `now`. The end itself is already outside. */
export function leaseRunning(leaseUntil: number, now: number): boolean {
  return now < leaseUntil;
}

/** Whether something carrying `term` is older than the newest term seen (`current`) and must be refused. */
export function isStaleTerm(term: number, current: number): boolean {
  return term < current;
}

/**
 * How long the DomainActor waits after a write that removed a live active before it names a successor: the
 * removed active's lease (fenceMs at most) has run out by then, and one sweep more covers a lease granted
 * just before the removal was seen.
 */
export function handoverMs(fenceMs: number, sweepMs: number): number {
  return fenceMs + sweepMs;
}

/** What the coordinator knows when a candidate's heartbeat arrives. */
export type AckInput = Readonly<{
  /** The current record names the candidate active for some endpoint type. */
  named: boolean;
  /** The HealthTracker counts it healthy (risen, not draining, data path fine). */
  healthy: boolean;
  /** The record is settled: loaded, written once by this coordinator, and no write in flight. */
  settled: boolean;
  /** The record's term, and the term and acting types the heartbeat carries. */
  recordTerm: number;
  heartbeatTerm: number;
  heartbeatActs: boolean;
}>;

export const AckDecision = {
  /** Acknowledge: the candidate's lease is extended. */
  Ack: "ack",
  /** Send it the current assignment without an acknowledgement: it is behind (older term, or acts unnamed). */
  Correct: "correct",
  /** Nothing to say. */
  Ignore: "ignore",
} as const;
export type AckDecision = (typeof AckDecision)[keyof typeof AckDecision];

/**
 * The coordinator's answer to a heartbeat. Only a healthy candidate named in a settled record is
 * acknowledged: an unnamed one must not gain a lease, an unhealthy one is about to be replaced and its lease
 * must run out first (point 2 above), and an unsettled record may be older than one being written. A
 * candidate that acts or believes a term the record does not is told the current assignment, with no lease.
 */
export function ackDecision(i: AckInput): AckDecision {
  if (!i.settled) return AckDecision.Ignore;
  if (i.named && i.healthy) return AckDecision.Ack;
  const confused = i.heartbeatTerm !== i.recordTerm || (i.heartbeatActs && !i.named);
  return confused ? AckDecision.Correct : AckDecision.Ignore;
}

/** When a coordinator that sent its newest successful renewal at `renewalSentAt` must stop acting. */
export function coordinatorLeaseEnd(renewalSentAt: number, leaseMs: number): number {
  return renewalSentAt + leaseMs;
}

/**
 * Whether a campaigner may take the coordinator lease: nobody holds it, or it has seen the same revision for a
 * whole leaseMs since it first saw it (by then the holder's validity, counted from before that revision was
 * written, is over).
 */
export function mayTakeLease(held: boolean, revisionSeenSince: number, now: number, leaseMs: number): boolean {
  return !held || now - revisionSeenSince >= leaseMs;
}

export type FenceTimings = Readonly<{ heartbeatMs: number; fenceMs: number; deadAfterMs: number }>;

/**
 * Why these timings would break the argument above (the setting to blame and the reason), or null:
 * a lease must end before its holder can be declared dead, and outlive at least two heartbeat periods so
 * one late acknowledgement does not lapse it.
 */
export function fenceTimingsProblem(
  t: FenceTimings,
): { key: "gatewayFenceMs" | "gatewayHeartbeatMs"; reason: string } | null {
  if (t.fenceMs >= t.deadAfterMs)
    return { key: "gatewayFenceMs", reason: `must be below gatewayDeadAfterMs (${t.deadAfterMs})` };
  if (t.heartbeatMs * 2 > t.fenceMs)
    return { key: "gatewayHeartbeatMs", reason: `must be at most half of gatewayFenceMs (${t.fenceMs})` };
  return null;
}
