// ProxyEngine: binding → waiting → edge | cloud (front doors closed → opening → open, with the role), side
// switches, and STOP from everywhere. Pure transitions, and a graph walk over every state and edge.
import { beforeAll, describe, expect, it } from "vitest";
import { fromPromise, initialTransition, transition, type SnapshotFrom } from "xstate";
import { getShortestPaths } from "xstate/graph";
import { proxyEngineMachine, type ProxyEngineEvent } from "../../../statecharts/proxy-engine";
import { declaredEdges, serializeEvent, spawned, takenEdges } from "./fixtures";

type Snap = SnapshotFrom<typeof proxyEngineMachine>;
const ev = (e: object) => e as unknown as ProxyEngineEvent;
const OPENED = ev({ type: "xstate.done.actor.openDoors" });
const FAILED = ev({ type: "xstate.error.actor.openDoors", error: new Error("listen EADDRINUSE 0.0.0.0:10264") });
const update = (side: "cloud" | "edge" | null, active: boolean): ProxyEngineEvent => ({ type: "UPDATE", side, active });

const step = (s: Snap, e: ProxyEngineEvent) => transition(proxyEngineMachine, s, e);
/** The names of the actions a transition runs for the service (assigns are applied to context, not listed). */
const names = (actions: readonly { type: string }[]) =>
  actions.map((a) => a.type).filter((t) => !t.startsWith("xstate."));
const bound = (): Snap => step(initialTransition(proxyEngineMachine)[0], { type: "BOUND" })[0];
const run = (...events: ProxyEngineEvent[]): Snap => events.reduce((s, e) => step(s, e)[0], bound());

describe("ProxyEngine transitions", () => {
  it("binds the Directory first, then waits for its own record", () => {
    const [s] = initialTransition(proxyEngineMachine);
    expect(s.value).toBe("binding");
    expect(step(s, update("cloud", true))[0].value).toBe("binding"); // nothing to act on before the KV
    expect(bound().value).toBe("waiting");
    expect(step(bound(), update(null, true))[0].value).toBe("waiting");
  });

  it("runs the edge proxy on an edge candidate and updates it on every UPDATE", () => {
    const [s, actions] = step(bound(), update("edge", false));
    expect(s.value).toBe("edge");
    expect(names(actions)).toEqual(["startEdge", "updateEdge"]);
    const [s2, a2] = step(s, update("edge", true));
    expect(s2.context.active).toBe(true);
    expect(names(a2)).toEqual(["updateEdge"]);
  });

  it("opens the front doors of a cloud candidate only while it acts active", () => {
    const [idle, a1] = step(bound(), update("cloud", false));
    expect(idle.value).toEqual({ cloud: "closed" });
    expect(names(a1)).toContain("startCloud");
    const [opening, a2] = step(idle, update("cloud", true));
    expect(opening.value).toEqual({ cloud: "opening" });
    expect(names(a2)).toEqual(["prune"]);
    expect(spawned(a2).map((x) => x.id)).toEqual(["openDoors"]);
    const [open] = step(opening, OPENED);
    expect(open.value).toEqual({ cloud: "open" });
    const [closed, a3] = step(open, update("cloud", false));
    expect(closed.value).toEqual({ cloud: "closed" });
    expect(names(a3)).toEqual(["prune", "closeDoors"]);
  });

  it("closes doors that finish opening after the role went", () => {
    const opening = run(update("cloud", true));
    const [still] = step(opening, update("cloud", false));
    expect(still.value).toEqual({ cloud: "opening" });
    const [s, actions] = step(still, OPENED);
    expect(s.value).toEqual({ cloud: "closed" });
    expect(names(actions)).toContain("closeDoors");
  });

  it("waits for the next UPDATE after a failed opening, then tries again if still active", () => {
    const [failed] = step(run(update("cloud", true)), FAILED);
    expect(failed.value).toEqual({ cloud: "failed" });
    expect(failed.context.lastError).toBe("listen EADDRINUSE 0.0.0.0:10264");
    expect(step(failed, update("cloud", false))[0].value).toEqual({ cloud: "failed" });
    const [again, actions] = step(failed, update("cloud", true));
    expect(again.value).toEqual({ cloud: "opening" });
    expect(spawned(actions).map((x) => x.id)).toEqual(["openDoors"]);
    expect(names(actions)).not.toContain("prune"); // the role did not change
    const [back, a2] = step(step(failed, update("cloud", false))[0], update("cloud", true));
    expect(back.value).toEqual({ cloud: "opening" });
    expect(names(a2)).toContain("prune"); // it went and came back
  });

  it("switches side when its record does: the old proxy stops, the new one starts", () => {
    const open = step(run(update("cloud", true)), OPENED)[0];
    const [edge, actions] = step(open, update("edge", true));
    expect(edge.value).toBe("edge");
    expect(names(actions)).toEqual(["closeDoors", "stopCloud", "startEdge", "updateEdge"]);
    const [cloud, a2] = step(edge, update("cloud", true));
    expect(cloud.value).toEqual({ cloud: "opening" });
    expect(names(a2).slice(0, 2)).toEqual(["stopEdge", "startCloud"]);
  });

  it("stops for good from every state, tearing down what runs", () => {
    const open = step(run(update("cloud", true)), OPENED)[0];
    for (const s of [initialTransition(proxyEngineMachine)[0], bound(), run(update("edge", true)), open]) {
      const [stopped, actions] = step(s, { type: "STOP" });
      expect(stopped.value).toBe("stopped");
      expect(stopped.status).toBe("done");
      expect(names(actions).at(-1)).toBe("stopAll");
    }
    expect(names(step(open, { type: "STOP" })[1])).toEqual(["closeDoors", "stopCloud", "stopAll"]);
  });
});

describe("ProxyEngine graph", () => {
  const machine = proxyEngineMachine.provide({ actors: { openDoors: fromPromise(async () => {}) } });
  const events: ProxyEngineEvent[] = [
    { type: "BOUND" },
    update(null, false),
    update("edge", false),
    update("edge", true),
    update("cloud", false),
    update("cloud", true),
    OPENED,
    FAILED,
    { type: "STOP" },
  ];
  let paths: ReturnType<typeof getShortestPaths<typeof machine>> = [];
  beforeAll(() => {
    paths = getShortestPaths(machine, { events, serializeEvent });
  });

  it("reaches every state, nested ones included", () => {
    const reached = new Set(paths.map((p) => JSON.stringify(p.state.value)));
    for (const v of ["binding", "waiting", "edge", "stopped"]) expect(reached).toContain(JSON.stringify(v));
    for (const c of ["closed", "opening", "open", "failed"]) expect(reached).toContain(JSON.stringify({ cloud: c }));
  });

  it("takes every declared transition on some path", () => {
    expect(takenEdges(machine, paths, events)).toEqual(declaredEdges(machine));
  });
});
