// DomainActor: election and failover for one unit (a Gateway record and its domain, or a solo node).
// Pure: it reads the record and candidate health from events, decides with `electActive`, and writes through
// the invoked `writeRecord` actor (compare-and-swap on the KV revision, provided by the coordinator service).
// The term grows by one on every change of the active endpoints and never otherwise. A lost CAS reloads the
// record and decides again. Heartbeats never reach this machine: the coordinator's HealthTracker turns them
// into a HEALTH event only when the set of healthy candidates changes.
//
// Retries use an `after` delay derived from the attempt count; the actor is never persisted (its state is
// the KV record), so no deadline needs to survive a snapshot.
import { assign, emit, fromPromise, setup } from "xstate";
import {
  emptyStatus,
  replicasOf,
  soloGateway,
  type Endpoint,
  type EndpointType,
  type Gateway,
  type NodeInfo,
} from "../shared/gateway";
import { electActive, sameEndpoints, shortfall } from "./election";
import { backoffMs, errorMessage } from "./retry";

export type DomainInput = Readonly<{
  key: string;
  name: string;
  solo: boolean;
  retryMs: number;
  handoverMs: number;
  /** Write the loaded record once before anything else (see `stamped`); the coordinator always asks for it. */
  stampFirst?: boolean;
}>;

export type DomainContext = {
  key: string;
  name: string;
  solo: boolean;
  retryMs: number;
  handoverMs: number;
  record: Gateway | null;
  /** KV revision of `record`; 0 when the key does not exist. */
  revision: number;
  healthy: string[];
  /** Candidates heard within gatewayDeadAfterMs (healthy or not): their leases may still run. */
  alive: string[];
  /**
   * Of `alive`, those heard again after they were declared dead and not risen yet, not draining: nothing
   * acknowledged them since they fell silent, so they hold no lease (CandidateHealth.rising).
   */
  rising: string[];
  /** False until the coordinator has watched heartbeats long enough to judge (no election on a cold view). */
  healthKnown: boolean;
  /**
   * True once this actor has written the record itself. Until then the record may be older than a write of
   * a previous coordinator still in flight; the first write (a compare-and-swap, even of an unchanged record)
   * proves it is current and makes any such write fail. The coordinator acknowledges no heartbeat before.
   */
  stamped: boolean;
  members: NodeInfo[] | null;
  /** With `members`: why tunnel mode refuses the domain (overlapping pod CIDRs), or null. */
  tunnelProblem: string | null;
  attempt: number;
  lastError: string | null;
};

export type DomainEvent =
  | { type: "HEALTH"; healthy: string[]; alive: string[]; rising?: string[] }
  | { type: "RECORD"; record: Gateway | null; revision: number }
  | { type: "MEMBERS"; nodes: NodeInfo[]; tunnelProblem?: string | null }
  | { type: "RESYNC" };

export type DomainEmitted = { type: "assignment"; key: string; record: Gateway; revision: number };

export type LoadOutput = { record: Gateway | null; revision: number };
export type WriteInput = { key: string; record: Gateway; revision: number; handover: boolean };
export type WriteOutput = { record: Gateway; revision: number; handover: boolean };

/** A write the unit needs now: the record to store and whether it only removes a live active (phase one of a handover). */
export type Plan = { record: Gateway; handover: boolean };

const epKey = (e: { nodeName: string; type: string }) => `${e.type}/${e.nodeName}`;

/**
 * What the unit should store now, or null when the stored record is right (pure).
 *
 * A newcomer may be added in the same write that removes an active only if that active is silent (not heard
 * for gatewayDeadAfterMs) or rising again after it was declared dead, because then its lease has certainly
 * run out. An active that is still alive — draining, data path failing, or removed from the spec — is removed
 * first (phase one, term + 1); the newcomers follow after `handoverMs`, when its lease is over, so no two
 * actives overlap even in a planned handover (the fencing rule and its argument: shared/fencing.ts).
 */
export function plan(ctx: DomainContext): Plan | null {
  // Unstamped, the first write waits for health too: it is usually an election anyway, which stamps.
  if (!ctx.healthKnown) return null;
  const base = ctx.record ?? (ctx.solo ? soloGateway(ctx.name) : null);
  if (!base) return null;
  const status = base.status ?? emptyStatus();
  const replicas = replicasOf(base.spec);
  const alive = new Set(ctx.alive);
  const rising = new Set(ctx.rising);
  // A current active that is rising again after a silence counts as healthy here: after a cut that silenced
  // the whole domain, the active waits the few heartbeats it needs to rise instead of being replaced by
  // whichever candidate rose first. It is not acknowledged (so does not act) until it has risen.
  const healthy = new Set(ctx.healthy);
  for (const e of status.activeEndpoints) if (rising.has(e.nodeName)) healthy.add(e.nodeName);
  const fresh = electActive({
    endpoints: base.spec.endpoints,
    replicas,
    healthy,
    current: status.activeEndpoints,
  });
  const kept = keptSilent(status.activeEndpoints, fresh, base.spec.endpoints, replicas, alive);
  const elected = kept.length > 0 ? [...fresh, ...kept] : fresh;
  const electedKeys = new Set(elected.map(epKey));
  const currentKeys = new Set(status.activeEndpoints.map(epKey));
  const adds = elected.some((e) => !currentKeys.has(epKey(e)));
  // A rising active holds no lease (nothing acknowledged it since it fell silent): no handover needed.
  const removedAlive = status.activeEndpoints.some(
    (e) => !electedKeys.has(epKey(e)) && alive.has(e.nodeName) && !rising.has(e.nodeName),
  );
  // Any write that removes a live active waits handoverMs before the next one, even if no successor is
  // ready yet: one may become healthy a moment later, while the removed active's lease still runs.
  const handover = removedAlive;
  const active = handover ? status.activeEndpoints.filter((e) => electedKeys.has(epKey(e))) : elected;
  // Kept while silent, or held while rising: the same words, so a cut costs one write and its heal another.
  const waitedFor = active.filter((e) => !ctx.healthy.includes(e.nodeName));
  const problem =
    handover && adds
      ? "handing over from a live gateway"
      : waitedFor.length > 0
        ? `silent active ${waitedFor.map(epKey).join(", ")} kept named`
        : shortfall(active, replicas, base.spec.endpoints);
  const activeChanged = !sameEndpoints(active, status.activeEndpoints);
  const nodes = ctx.members ?? status.nodes;
  const nodesChanged = JSON.stringify(nodes) !== JSON.stringify(status.nodes);
  const tunnelProblem = ctx.members !== null ? (ctx.tunnelProblem ?? undefined) : status.tunnelProblem;
  const tunnelChanged = tunnelProblem !== status.tunnelProblem;
  if (
    !activeChanged &&
    problem === status.problem &&
    !nodesChanged &&
    !tunnelChanged &&
    ctx.record !== null &&
    ctx.stamped
  )
    return null;
  return {
    handover,
    record: {
      ...base,
      status: {
        nodes,
        activeEndpoints: activeChanged ? active : status.activeEndpoints,
        term: activeChanged ? status.term + 1 : status.term,
        ...(problem ? { problem } : {}),
        ...(tunnelProblem ? { tunnelProblem } : {}),
      },
    },
  };
}

/**
 * The current actives that went silent and that nobody can replace: of a type for which the election found no
 * healthy candidate at all, the current actives still in the spec that are silent (not alive), up to the
 * type's replicas. (A current active rising again after a silence needs no keeping: `plan` counts it as
 * healthy, so the election itself keeps it.) They stay named, with no new term, instead of a term with
 * nobody in it. That is safe: the coordinator acknowledges only healthy candidates, so a silent active has no
 * lease and does not act (gatewayFenceMs < gatewayDeadAfterMs), and nobody else is named beside it. And it is
 * calm: a domain cut off from the cloud (its uplink down, its leaf restarting) costs no election — once it is
 * heard again and has risen, the next acknowledgement restores its lease in the same term — where dropping
 * and re-electing cost two terms per cut, and two per reconnection while the link flapped. The first healthy
 * candidate of the type replaces it as after any death. An active that is alive but unhealthy for a reason of
 * its own (draining, data path failing, or just restarted) is not kept: it is handed over as before.
 */
function keptSilent(
  current: readonly Endpoint[],
  elected: readonly Endpoint[],
  endpoints: readonly Endpoint[],
  replicas: Readonly<Record<EndpointType, number>>,
  alive: ReadonlySet<string>,
): Endpoint[] {
  const inSpec = new Map(endpoints.map((e) => [epKey(e), e]));
  const kept: Endpoint[] = [];
  for (const e of current) {
    const spec = inSpec.get(epKey(e));
    if (!spec || alive.has(e.nodeName) || elected.some((x) => x.type === e.type)) continue;
    if (kept.filter((x) => x.type === e.type).length < replicas[e.type]) kept.push(spec);
  }
  return kept;
}

export const domainMachine = setup({
  types: {
    context: {} as DomainContext,
    events: {} as DomainEvent,
    input: {} as DomainInput,
    emitted: {} as DomainEmitted,
  },
  actors: {
    loadRecord: fromPromise<LoadOutput, { key: string }>(async () => {
      throw new Error("loadRecord not provided");
    }),
    writeRecord: fromPromise<WriteOutput, WriteInput>(async () => {
      throw new Error("writeRecord not provided");
    }),
  },
  guards: {
    needsWrite: ({ context }) => plan(context) !== null,
    wroteHandover: (_, params: WriteOutput) => params.handover,
    isNewer: ({ context, event }) => event.type === "RECORD" && event.revision > context.revision,
    isConflict: (_, params: { error: unknown }) =>
      params.error instanceof Error && params.error.name === "CasConflictError",
    hasRecord: ({ context }) => context.record !== null,
  },
  actions: {
    storeHealth: assign({
      healthy: ({ event }) => (event.type === "HEALTH" ? [...event.healthy].sort() : []),
      alive: ({ event }) => (event.type === "HEALTH" ? [...event.alive].sort() : []),
      rising: ({ event }) => (event.type === "HEALTH" ? [...(event.rising ?? [])].sort() : []),
      healthKnown: true,
    }),
    storeRecord: assign(({ event }) =>
      event.type === "RECORD" ? { record: event.record, revision: event.revision } : {},
    ),
    storeMembers: assign(({ event }) =>
      event.type === "MEMBERS" ? { members: event.nodes, tunnelProblem: event.tunnelProblem ?? null } : {},
    ),
    storeLoaded: assign((_, out: LoadOutput) => ({
      record: out.record,
      revision: out.revision,
      attempt: 0,
      lastError: null,
    })),
    storeWritten: assign((_, out: WriteOutput) => ({
      record: out.record,
      revision: out.revision,
      attempt: 0,
      lastError: null,
      stamped: true,
    })),
    storeFailure: assign(({ context }, params: { error: unknown }) => ({
      attempt: context.attempt + 1,
      lastError: errorMessage(params.error),
    })),
    emitAssignment: emit(({ context }) => ({
      type: "assignment" as const,
      key: context.key,
      record: context.record!,
      revision: context.revision,
    })),
  },
  delays: {
    handoverDelay: ({ context }) => context.handoverMs,
    retryDelay: ({ context }) => backoffMs(context.retryMs, context.attempt),
  },
}).createMachine({
  id: "domain",
  context: ({ input }) => ({
    key: input.key,
    name: input.name,
    solo: input.solo,
    retryMs: input.retryMs,
    handoverMs: input.handoverMs,
    record: null,
    revision: 0,
    healthy: [],
    alive: [],
    rising: [],
    healthKnown: false,
    stamped: !input.stampFirst,
    members: null,
    tunnelProblem: null,
    attempt: 0,
    lastError: null,
  }),
  initial: "loading",
  on: {
    HEALTH: { actions: "storeHealth" },
    MEMBERS: { actions: "storeMembers" },
    RECORD: { guard: "isNewer", actions: "storeRecord" },
  },
  states: {
    loading: {
      invoke: {
        src: "loadRecord",
        input: ({ context }) => ({ key: context.key }),
        onDone: { target: "deciding", actions: { type: "storeLoaded", params: ({ event }) => event.output } },
        onError: {
          target: "backoff",
          actions: { type: "storeFailure", params: ({ event }) => ({ error: event.error }) },
        },
      },
    },
    deciding: {
      always: [{ guard: "needsWrite", target: "writing" }, { target: "steady" }],
    },
    steady: {
      on: {
        HEALTH: { target: "deciding", actions: "storeHealth" },
        MEMBERS: { target: "deciding", actions: "storeMembers" },
        RECORD: { guard: "isNewer", target: "deciding", actions: "storeRecord" },
        RESYNC: { guard: "hasRecord", actions: "emitAssignment" },
      },
    },
    writing: {
      invoke: {
        src: "writeRecord",
        input: ({ context }) => {
          const p = plan(context)!;
          return { key: context.key, record: p.record, revision: context.revision, handover: p.handover };
        },
        onDone: [
          {
            guard: { type: "wroteHandover", params: ({ event }) => event.output },
            target: "handover",
            actions: [{ type: "storeWritten", params: ({ event }) => event.output }, "emitAssignment"],
          },
          {
            target: "deciding",
            actions: [{ type: "storeWritten", params: ({ event }) => event.output }, "emitAssignment"],
          },
        ],
        onError: [
          {
            guard: { type: "isConflict", params: ({ event }) => ({ error: event.error }) },
            target: "loading",
            actions: { type: "storeFailure", params: ({ event }) => ({ error: event.error }) },
          },
          { target: "backoff", actions: { type: "storeFailure", params: ({ event }) => ({ error: event.error }) } },
        ],
      },
    },
    // Phase two of a handover waits until the removed active's lease has run out.
    handover: {
      after: { handoverDelay: { target: "deciding" } },
    },
    backoff: {
      after: { retryDelay: { target: "loading" } },
    },
  },
});
