// Coordinator: active + standby by a lease in KV. In `standby` the invoked `campaign` watches the lease and
// resolves once it has taken it (the holder's renewals stopped for a whole lease); in `active` the invoked
// `hold` renews it and reports LEASE_LOST the moment it can no longer prove it holds it. Only while active
// does the coordinator run one DomainActor per unit (spawned on UNITS, stopped on leaving active), so a
// deposed coordinator stops deciding before the next one starts.
import { assign, enqueueActions, fromCallback, fromPromise, setup } from "xstate";
import { domainMachine } from "./domain";

export type CoordinatorInput = Readonly<{ id: string; retryMs: number; handoverMs: number }>;

export type UnitRef = Readonly<{ key: string; name: string; solo: boolean }>;

export type CoordinatorContext = {
  id: string;
  retryMs: number;
  handoverMs: number;
  units: UnitRef[];
  /** Keys of the running DomainActors (children with the same id). */
  running: string[];
  lastError: string | null;
};

export type CoordinatorEvent =
  | { type: "UNITS"; units: UnitRef[] }
  | { type: "LEASE_LOST"; reason: string }
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
    domain: domainMachine,
  },
  actions: {
    storeUnits: assign({ units: ({ event }) => (event.type === "UNITS" ? event.units : []) }),
    reconcileDomains: enqueueActions(({ context, enqueue }) => {
      const wanted = new Map(context.units.map((u) => [u.key, u]));
      for (const key of context.running) if (!wanted.has(key)) enqueue.stopChild(key);
      const running = new Set(context.running);
      for (const u of context.units) {
        if (running.has(u.key)) continue;
        enqueue.spawnChild("domain", {
          id: u.key,
          input: { key: u.key, name: u.name, solo: u.solo, retryMs: context.retryMs, handoverMs: context.handoverMs },
        });
      }
      enqueue.assign({ running: context.units.map((u) => u.key) });
    }),
    stopDomains: enqueueActions(({ context, enqueue }) => {
      for (const key of context.running) enqueue.stopChild(key);
      enqueue.assign({ running: [] });
    }),
    storeFailure: assign({
      lastError: ({ event }) => {
        const err = (event as { error?: unknown }).error;
        return err instanceof Error ? err.message : String(err);
      },
    }),
    storeLoss: assign({ lastError: ({ event }) => (event.type === "LEASE_LOST" ? event.reason : null) }),
  },
  delays: {
    retryDelay: ({ context }) => context.retryMs,
  },
}).createMachine({
  id: "coordinator",
  context: ({ input }) => ({
    id: input.id,
    retryMs: input.retryMs,
    handoverMs: input.handoverMs,
    units: [],
    running: [],
    lastError: null,
  }),
  initial: "standby",
  on: {
    UNITS: { actions: "storeUnits" },
    STOP: ".stopped",
  },
  states: {
    standby: {
      invoke: {
        src: "campaign",
        input: ({ context }) => ({ id: context.id }),
        onDone: "active",
        onError: { target: "retrying", actions: "storeFailure" },
      },
    },
    // The campaign retries mesh errors itself; a rejection is unexpected, so wait before campaigning again.
    retrying: {
      after: { retryDelay: "standby" },
    },
    active: {
      entry: "reconcileDomains",
      exit: "stopDomains",
      invoke: { src: "hold", input: ({ context }) => ({ id: context.id }) },
      on: {
        UNITS: { actions: ["storeUnits", "reconcileDomains"] },
        LEASE_LOST: { target: "standby", actions: "storeLoss" },
      },
    },
    stopped: { type: "final" },
  },
});
