// Coordinator: active + standby by a lease in KV. In `standby` the invoked `campaign` watches the lease and
// resolves once it has taken it (the holder's renewals stopped for a whole lease); in `active` the invoked
// `hold` renews it and reports LEASE_LOST when a renewal finds it taken (the service reports its expiry, on its
// next sweep; every write and acknowledgement checks the lease itself at the moment it acts). The service runs one
// DomainActor per unit exactly while this machine is `active`, so a deposed coordinator stops deciding
// before the next one starts.
//
// Two phases the service acts on live here as substates:
// - standby.dormant / standby.following: a standby follows gateway heartbeats (and so is warm for a takeover)
//   only while the campaign finds the holder stale or releasing (HOLDER_STALE / HOLDER_FRESH);
// - active.warming / active.deciding: a new active judges nobody and elects nobody until its health view is
//   warm (WARM: every live candidate heard for a whole dead-after window), so a takeover re-elects nothing
//   because of what it has not heard yet.
//
// The DomainActors are root actors owned by the service, not children spawned here: spawning and stopping
// children costs xstate O(children) each (1,000 spawns took 0.6 s and 1,000 stops 3.2 s in one tick here),
// long enough to cost the coordinator its lease.
import { assign, fromCallback, fromPromise, setup } from "xstate";
import { errorMessage } from "./retry";

export type CoordinatorInput = Readonly<{ id: string; retryMs: number }>;

export type CoordinatorContext = {
  id: string;
  retryMs: number;
  lastError: string | null;
};

export type CoordinatorEvent =
  | { type: "LEASE_LOST"; reason: string }
  | { type: "HOLDER_STALE" }
  | { type: "HOLDER_FRESH" }
  | { type: "WARM" }
  | { type: "STOP" };

export const coordinatorMachine = setup({
  types: {
    context: {} as CoordinatorContext,
    events: {} as CoordinatorEvent,
    input: {} as CoordinatorInput,
  },
  actors: {
    campaign: fromPromise<void, { id: string }>(async () => {
      throw new Error("campaign not provided");
    }),
    hold: fromCallback<CoordinatorEvent, { id: string }>(() => {
      throw new Error("hold not provided");
    }),
  },
  actions: {
    storeFailure: assign((_, params: { error: unknown }) => ({ lastError: errorMessage(params.error) })),
    storeLoss: assign({ lastError: ({ event }) => (event.type === "LEASE_LOST" ? event.reason : null) }),
    /** Entering active.deciding: the service sends every unit its health. */
    warmed: () => {},
  },
  delays: {
    retryDelay: ({ context }) => context.retryMs,
  },
}).createMachine({
  id: "coordinator",
  context: ({ input }) => ({ id: input.id, retryMs: input.retryMs, lastError: null }),
  initial: "standby",
  on: {
    STOP: ".stopped",
  },
  states: {
    standby: {
      invoke: {
        src: "campaign",
        input: ({ context }) => ({ id: context.id }),
        onDone: "active",
        onError: {
          target: "retrying",
          actions: { type: "storeFailure", params: ({ event }) => ({ error: event.error }) },
        },
      },
      initial: "dormant",
      states: {
        dormant: { on: { HOLDER_STALE: "following" } },
        following: { on: { HOLDER_FRESH: "dormant" } },
      },
    },
    // The campaign retries mesh errors itself; a rejection is unexpected, so wait before campaigning again.
    retrying: {
      after: { retryDelay: "standby" },
    },
    active: {
      invoke: { src: "hold", input: ({ context }) => ({ id: context.id }) },
      on: {
        LEASE_LOST: { target: "standby", actions: "storeLoss" },
      },
      initial: "warming",
      states: {
        warming: { on: { WARM: "deciding" } },
        deciding: { entry: "warmed" },
      },
    },
    stopped: { type: "final" },
  },
});
