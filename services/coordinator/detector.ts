// The failure detector's rule, as a pure function: on each sweep, may the candidates that have been silent
// for deadAfterMs be declared dead now, or is the silence more likely the coordinator's own?
//
// A busy host delays heartbeats for everyone at once: a coordinator whose event loop stalled has not read
// what arrived meanwhile, and a starved hub or a saturated machine holds every domain's heartbeats back
// together. A single silent candidate among punctual ones is a failure of that candidate; silence in several
// domains at once is more likely on the path they share. So:
//   1. this sweep ran more than STALL_MS late (the loop stalled: timers run before the I/O that queued
//      meanwhile), or the loop was saturated since the last sweep: judge nobody this round;
//   2. candidates silent for deadAfterMs are suspects; none: nothing to judge;
//   3. when candidates of two or more domains are late at the same time (silent for at least lateAfterMs,
//      half of deadAfterMs), the silence is correlated: wait, for up to maxDeferMs since it began, for the
//      heartbeats to come in (they usually arrive in a burst); past that, judge anyway (a hub that really lost
//      several domains must still fail them over);
//   4. otherwise the suspects are dead.
// Safety: fencing needs only that nobody is declared dead *before* deadAfterMs of silence, because an active
// stops acting gatewayFenceMs (< deadAfterMs) after sending its last acknowledged heartbeat. Every rule here
// only delays a declaration, never advances one, so fencing holds whatever the rule decides; what the rule
// trades is failover time (by at most maxDeferMs, and only while several domains are silent together) for
// calm on a busy host. A candidate heard again before it was declared dead keeps its health: its late
// heartbeat is not a recovery (services/coordinator/health.ts).

// Each candidate has its own dead-after window: a standby heartbeats less often and says so (health.ts),
// and its window is stretched by as much; "late" is half of a candidate's own window.

export type Silence = Readonly<{ node: string; domain: string; silentMs: number; deadAfterMs: number }>;

export type DetectorInput = Readonly<{
  /** The shortest dead-after window (an active's): a correlated silence is waited out MAX_DEFER_FACTOR of it. */
  deadAfterMs: number;
  /** The candidates still counted alive, with how long each has been silent. */
  candidates: readonly Silence[];
  /** How much later than its period this sweep ran. */
  sweepLateMs: number;
  /** Event-loop utilisation since the previous sweep (0..1). */
  loopUtilisation: number;
  /** How long a correlated silence has already been waited out (0 when none is). */
  deferredForMs: number;
}>;

export type Verdict =
  | Readonly<{ kind: "judge"; dead: readonly string[] }>
  | Readonly<{ kind: "defer"; reason: "stall" | "saturated" | "correlated"; suspects: readonly string[] }>;

/** A sweep this much later than its period means the event loop stalled. */
export const STALL_MS = 50;
/** Event-loop utilisation above which the coordinator may not have read the heartbeats that arrived. */
export const SATURATED = 0.97;
/** How long a silence across several domains is waited out, in deadAfterMs. */
export const MAX_DEFER_FACTOR = 2;

export function judgeSilence(input: DetectorInput): Verdict {
  const { deadAfterMs, candidates } = input;
  const suspects = candidates.filter((c) => c.silentMs >= c.deadAfterMs).map((c) => c.node);
  if (input.sweepLateMs > STALL_MS) return { kind: "defer", reason: "stall", suspects };
  if (input.loopUtilisation > SATURATED) return { kind: "defer", reason: "saturated", suspects };
  if (suspects.length === 0) return { kind: "judge", dead: [] };
  const lateDomains = new Set(candidates.filter((c) => c.silentMs >= c.deadAfterMs / 2).map((c) => c.domain));
  if (lateDomains.size >= 2 && input.deferredForMs < MAX_DEFER_FACTOR * deadAfterMs)
    return { kind: "defer", reason: "correlated", suspects };
  return { kind: "judge", dead: suspects };
}
