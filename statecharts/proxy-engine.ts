// ProxyEngine: the lifecycle of one gateway candidate's proxy mode.
//   binding → waiting (for its own Gateway record) → edge | cloud; stopped (final) from anywhere.
// The side comes from the candidate's own record: a candidate of an exposed (cloud) Gateway runs the cloud
// proxy, whose edge-facing listener is up for the whole state and whose front doors (the HTTP proxy, the
// name-routed ports) are open only while the candidate acts active:
//   cloud.closed → cloud.opening (invoked openDoors) → cloud.open → (inactive) cloud.closed
// Any other candidate runs the edge proxy, which follows the role on every UPDATE by itself. A record that
// changes side (`raven gateways apply` of another exposeType) stops one proxy and starts the other.
// The service drives it level-triggered: one UPDATE (side, active) on every role change, heartbeat and
// record change; the machine turns that into edges. A failed opening waits for the next UPDATE (at most a
// heartbeat later) before it tries again, so a port in use cannot make it spin.
// Pure: the proxies and listeners are the service's (start/stop Cloud and Edge, updateEdge, closeDoors,
// prune, stopAll, the invoked openDoors).
import { assign, fromPromise, setup } from "xstate";

export type ProxySide = "cloud" | "edge";

export type ProxyEngineContext = {
  /** Whether the candidate acts active for proxy mode, as of the last UPDATE. */
  active: boolean;
  lastError: string | null;
};

export type ProxyEngineEvent =
  /** The Directory (KV watches) is up. */
  | { type: "BOUND" }
  /** The candidate's side per its own record (null: no record yet), and whether it acts active. */
  | { type: "UPDATE"; side: ProxySide | null; active: boolean }
  | { type: "STOP" };

export const proxyEngineMachine = setup({
  types: {
    context: {} as ProxyEngineContext,
    events: {} as ProxyEngineEvent,
  },
  actions: {
    startCloud: () => {},
    stopCloud: () => {},
    startEdge: () => {},
    stopEdge: () => {},
    updateEdge: () => {},
    closeDoors: () => {},
    /** The role changed: the cloud proxy drops spares and channels the new role does not allow. */
    prune: () => {},
    stopAll: () => {},
    storeActive: assign((_, params: { active: boolean }) => ({ active: params.active })),
    storeFailure: assign((_, params: { error: unknown }) => ({
      lastError: params.error instanceof Error ? params.error.message : String(params.error),
    })),
  },
  guards: {
    isCloud: (_, params: { side: ProxySide | null }) => params.side === "cloud",
    isEdge: (_, params: { side: ProxySide | null }) => params.side === "edge",
    roleChanged: ({ context }, params: { active: boolean }) => params.active !== context.active,
    active: ({ context }) => context.active,
    inactive: ({ context }) => !context.active,
    /** For a transition taken before the UPDATE's activity is stored. */
    activeNow: (_, params: { active: boolean }) => params.active,
    /** Active again after an UPDATE that stored inactive. */
    cameBack: ({ context }, params: { active: boolean }) => params.active && !context.active,
  },
  actors: {
    // The service provides the real one: it listens on the front-door ports and resolves once they are open.
    openDoors: fromPromise<void>(async () => {
      throw new Error("openDoors not provided");
    }),
  },
}).createMachine({
  id: "proxyEngine",
  context: { active: false, lastError: null },
  initial: "binding",
  on: { STOP: ".stopped" },
  states: {
    binding: { on: { BOUND: "waiting" } },
    waiting: {
      on: {
        UPDATE: [
          {
            guard: { type: "isCloud", params: ({ event }) => event },
            target: "cloud",
            actions: { type: "storeActive", params: ({ event }) => event },
          },
          {
            guard: { type: "isEdge", params: ({ event }) => event },
            target: "edge",
            actions: { type: "storeActive", params: ({ event }) => event },
          },
        ],
      },
    },
    edge: {
      entry: ["startEdge", "updateEdge"],
      exit: "stopEdge",
      on: {
        UPDATE: [
          {
            guard: { type: "isCloud", params: ({ event }) => event },
            target: "cloud",
            actions: { type: "storeActive", params: ({ event }) => event },
          },
          { actions: [{ type: "storeActive", params: ({ event }) => event }, "updateEdge"] },
        ],
      },
    },
    cloud: {
      entry: "startCloud",
      exit: "stopCloud",
      on: {
        UPDATE: [
          {
            guard: { type: "isEdge", params: ({ event }) => event },
            target: "edge",
            actions: { type: "storeActive", params: ({ event }) => event },
          },
          {
            guard: { type: "roleChanged", params: ({ event }) => event },
            actions: [{ type: "storeActive", params: ({ event }) => event }, "prune"],
          },
        ],
      },
      initial: "closed",
      states: {
        closed: {
          always: { guard: "active", target: "opening" },
        },
        opening: {
          invoke: {
            id: "openDoors",
            src: "openDoors",
            onDone: "open",
            onError: { target: "failed", actions: { type: "storeFailure", params: ({ event }) => event } },
          },
        },
        failed: {
          on: {
            // The role came back while failed (an inactive UPDATE was stored here): prune as on any change.
            UPDATE: [
              {
                guard: { type: "cameBack", params: ({ event }) => event },
                target: "opening",
                actions: [{ type: "storeActive", params: ({ event }) => event }, "prune"],
              },
              { guard: { type: "activeNow", params: ({ event }) => event }, target: "opening" },
            ],
          },
        },
        open: {
          exit: "closeDoors",
          always: { guard: "inactive", target: "closed" },
        },
      },
    },
    stopped: { type: "final", entry: "stopAll" },
  },
});
