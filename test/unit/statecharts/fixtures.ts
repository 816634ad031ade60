// Builders and helpers shared by the statechart unit tests (not a test file itself: vitest only collects
// *.test.ts). Kept tiny so each test reads on its own.
import type { EventObject, Snapshot } from "xstate";
import { toDirectedGraph, type StatePath } from "xstate/graph";
import {
  DEFAULT_PORT,
  GATEWAY_API_VERSION,
  type Endpoint,
  type EndpointType,
  type Gateway,
  type NodeInfo,
} from "../../../shared/gateway";

export const ep = (nodeName: string, type: EndpointType = "proxy"): Endpoint => ({
  nodeName,
  type,
  port: DEFAULT_PORT[type],
  underNAT: false,
});

/** Both endpoint types for each node, in the order given. */
export const both = (...names: string[]): Endpoint[] => names.flatMap((n) => [ep(n, "proxy"), ep(n, "tunnel")]);

export const keys = (eps: readonly Endpoint[]): string[] => eps.map((e) => `${e.type}/${e.nodeName}`);

export type GatewayOpts = {
  endpoints: Endpoint[];
  proxy?: number;
  tunnel?: number;
  active?: Endpoint[];
  term?: number;
  nodes?: NodeInfo[];
  problem?: string;
};

export function gateway(name: string, o: GatewayOpts): Gateway {
  return {
    apiVersion: GATEWAY_API_VERSION,
    kind: "Gateway",
    metadata: { name },
    spec: {
      proxyConfig: { Replicas: o.proxy ?? 1 },
      tunnelConfig: { Replicas: o.tunnel ?? 1 },
      endpoints: o.endpoints,
      exposeType: "",
    },
    status: {
      nodes: o.nodes ?? [],
      activeEndpoints: o.active ?? [],
      term: o.term ?? 0,
      ...(o.problem ? { problem: o.problem } : {}),
    },
  };
}

type ActionLike = { type: string; params?: unknown };

/** The events emitted (`emit(...)`) by a list of executable actions, in order. */
export function emitted<T>(actions: readonly ActionLike[]): T[] {
  return actions.filter((a) => a.type === "xstate.emit").map((a) => (a.params as { event: T }).event);
}

/** `src`/`id`/`input` of the actors a transition spawns (invocations included). */
export function spawned(actions: readonly ActionLike[]): { src: unknown; id: string; input: unknown }[] {
  return actions
    .filter((a) => a.type === "xstate.spawnChild")
    .map((a) => a.params as { src: unknown; id: string; input: unknown });
}

/** Ids of the children a transition stops. */
export function stoppedChildren(actions: readonly ActionLike[]): string[] {
  return actions
    .filter((a) => a.type === "xstate.stopChild")
    .map((a) => {
      const p = a.params as { id?: string; actorRef?: { id: string } };
      return p.actorRef?.id ?? p.id ?? "";
    });
}

/** Delays scheduled by `after` (delayed raises) in a list of actions. */
export function delays(actions: readonly ActionLike[]): number[] {
  return actions
    .filter((a) => a.type === "xstate.raise" && typeof (a.params as { delay?: unknown }).delay === "number")
    .map((a) => (a.params as { delay: number }).delay);
}

/** Top-level state names a machine declares, read from its directed graph. */
export function declaredStates(machine: Parameters<typeof toDirectedGraph>[0]): string[] {
  return toDirectedGraph(machine)
    .children.map((c) => c.stateNode.key)
    .sort();
}

/** Distinct top-level values of the end states of a set of graph paths (the parent state of a nested value). */
export function reachedStates<S extends Snapshot<unknown>, E extends EventObject>(paths: StatePath<S, E>[]): string[] {
  const top = (v: unknown) => (typeof v === "string" ? v : Object.keys(v as object)[0]!);
  return [...new Set(paths.map((p) => top((p.state as unknown as { value: unknown }).value)))].sort();
}

/** Serializes Error values by name and message so that two different errors make two different graph edges. */
export const serializeEvent = (e: EventObject): string =>
  JSON.stringify(e, (_k, v: unknown) => (v instanceof Error ? `${v.name}: ${v.message}` : v));

type TransitionLike = {
  source: { key: string };
  target?: readonly { key: string }[] | undefined;
  eventType: string;
  guard?: unknown;
};
type GraphMachine = Parameters<typeof toDirectedGraph>[0] & {
  getTransitionData(snapshot: never, event: never): TransitionLike[];
};

/** One declared transition: source state, event, guard, target state. */
export function edgeKey(t: TransitionLike): string {
  const guard = typeof t.guard === "string" ? t.guard : ((t.guard as { type?: string } | undefined)?.type ?? "");
  return `${t.source.key} --${t.eventType}${guard ? `[${guard}]` : ""}--> ${t.target?.[0]?.key ?? t.source.key}`;
}

/** Every transition the machine declares that an event can take (eventless `always` ones excluded). */
export function declaredEdges(machine: GraphMachine): string[] {
  type Node = ReturnType<typeof toDirectedGraph>;
  const all: Node["edges"] = [];
  const walk = (n: Node) => {
    all.push(...n.edges);
    n.children.forEach(walk);
  };
  walk(toDirectedGraph(machine));
  return [
    ...new Set(
      all
        .map((e) => e.transition as unknown as TransitionLike)
        .filter((t) => t.eventType !== "")
        .map(edgeKey),
    ),
  ].sort();
}

/** Every transition taken when each event is sent in each state the paths reach. */
export function takenEdges<S extends Snapshot<unknown>, E extends EventObject>(
  machine: GraphMachine,
  paths: StatePath<S, E>[],
  events: readonly E[] | ((state: S) => readonly E[]),
): string[] {
  const taken = new Set<string>();
  for (const p of paths) {
    for (const snap of [p.state, ...p.steps.map((s) => s.state)]) {
      const list = typeof events === "function" ? events(snap) : events;
      for (const e of list) for (const t of machine.getTransitionData(snap as never, e as never)) taken.add(edgeKey(t));
    }
  }
  return [...taken].sort();
}
