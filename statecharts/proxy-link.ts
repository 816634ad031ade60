// ProxyLinkActor: the lifecycle of one proxy-mode peer link of a gateway: the set of spare channel
// connections an active edge gateway keeps dialed out to one cloud gateway.
//   connecting → up ⇄ degraded → backoff → connecting …, and closed (final) when the peer or the role goes.
// The machine decides *whether* to dial (`wantsDials`) and when to retry after failures (backoff deadline in
// context, checked on TICK, so it survives a persisted snapshot); the service does the dialing and reports
// back. Bytes never pass through it: a spare becomes a channel outside the statechart.
import { assign, emit, setup } from "xstate";
import { backoffMs } from "./retry";

export type ProxyLinkInput = Readonly<{ peer: string; retryMs: number }>;

export type ProxyLinkContext = {
  peer: string;
  retryMs: number;
  /** Spare connections the peer has welcomed and not yet used. */
  spares: number;
  /** Consecutive failed dials (reset by a welcomed spare). */
  failures: number;
  retryAt: number;
  lastError: string | null;
};

export type ProxyLinkEvent =
  | { type: "SPARE_UP" }
  | { type: "SPARE_GONE" }
  | { type: "DIAL_FAILED"; error: string; now: number }
  | { type: "TICK"; now: number }
  | { type: "CLOSE" };

export type ProxyLinkState = "connecting" | "up" | "degraded" | "backoff" | "closed";
export type ProxyLinkEmitted = { type: "linkState"; state: ProxyLinkState; peer: string; error: string | null };

export const proxyLinkMachine = setup({
  types: {
    context: {} as ProxyLinkContext,
    events: {} as ProxyLinkEvent,
    input: {} as ProxyLinkInput,
    emitted: {} as ProxyLinkEmitted,
  },
  guards: {
    lastSpare: ({ context }) => context.spares <= 1,
    retryDue: ({ context, event }) => event.type === "TICK" && event.now >= context.retryAt,
  },
  actions: {
    spareUp: assign({ spares: ({ context }) => context.spares + 1, failures: 0, lastError: null }),
    spareGone: assign({ spares: ({ context }) => Math.max(0, context.spares - 1) }),
    dialFailed: assign(({ context, event }) => {
      if (event.type !== "DIAL_FAILED") return {};
      const failures = context.failures + 1;
      return { failures, lastError: event.error, retryAt: event.now + backoffMs(context.retryMs, failures) };
    }),
    noteError: assign({ lastError: ({ event }) => (event.type === "DIAL_FAILED" ? event.error : null) }),
    report: emit(({ context }, params: { state: ProxyLinkState }) => ({
      type: "linkState" as const,
      state: params.state,
      peer: context.peer,
      error: context.lastError,
    })),
  },
}).createMachine({
  id: "proxyLink",
  context: ({ input }) => ({
    peer: input.peer,
    retryMs: input.retryMs,
    spares: 0,
    failures: 0,
    retryAt: 0,
    lastError: null,
  }),
  initial: "connecting",
  on: { CLOSE: ".closed" },
  states: {
    connecting: {
      entry: { type: "report", params: { state: "connecting" } },
      on: {
        SPARE_UP: { target: "up", actions: "spareUp" },
        DIAL_FAILED: { target: "backoff", actions: "dialFailed" },
      },
    },
    up: {
      entry: { type: "report", params: { state: "up" } },
      on: {
        SPARE_UP: { actions: "spareUp" },
        SPARE_GONE: [{ guard: "lastSpare", target: "connecting", actions: "spareGone" }, { actions: "spareGone" }],
        // In `up` and `degraded` there is always a spare: the last one leaving moves to connecting/backoff.
        DIAL_FAILED: { target: "degraded", actions: "dialFailed" },
      },
    },
    degraded: {
      entry: { type: "report", params: { state: "degraded" } },
      on: {
        SPARE_UP: { target: "up", actions: "spareUp" },
        SPARE_GONE: [{ guard: "lastSpare", target: "backoff", actions: "spareGone" }, { actions: "spareGone" }],
        DIAL_FAILED: { actions: "dialFailed" },
        TICK: { guard: "retryDue", target: "up" },
      },
    },
    backoff: {
      entry: { type: "report", params: { state: "backoff" } },
      on: {
        SPARE_UP: { target: "up", actions: "spareUp" },
        SPARE_GONE: { actions: "spareGone" },
        // The other dials of the round that failed report too: one round counts once toward the backoff.
        DIAL_FAILED: { actions: "noteError" },
        TICK: { guard: "retryDue", target: "connecting" },
      },
    },
    closed: { type: "final", entry: { type: "report", params: { state: "closed" } } },
  },
});

/** Whether the service should dial more spares now (it tops the pool up to its target). */
export function wantsDials(state: ProxyLinkState): boolean {
  return state === "connecting" || state === "up";
}
