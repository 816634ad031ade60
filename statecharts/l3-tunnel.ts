// L3TunnelActor: the lifecycle of the security association (IPsec/WireGuard) from an active gateway to ONE
// peer domain's active gateway, in tunnel mode.
//   idle → negotiating → up ⇄ rekeying / degraded → down → negotiating …; negotiating fails → backoff;
//   closed (final) when the role or the peer domain goes.
// The machine decides lifecycle only: it tells the service when to (re)negotiate (`negotiate`) and reports
// every state it enters (`tunnelState`). The service owns the VPN driver (apply/status), pings through the
// tunnel and feeds the results back as STATUS/PROBE; bytes never pass through here. Deadlines (negotiation,
// rekey, retry) live in context and are checked on TICK, so they survive a persisted snapshot.
// Fencing (shared/fencing.ts): the peer endpoint is fenced by the Gateway record's term. A PEER with an older term is ignored
// (and reported as `staleTerm`); a newer one naming another gateway (node or address) renegotiates at once
// from any state, while a newer one naming the same gateway only advances the fence (the term also grows on
// proxy-only changes of the peer's record, which must not tear a healthy tunnel down). STATUS and PROBE carry the
// peerTerm they were taken for and are ignored unless it is the current one, so a late report about the old
// peer gateway can never move the tunnel to the new one up or down.
import { assign, emit, setup } from "xstate";
import { assertNever } from "../shared/errors";
import { isStaleTerm } from "../shared/fencing";
import { backoffMs } from "./retry";

/** `peer` is the peer domain; `driver` names the VPN driver the service applies this tunnel with. */
export type L3TunnelInput = Readonly<{
  peer: string;
  driver: string;
  retryMs: number;
  negotiateTimeoutMs: number;
  probeFailLimit: number;
}>;

export type L3TunnelContext = L3TunnelInput & {
  peerNode: string | null;
  peerAddr: string | null;
  /** Term of the Gateway record that named peerNode (0 = no peer yet). */
  peerTerm: number;
  saId: string | null;
  /** Consecutive failed negotiations or lost associations (reset once the driver reports up). */
  failures: number;
  retryAt: number;
  /** End of the current negotiation or rekey. */
  deadline: number;
  lastError: string | null;
  latencyMs: number | null;
  /** Consecutive failed probes. */
  probeFails: number;
  bytesIn: number | null;
  bytesOut: number | null;
  /** `now` of the event that entered the current state (unchanged by CLOSE, which carries no time). */
  since: number;
};

export type L3TunnelEvent =
  | { type: "PEER"; node: string; addr: string; term: number; now: number }
  | {
      type: "STATUS";
      peerTerm: number;
      state: "up" | "connecting" | "down";
      saId: string | null;
      error: string | null;
      bytesIn: number | null;
      bytesOut: number | null;
      now: number;
    }
  | { type: "PROBE"; peerTerm: number; ok: boolean; rttMs: number | null; now: number }
  | { type: "TICK"; now: number }
  | { type: "CLOSE" };

export type L3TunnelState = "idle" | "negotiating" | "up" | "rekeying" | "degraded" | "down" | "backoff" | "closed";

export type L3TunnelEmitted =
  | {
      type: "tunnelState";
      state: L3TunnelState;
      peer: string;
      peerNode: string | null;
      peerTerm: number;
      error: string | null;
    }
  | { type: "negotiate"; peer: string; peerNode: string; peerAddr: string; peerTerm: number }
  | { type: "staleTerm"; peer: string; term: number; current: number };

type Viewed = "peer" | "peerNode" | "peerTerm" | "latencyMs" | "bytesIn" | "bytesOut" | "lastError" | "since";
export type L3TunnelView = Readonly<Pick<L3TunnelContext, Viewed> & { state: L3TunnelState }>;

type Peer = Extract<L3TunnelEvent, { type: "PEER" }>;
type Status = Extract<L3TunnelEvent, { type: "STATUS" }>;
type Probe = Extract<L3TunnelEvent, { type: "PROBE" }>;
/** Why a failure is counted; the message when the driver gave none. */
type FailReason = "refused" | "negotiationTimeout" | "lost" | "rekeyTimeout";

const asPeer = (e: L3TunnelEvent): Peer | null => (e.type === "PEER" ? e : null);
/** The STATUS / PROBE, only if it is about the current peer term (the fence). */
const status = (c: L3TunnelContext, e: L3TunnelEvent): Status | null =>
  e.type === "STATUS" && e.peerTerm === c.peerTerm ? e : null;
const probe = (c: L3TunnelContext, e: L3TunnelEvent): Probe | null =>
  e.type === "PROBE" && e.peerTerm === c.peerTerm ? e : null;
/** Entry actions also see xstate's init event, which has no `now`. */
const nowOf = (e: { type: string }): number | null => ("now" in e && typeof e.now === "number" ? e.now : null);
const tickAt = (e: L3TunnelEvent, at: number): boolean => e.type === "TICK" && e.now >= at;

/** Counts one failure and sets the retry deadline: taken on every transition into backoff and into down. */
const fail = (reason: FailReason) => ({ type: "failed", params: { reason } }) as const;

function failMessage(reason: FailReason, c: L3TunnelContext): string {
  switch (reason) {
    case "refused":
      return "negotiation failed";
    case "negotiationTimeout":
      return `negotiation timed out after ${c.negotiateTimeoutMs} ms`;
    case "lost":
      return "security association lost";
    case "rekeyTimeout":
      return `rekey timed out after ${c.negotiateTimeoutMs} ms`;
    default:
      return assertNever(reason, "failure reason");
  }
}

/** In up and degraded alike: the same SA counts, a new one is a rekey, anything else lost it. */
const statusWhileEstablished = [
  { guard: "statusUpSameSa", actions: "counted" },
  { guard: "statusUpNewSa", target: "rekeying", actions: "counted" },
  { guard: "statusNotUp", target: "down", actions: fail("lost") },
] as const;

export const l3TunnelMachine = setup({
  types: {
    context: {} as L3TunnelContext,
    events: {} as L3TunnelEvent,
    input: {} as L3TunnelInput,
    emitted: {} as L3TunnelEmitted,
  },
  guards: {
    staleTerm: ({ context, event }) => isStaleTerm(asPeer(event)?.term ?? Infinity, context.peerTerm),
    samePeer: ({ context, event }) => {
      const p = asPeer(event);
      return !!p && p.term === context.peerTerm && p.node === context.peerNode && p.addr === context.peerAddr;
    },
    sameGatewayNewerTerm: ({ context, event }) => {
      const p = asPeer(event);
      return (
        !!p &&
        p.term > context.peerTerm &&
        context.peerNode !== null &&
        p.node === context.peerNode &&
        p.addr === context.peerAddr
      );
    },
    statusUpSameSa: ({ context, event }) => {
      const s = status(context, event);
      return s?.state === "up" && s.saId === context.saId;
    },
    statusUpNewSa: ({ context, event }) => {
      const s = status(context, event);
      return s?.state === "up" && s.saId !== context.saId;
    },
    statusUp: ({ context, event }) => status(context, event)?.state === "up",
    statusDown: ({ context, event }) => status(context, event)?.state === "down",
    statusNotUp: ({ context, event }) => (status(context, event)?.state ?? "up") !== "up",
    probeOk: ({ context, event }) => probe(context, event)?.ok === true,
    probeFailed: ({ context, event }) => probe(context, event)?.ok === false,
    probeLimit: ({ context: c, event }) => probe(c, event)?.ok === false && c.probeFails + 1 >= c.probeFailLimit,
    deadlinePassed: ({ context, event }) => tickAt(event, context.deadline),
    retryDue: ({ context, event }) => tickAt(event, context.retryAt),
  },
  actions: {
    // The byte counters belonged to the old association too.
    adoptPeer: assign(({ event }) => {
      const p = asPeer(event)!;
      const reset = { saId: null, failures: 0, probeFails: 0, latencyMs: null, bytesIn: null, bytesOut: null };
      return { peerNode: p.node, peerAddr: p.addr, peerTerm: p.term, ...reset };
    }),
    adoptTerm: assign({ peerTerm: ({ context, event }) => asPeer(event)?.term ?? context.peerTerm }),
    stamp: assign({ since: ({ context, event }) => nowOf(event) ?? context.since }),
    armDeadline: assign({ deadline: ({ context, event }) => (nowOf(event) ?? 0) + context.negotiateTimeoutMs }),
    established: assign(({ context, event }) => {
      const s = status(context, event)!;
      return { saId: s.saId, bytesIn: s.bytesIn, bytesOut: s.bytesOut, failures: 0, lastError: null };
    }),
    /** Same association, fresh counters; or, while rekeying, the newest association id. */
    counted: assign(({ context, event }) => {
      const s = status(context, event)!;
      return { saId: s.saId, bytesIn: s.bytesIn, bytesOut: s.bytesOut };
    }),
    failed: assign(({ context, event }, params: { reason: FailReason }) => {
      const failures = context.failures + 1;
      return {
        failures,
        retryAt: (nowOf(event) ?? 0) + backoffMs(context.retryMs, failures),
        lastError: status(context, event)?.error ?? failMessage(params.reason, context),
      };
    }),
    noteError: assign({ lastError: ({ context, event }) => status(context, event)?.error ?? context.lastError }),
    probed: assign(({ context, event }) => ({ latencyMs: probe(context, event)!.rttMs, probeFails: 0 })),
    missedProbe: assign({ probeFails: ({ context }) => context.probeFails + 1 }),
    probesLost: assign({ lastError: ({ context }) => `${context.probeFails} probes in a row failed` }),
    recovered: assign({ lastError: null }),
    report: emit(({ context: c }, params: { state: L3TunnelState }) => {
      const { peer, peerNode, peerTerm, lastError: error } = c;
      return { type: "tunnelState" as const, state: params.state, peer, peerNode, peerTerm, error };
    }),
    // negotiating is only ever entered after a PEER was adopted, so the endpoint is known.
    negotiate: emit(({ context: c }) => {
      return {
        type: "negotiate" as const,
        peer: c.peer,
        peerNode: c.peerNode!,
        peerAddr: c.peerAddr!,
        peerTerm: c.peerTerm,
      };
    }),
    reportStale: emit(({ context: c, event }) => {
      return { type: "staleTerm" as const, peer: c.peer, term: asPeer(event)?.term ?? -1, current: c.peerTerm };
    }),
  },
}).createMachine({
  id: "l3tunnel",
  context: ({ input }) => ({
    ...input,
    peerNode: null,
    peerAddr: null,
    peerTerm: 0,
    saId: null,
    failures: 0,
    retryAt: 0,
    deadline: 0,
    lastError: null,
    latencyMs: null,
    probeFails: 0,
    bytesIn: null,
    bytesOut: null,
    since: 0,
  }),
  initial: "idle",
  on: {
    // From every non-final state: the peer gateway moved (or first appeared): renegotiate at once, no backoff.
    PEER: [
      { guard: "staleTerm", actions: "reportStale" },
      { guard: "samePeer" },
      { guard: "sameGatewayNewerTerm", actions: "adoptTerm" },
      { target: ".negotiating", actions: "adoptPeer" },
    ],
    CLOSE: ".closed",
  },
  states: {
    idle: { entry: ["stamp", { type: "report", params: { state: "idle" } }] },
    negotiating: {
      entry: ["stamp", "armDeadline", { type: "report", params: { state: "negotiating" } }, "negotiate"],
      on: {
        STATUS: [
          { guard: "statusUp", target: "up", actions: "established" },
          { guard: "statusDown", target: "backoff", actions: fail("refused") },
        ],
        TICK: { guard: "deadlinePassed", target: "backoff", actions: fail("negotiationTimeout") },
      },
    },
    up: {
      entry: ["stamp", { type: "report", params: { state: "up" } }],
      on: {
        STATUS: statusWhileEstablished,
        PROBE: [
          { guard: "probeLimit", target: "degraded", actions: ["missedProbe", "probesLost"] },
          { guard: "probeFailed", actions: "missedProbe" },
          { guard: "probeOk", actions: "probed" },
        ],
      },
    },
    rekeying: {
      entry: ["stamp", "armDeadline", { type: "report", params: { state: "rekeying" } }],
      on: {
        // Yet another association id keeps rekeying, but not its deadline: a flapping SA still ends in down.
        // "connecting" is what a rekey in progress looks like, so only "down" (or the deadline) loses it.
        STATUS: [
          { guard: "statusUpSameSa", target: "up", actions: "counted" },
          { guard: "statusUpNewSa", actions: "counted" },
          { guard: "statusDown", target: "down", actions: fail("lost") },
        ],
        PROBE: { guard: "probeOk", target: "up", actions: "probed" },
        TICK: { guard: "deadlinePassed", target: "down", actions: fail("rekeyTimeout") },
      },
    },
    degraded: {
      entry: ["stamp", { type: "report", params: { state: "degraded" } }],
      on: {
        STATUS: statusWhileEstablished,
        PROBE: [
          { guard: "probeOk", target: "up", actions: ["probed", "recovered"] },
          { guard: "probeFailed", actions: "missedProbe" },
        ],
      },
    },
    down: {
      entry: ["stamp", { type: "report", params: { state: "down" } }],
      on: {
        STATUS: [
          { guard: "statusUp", target: "up", actions: "established" },
          { guard: "statusDown", actions: "noteError" },
        ],
        TICK: { guard: "retryDue", target: "negotiating" },
      },
    },
    backoff: {
      entry: ["stamp", { type: "report", params: { state: "backoff" } }],
      on: {
        // The peer may initiate and bring the association up while we wait.
        STATUS: [
          { guard: "statusUp", target: "up", actions: "established" },
          { guard: "statusDown", actions: "noteError" },
        ],
        TICK: { guard: "retryDue", target: "negotiating" },
      },
    },
    closed: {
      type: "final",
      entry: ["stamp", { type: "report", params: { state: "closed" } }],
      // An actor drops events once done, but a pure transition() on a done snapshot would still take the
      // root-level PEER/CLOSE: absorb them here so closed stays closed either way.
      on: { PEER: {}, CLOSE: {} },
    },
  },
});

/** The reporting view of a snapshot of this machine. */
export function l3TunnelView(snapshot: { value: unknown; context: L3TunnelContext }): L3TunnelView {
  const { peer, peerNode, peerTerm, latencyMs, bytesIn, bytesOut, lastError, since } = snapshot.context;
  const state = snapshot.value as L3TunnelState;
  return { peer, peerNode, peerTerm, state, latencyMs, bytesIn, bytesOut, lastError, since };
}

/** Whether routes through this tunnel may be used: an association exists (maybe rekeying or slow). */
export function isTunnelUsable(state: L3TunnelState): boolean {
  return USABLE[state];
}
// A Record, not a boolean expression, so that a new state must be classified to compile.
const USABLE: Readonly<Record<L3TunnelState, boolean>> = {
  idle: false,
  negotiating: false,
  up: true,
  rekeying: true,
  degraded: true,
  down: false,
  backoff: false,
  closed: false,
};
