// NodeActor: a node's membership — registering → registered ⇄ disconnected, with backoff on refusal.
// Registration is the invoked `register` actor (a request to the coordinator, provided by the service); the
// heartbeat itself is a plain timer in the service that runs while this machine is `registered` (the hot
// path stays out of the statechart). A re-registration after every reconnect makes the inventory
// level-triggered: whatever the coordinator lost, the node tells it again.
import { assign, fromPromise, setup } from "xstate";
import { backoffMs, errorMessage } from "./retry";

export type NodeInput = Readonly<{ node: string; domain: string; retryMs: number }>;

export type Registration = { gateway: string | null; solo: boolean };

export type NodeContext = {
  node: string;
  domain: string;
  retryMs: number;
  registration: Registration | null;
  attempt: number;
  lastError: string | null;
};

export type NodeEvent = { type: "DISCONNECTED" } | { type: "CONNECTED" } | { type: "REREGISTER" };

export const nodeMachine = setup({
  types: {
    context: {} as NodeContext,
    events: {} as NodeEvent,
    input: {} as NodeInput,
  },
  actors: {
    register: fromPromise<Registration, { node: string; domain: string }>(async () => {
      throw new Error("register not provided");
    }),
  },
  actions: {
    storeRegistration: assign((_, registration: Registration) => ({ registration, attempt: 0, lastError: null })),
    storeFailure: assign(({ context }, params: { error: unknown }) => ({
      attempt: context.attempt + 1,
      lastError: errorMessage(params.error),
    })),
  },
  delays: {
    retryDelay: ({ context }) => backoffMs(context.retryMs, context.attempt),
  },
}).createMachine({
  id: "node",
  context: ({ input }) => ({
    node: input.node,
    domain: input.domain,
    retryMs: input.retryMs,
    registration: null,
    attempt: 0,
    lastError: null,
  }),
  initial: "registering",
  on: { DISCONNECTED: ".disconnected" },
  states: {
    registering: {
      invoke: {
        src: "register",
        input: ({ context }) => ({ node: context.node, domain: context.domain }),
        onDone: { target: "registered", actions: { type: "storeRegistration", params: ({ event }) => event.output } },
        onError: {
          target: "backoff",
          actions: { type: "storeFailure", params: ({ event }) => ({ error: event.error }) },
        },
      },
    },
    registered: {
      on: { REREGISTER: "registering" },
    },
    backoff: {
      after: { retryDelay: "registering" },
    },
    disconnected: {
      on: { CONNECTED: "registering" },
    },
  },
});
