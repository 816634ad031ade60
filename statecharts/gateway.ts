// GatewayActor: one gateway candidate's role — standby ⇄ active(term) ⇄ lapsed, active → draining → stopped.
// Fencing (the rule and its argument: shared/fencing.ts): the candidate obeys the highest term it has seen (older assignments are ignored), steps down at
// once when a newer term leaves it out, and acts active only while its lease is valid. The lease ends
// `leaseMs` after the *sending* time of the newest heartbeat the coordinator acknowledged, which is before
// the coordinator may declare it dead (gatewayFenceMs < gatewayDeadAfterMs), so an old active has always
// stopped before a successor is elected, even when it is alive but cut off.
// A lease that runs out within the candidate's term makes it `lapsed`, not standby: it stops acting at once
// (no new channel, heartbeats say it acts for nothing) but keeps what it set up for the role (tunnels,
// listeners, spare connections), because the usual cause is a late acknowledgement on a busy host, and the
// next one restores the lease in the same term. Tearing down and rebuilding on every late ack is what turned
// a start-up transient into a flap storm (issue 12). A newer term without it, or lapseHoldMs without a
// fresh lease (it has most likely been replaced and not heard of it), make it standby.
// Time arrives in events (`now`), so the machine stays pure; the service sends a TICK every sweep.
import { assign, emit, setup } from "xstate";
import type { EndpointType } from "../shared/gateway";
import { isStaleTerm, leaseRunning } from "../shared/fencing";

export type GatewayInput = Readonly<{ node: string; drainTimeoutMs: number; lapseHoldMs: number }>;

export type GatewayContext = {
  node: string;
  drainTimeoutMs: number;
  lapseHoldMs: number;
  /** The highest term seen. */
  term: number;
  /** The Gateway record this candidate belongs to, once an assignment named it. */
  gateway: string | null;
  /** Endpoint types this candidate is assigned for (empty in standby). */
  activeTypes: EndpointType[];
  /** Local monotonic ms until which the candidate may act active (in lapsed: when the lease ran out). */
  leaseUntil: number;
  drainDeadline: number;
};

export type GatewayEvent =
  | {
      type: "ASSIGNMENT";
      gateway: string;
      term: number;
      /** Types this candidate is named active for in the assignment (empty if not named). */
      activeTypes: EndpointType[];
      /** Lease end derived from an acknowledged heartbeat, or null when the assignment acks none of ours. */
      leaseUntil: number | null;
      now: number;
    }
  | { type: "TICK"; now: number }
  | { type: "DRAIN"; now: number };

export type GatewayRole = "standby" | "active" | "lapsed" | "draining" | "stopped";
export type GatewayEmitted =
  | { type: "roleChanged"; role: GatewayRole; term: number; activeTypes: EndpointType[] }
  | { type: "staleAssignment"; term: number; seen: number };

type Assignment = Extract<GatewayEvent, { type: "ASSIGNMENT" }>;
const asAssignment = (e: GatewayEvent): Assignment | null => (e.type === "ASSIGNMENT" ? e : null);

export const gatewayMachine = setup({
  types: {
    context: {} as GatewayContext,
    events: {} as GatewayEvent,
    input: {} as GatewayInput,
    emitted: {} as GatewayEmitted,
  },
  guards: {
    isStale: ({ context, event }) => isStaleTerm(asAssignment(event)?.term ?? Infinity, context.term),
    namesMeWithLease: ({ event }) => {
      const a = asAssignment(event);
      return !!a && a.activeTypes.length > 0 && a.leaseUntil !== null && leaseRunning(a.leaseUntil, a.now);
    },
    namesMe: ({ event }) => (asAssignment(event)?.activeTypes.length ?? 0) > 0,
    leaseExpired: ({ context, event }) => event.type === "TICK" && !leaseRunning(context.leaseUntil, event.now),
    lapseOver: ({ context, event }) => event.type === "TICK" && event.now >= context.leaseUntil + context.lapseHoldMs,
    drainOver: ({ context, event }) =>
      (event.type === "TICK" && event.now >= context.drainDeadline) ||
      (event.type === "TICK" && !leaseRunning(context.leaseUntil, event.now)),
  },
  actions: {
    takeAssignment: assign(({ context, event }) => {
      const a = asAssignment(event)!;
      return {
        term: a.term,
        gateway: a.gateway,
        activeTypes: a.activeTypes,
        leaseUntil: Math.max(context.leaseUntil, a.leaseUntil ?? 0),
      };
    }),
    dropRole: assign({ activeTypes: [], leaseUntil: 0 }),
    startDrain: assign({
      drainDeadline: ({ context, event }) => (event.type === "DRAIN" ? event.now + context.drainTimeoutMs : 0),
    }),
    announce: emit(({ context }, params: { role: GatewayRole }) => ({
      type: "roleChanged" as const,
      role: params.role,
      term: context.term,
      activeTypes: context.activeTypes,
    })),
    reportStale: emit(({ context, event }) => ({
      type: "staleAssignment" as const,
      term: asAssignment(event)?.term ?? -1,
      seen: context.term,
    })),
  },
}).createMachine({
  id: "gateway",
  context: ({ input }) => ({
    node: input.node,
    drainTimeoutMs: input.drainTimeoutMs,
    lapseHoldMs: input.lapseHoldMs,
    term: 0,
    gateway: null,
    activeTypes: [],
    leaseUntil: 0,
    drainDeadline: 0,
  }),
  initial: "standby",
  states: {
    standby: {
      entry: { type: "announce", params: { role: "standby" } },
      on: {
        ASSIGNMENT: [
          { guard: "isStale", actions: "reportStale" },
          { guard: "namesMeWithLease", target: "active", actions: "takeAssignment" },
          { actions: ["takeAssignment", "dropRole"] },
        ],
        DRAIN: { target: "stopped" },
      },
    },
    active: {
      entry: { type: "announce", params: { role: "active" } },
      on: {
        ASSIGNMENT: [
          { guard: "isStale", actions: "reportStale" },
          { guard: "namesMe", actions: "takeAssignment" },
          { target: "standby", actions: ["takeAssignment", "dropRole"] },
        ],
        TICK: { guard: "leaseExpired", target: "lapsed" },
        DRAIN: { target: "draining", actions: "startDrain" },
      },
    },
    lapsed: {
      entry: { type: "announce", params: { role: "lapsed" } },
      on: {
        ASSIGNMENT: [
          { guard: "isStale", actions: "reportStale" },
          { guard: "namesMeWithLease", target: "active", actions: "takeAssignment" },
          { guard: "namesMe", actions: "takeAssignment" },
          { target: "standby", actions: ["takeAssignment", "dropRole"] },
        ],
        TICK: { guard: "lapseOver", target: "standby", actions: "dropRole" },
        // Not acting: nothing to hand over.
        DRAIN: { target: "stopped", actions: "dropRole" },
      },
    },
    draining: {
      entry: { type: "announce", params: { role: "draining" } },
      on: {
        ASSIGNMENT: [
          { guard: "isStale", actions: "reportStale" },
          { guard: "namesMe", actions: "takeAssignment" },
          { target: "stopped", actions: ["takeAssignment", "dropRole"] },
        ],
        TICK: { guard: "drainOver", target: "stopped", actions: "dropRole" },
      },
    },
    stopped: { type: "final", entry: { type: "announce", params: { role: "stopped" } } },
  },
});

/** Whether a snapshot of this machine is acting active for some endpoint type right now (lease valid). */
export function actingTypes(snapshot: { value: unknown; context: GatewayContext }, now: number): EndpointType[] {
  const acting = snapshot.value === "active" || snapshot.value === "draining";
  return acting && leaseRunning(snapshot.context.leaseUntil, now) ? snapshot.context.activeTypes : [];
}

/**
 * The endpoint types the candidate holds the role for, acting or lapsed: what it keeps set up (tunnels,
 * listeners, spares). Acting on them still needs the lease (actingTypes).
 */
export function heldTypes(snapshot: { value: unknown; context: GatewayContext }): EndpointType[] {
  const held = snapshot.value === "active" || snapshot.value === "lapsed" || snapshot.value === "draining";
  return held ? snapshot.context.activeTypes : [];
}
