// GatewayActor: fencing by term and lease, the lapse that keeps the role's set-up while not acting, draining,
// and the roleChanged/staleAssignment events, tested as pure transitions; plus a graph walk showing every
// declared state is reachable.
import { beforeAll, describe, expect, it } from "vitest";
import { initialTransition, transition, type SnapshotFrom } from "xstate";
import { getShortestPaths } from "xstate/graph";
import {
  actingTypes,
  gatewayMachine,
  heldTypes,
  type GatewayEmitted,
  type GatewayEvent,
} from "../../../statecharts/gateway";
import type { EndpointType } from "../../../shared/gateway";
import { declaredEdges, declaredStates, takenEdges, emitted, reachedStates } from "./fixtures";

type Snap = SnapshotFrom<typeof gatewayMachine>;
const input = { node: "n1", drainTimeoutMs: 1_000, lapseHoldMs: 2_000 };

const assignment = (term: number, activeTypes: EndpointType[], leaseUntil: number | null, now = 100): GatewayEvent => ({
  type: "ASSIGNMENT",
  gateway: "gw1",
  term,
  activeTypes,
  leaseUntil,
  now,
});

function start(): Snap {
  return initialTransition(gatewayMachine, input)[0];
}

function step(snap: Snap, event: GatewayEvent): [Snap, GatewayEmitted[]] {
  const [next, actions] = transition(gatewayMachine, snap, event);
  return [next, emitted<GatewayEmitted>(actions)];
}

/** Active at `term` for proxy with a lease until 500 (now = 100). */
function active(term = 3): Snap {
  const [snap] = step(start(), assignment(term, ["proxy"], 500));
  expect(snap.value).toBe("active");
  return snap;
}

function draining(term = 3, now = 200): Snap {
  const [snap] = step(active(term), { type: "DRAIN", now });
  expect(snap.value).toBe("draining");
  return snap;
}

describe("GatewayActor: standby", () => {
  it("starts in standby and announces it", () => {
    const [snap, actions] = initialTransition(gatewayMachine, input);
    expect(snap.value).toBe("standby");
    expect(snap.context).toMatchObject({ term: 0, gateway: null, activeTypes: [], leaseUntil: 0 });
    expect(emitted(actions)).toEqual([{ type: "roleChanged", role: "standby", term: 0, activeTypes: [] }]);
  });

  it("becomes active when named with a lease that runs past now", () => {
    const [snap, events] = step(start(), assignment(3, ["proxy", "tunnel"], 500, 100));
    expect(snap.value).toBe("active");
    expect(snap.context).toMatchObject({ term: 3, gateway: "gw1", activeTypes: ["proxy", "tunnel"], leaseUntil: 500 });
    expect(events).toEqual([{ type: "roleChanged", role: "active", term: 3, activeTypes: ["proxy", "tunnel"] }]);
  });

  it("stays standby when named without an acknowledged heartbeat (no lease)", () => {
    const [snap, events] = step(start(), assignment(3, ["proxy"], null));
    expect(snap.value).toBe("standby");
    expect(snap.context).toMatchObject({ term: 3, gateway: "gw1", activeTypes: [], leaseUntil: 0 });
    expect(events).toEqual([]);
  });

  it("stays standby when named with a lease that already ended (leaseUntil <= now)", () => {
    expect(step(start(), assignment(3, ["proxy"], 100, 100))[0].value).toBe("standby");
    expect(step(start(), assignment(3, ["proxy"], 99, 100))[0].value).toBe("standby");
    expect(step(start(), assignment(3, ["proxy"], 101, 100))[0].value).toBe("active");
  });

  it("stays standby when not named, but remembers the term", () => {
    const [snap] = step(start(), assignment(4, [], 500));
    expect(snap.value).toBe("standby");
    expect(snap.context.term).toBe(4);
    expect(snap.context.activeTypes).toEqual([]);
  });

  it("ignores a stale term and reports it", () => {
    const [seen] = step(start(), assignment(5, [], null));
    const [snap, events] = step(seen, assignment(4, ["proxy"], 500));
    expect(snap.value).toBe("standby");
    expect(snap.context).toEqual(seen.context);
    expect(events).toEqual([{ type: "staleAssignment", term: 4, seen: 5 }]);
  });

  it("stops at once on DRAIN", () => {
    const [snap, events] = step(start(), { type: "DRAIN", now: 100 });
    expect(snap.value).toBe("stopped");
    expect(snap.status).toBe("done");
    expect(events).toEqual([{ type: "roleChanged", role: "stopped", term: 0, activeTypes: [] }]);
  });

  it("ignores TICK", () => {
    const [snap, events] = step(start(), { type: "TICK", now: 10_000 });
    expect(snap.value).toBe("standby");
    expect(events).toEqual([]);
  });
});

describe("GatewayActor: active", () => {
  it("ignores a stale term and reports it", () => {
    const before = active(3);
    const [snap, events] = step(before, assignment(2, [], null));
    expect(snap.value).toBe("active");
    expect(snap.context).toEqual(before.context);
    expect(events).toEqual([{ type: "staleAssignment", term: 2, seen: 3 }]);
  });

  it("steps down at once on a newer term that leaves it out", () => {
    const [snap, events] = step(active(3), assignment(4, [], null, 150));
    expect(snap.value).toBe("standby");
    expect(snap.context).toMatchObject({ term: 4, activeTypes: [], leaseUntil: 0 });
    expect(events).toEqual([{ type: "roleChanged", role: "standby", term: 4, activeTypes: [] }]);
    expect(actingTypes(snap, 150)).toEqual([]);
  });

  it("takes a newer term that still names it, without re-announcing, and never shortens its lease", () => {
    const [snap, events] = step(active(3), assignment(4, ["tunnel"], 400, 150));
    expect(snap.value).toBe("active");
    expect(snap.context).toMatchObject({ term: 4, activeTypes: ["tunnel"], leaseUntil: 500 });
    expect(events).toEqual([]);
    const [longer] = step(snap, assignment(4, ["tunnel"], 900, 160));
    expect(longer.context.leaseUntil).toBe(900);
  });

  it("keeps acting while the lease runs and stops acting (lapsed) on the TICK that finds it over, keeping its role", () => {
    const [early, none] = step(active(3), { type: "TICK", now: 499 });
    expect(early.value).toBe("active");
    expect(none).toEqual([]);
    const [late, events] = step(early, { type: "TICK", now: 500 });
    expect(late.value).toBe("lapsed");
    expect(late.context).toMatchObject({ term: 3, activeTypes: ["proxy"], leaseUntil: 500 });
    expect(events).toEqual([{ type: "roleChanged", role: "lapsed", term: 3, activeTypes: ["proxy"] }]);
    expect(actingTypes(late, 500)).toEqual([]);
    expect(heldTypes(late)).toEqual(["proxy"]);
  });

  it("acts again in the same term once a fresh lease arrives after it lapsed", () => {
    const [lapsed] = step(active(3), { type: "TICK", now: 600 });
    const [again, events] = step(lapsed, assignment(3, ["proxy"], 900, 610));
    expect(again.value).toBe("active");
    expect(again.context.leaseUntil).toBe(900);
    expect(events).toEqual([{ type: "roleChanged", role: "active", term: 3, activeTypes: ["proxy"] }]);
    expect(actingTypes(again, 610)).toEqual(["proxy"]);
  });

  it("drains on DRAIN with a deadline drainTimeoutMs from now", () => {
    const [snap, events] = step(active(3), { type: "DRAIN", now: 200 });
    expect(snap.value).toBe("draining");
    expect(snap.context.drainDeadline).toBe(1_200);
    expect(snap.context.activeTypes).toEqual(["proxy"]);
    expect(events).toEqual([{ type: "roleChanged", role: "draining", term: 3, activeTypes: ["proxy"] }]);
  });
});

describe("GatewayActor: lapsed", () => {
  /** Active at term 3 with a lease until 500, lapsed at 500. */
  const lapsed = (): Snap => step(active(3), { type: "TICK", now: 500 })[0];

  it("stays lapsed, holding the role, when named again without a lease, and the hold is measured from the lapse", () => {
    const [snap, events] = step(lapsed(), assignment(3, ["proxy"], null, 700));
    expect(snap.value).toBe("lapsed");
    expect(snap.context).toMatchObject({ term: 3, activeTypes: ["proxy"], leaseUntil: 500 });
    expect(events).toEqual([]);
    expect(step(snap, { type: "TICK", now: 2_499 })[0].value).toBe("lapsed");
  });

  it("steps down to standby after lapseHoldMs without a fresh lease, letting go of the role", () => {
    const [snap, events] = step(lapsed(), { type: "TICK", now: 2_500 });
    expect(snap.value).toBe("standby");
    expect(snap.context).toMatchObject({ term: 3, activeTypes: [], leaseUntil: 0 });
    expect(events).toEqual([{ type: "roleChanged", role: "standby", term: 3, activeTypes: [] }]);
    expect(heldTypes(snap)).toEqual([]);
  });

  it("steps down at once on a newer term that leaves it out", () => {
    const [snap, events] = step(lapsed(), assignment(4, [], null, 600));
    expect(snap.value).toBe("standby");
    expect(snap.context).toMatchObject({ term: 4, activeTypes: [], leaseUntil: 0 });
    expect(events).toEqual([{ type: "roleChanged", role: "standby", term: 4, activeTypes: [] }]);
  });

  it("ignores a stale term and reports it", () => {
    const before = lapsed();
    const [snap, events] = step(before, assignment(2, ["proxy"], 5_000, 600));
    expect(snap.value).toBe("lapsed");
    expect(snap.context).toEqual(before.context);
    expect(events).toEqual([{ type: "staleAssignment", term: 2, seen: 3 }]);
  });

  it("stops at once on DRAIN: not acting, it has nothing to hand over", () => {
    const [snap, events] = step(lapsed(), { type: "DRAIN", now: 600 });
    expect(snap.value).toBe("stopped");
    expect(events).toEqual([{ type: "roleChanged", role: "stopped", term: 3, activeTypes: [] }]);
  });
});

describe("GatewayActor: draining", () => {
  it("stops when a newer term leaves it out", () => {
    const [snap, events] = step(draining(3), assignment(4, [], null, 250));
    expect(snap.value).toBe("stopped");
    expect(snap.context).toMatchObject({ term: 4, activeTypes: [], leaseUntil: 0 });
    expect(events).toEqual([{ type: "roleChanged", role: "stopped", term: 4, activeTypes: [] }]);
  });

  it("keeps draining while a newer term still names it", () => {
    const [snap, events] = step(draining(3), assignment(4, ["proxy"], 450, 250));
    expect(snap.value).toBe("draining");
    expect(snap.context.term).toBe(4);
    expect(events).toEqual([]);
  });

  it("ignores a stale term and reports it", () => {
    const [snap, events] = step(draining(3), assignment(1, [], null, 250));
    expect(snap.value).toBe("draining");
    expect(events).toEqual([{ type: "staleAssignment", term: 1, seen: 3 }]);
  });

  it("stops at the drain deadline even while the lease runs", () => {
    const [longLease] = step(draining(3, 200), assignment(3, ["proxy"], 5_000, 210));
    expect(step(longLease, { type: "TICK", now: 1_199 })[0].value).toBe("draining");
    const [snap, events] = step(longLease, { type: "TICK", now: 1_200 });
    expect(snap.value).toBe("stopped");
    expect(events).toEqual([{ type: "roleChanged", role: "stopped", term: 3, activeTypes: [] }]);
  });

  it("stops when the lease runs out before the drain deadline", () => {
    const snap = draining(3, 200);
    expect(step(snap, { type: "TICK", now: 499 })[0].value).toBe("draining");
    expect(step(snap, { type: "TICK", now: 500 })[0].value).toBe("stopped");
  });

  it("ignores a second DRAIN", () => {
    const [snap] = step(draining(3, 200), { type: "DRAIN", now: 300 });
    expect(snap.value).toBe("draining");
    expect(snap.context.drainDeadline).toBe(1_200);
  });
});

describe("GatewayActor: stopped", () => {
  it("is final and ignores everything", () => {
    const [stopped] = step(draining(3), assignment(4, [], null, 250));
    for (const e of [
      assignment(9, ["proxy"], 10_000, 300),
      { type: "TICK", now: 0 } as const,
      { type: "DRAIN", now: 0 } as const,
    ]) {
      const [snap, events] = step(stopped, e);
      expect(snap.value).toBe("stopped");
      expect(snap.context).toEqual(stopped.context);
      expect(events).toEqual([]);
    }
  });
});

describe("actingTypes", () => {
  it("returns the assigned types while active and the lease runs", () => {
    expect(actingTypes(active(3), 499)).toEqual(["proxy"]);
  });

  it("returns [] once the lease has expired, even though the state is still active", () => {
    const snap = active(3);
    expect(snap.value).toBe("active");
    expect(actingTypes(snap, 500)).toEqual([]);
    expect(actingTypes(snap, 10_000)).toEqual([]);
  });

  it("returns the types while draining within the lease", () => {
    expect(actingTypes(draining(3), 300)).toEqual(["proxy"]);
    expect(actingTypes(draining(3), 500)).toEqual([]);
  });

  it("returns [] in standby, lapsed and stopped whatever the context says", () => {
    const snap = active(3);
    expect(actingTypes({ value: "standby", context: snap.context }, 100)).toEqual([]);
    expect(actingTypes({ value: "lapsed", context: snap.context }, 100)).toEqual([]);
    expect(actingTypes({ value: "stopped", context: snap.context }, 100)).toEqual([]);
  });
});

describe("GatewayActor: graph", () => {
  const events: GatewayEvent[] = [
    assignment(1, ["proxy"], 500, 100),
    assignment(1, ["proxy"], null, 100),
    assignment(2, [], null, 100),
    assignment(0, [], null, 100),
    { type: "TICK", now: 300 },
    { type: "TICK", now: 600 },
    { type: "TICK", now: 5_000 },
    { type: "DRAIN", now: 100 },
  ];
  let paths: ReturnType<typeof getShortestPaths<typeof gatewayMachine>> = [];
  beforeAll(() => {
    paths = getShortestPaths(gatewayMachine, { input, events });
  });

  it("takes every declared transition on some path", () => {
    expect(takenEdges(gatewayMachine, paths, events)).toEqual(declaredEdges(gatewayMachine));
  });

  it("reaches every declared state, and only those", () => {
    expect(declaredStates(gatewayMachine)).toEqual(["active", "draining", "lapsed", "standby", "stopped"]);
    expect(reachedStates(paths)).toEqual(declaredStates(gatewayMachine));
  });

  it("enters draining only from active on DRAIN, active only on a leased assignment, lapsed only from active on a TICK", () => {
    const firstEntry = (state: Snap["value"]) =>
      paths
        .map((p) => ({ values: p.steps.map((s) => s.state.value), steps: p.steps }))
        .map(({ values, steps }) => ({ i: values.indexOf(state), values, steps }))
        .filter(({ i }) => i > 0);
    expect(firstEntry("draining").length).toBeGreaterThan(0);
    for (const { i, values, steps } of firstEntry("draining")) {
      expect(values[i - 1]).toBe("active");
      expect(steps[i]!.event.type).toBe("DRAIN");
    }
    for (const { i, steps } of firstEntry("active")) {
      const e = steps[i]!.event;
      expect(e.type === "ASSIGNMENT" && e.leaseUntil !== null && e.leaseUntil > e.now).toBe(true);
    }
    expect(firstEntry("lapsed").length).toBeGreaterThan(0);
    for (const { i, values, steps } of firstEntry("lapsed")) {
      expect(values[i - 1]).toBe("active");
      expect(steps[i]!.event.type).toBe("TICK");
    }
  });

  it("holds no role or lease in any reachable standby or stopped snapshot", () => {
    const idle = paths.filter((p) => p.state.value === "standby" || p.state.value === "stopped");
    expect(idle.length).toBeGreaterThan(3);
    for (const p of idle) expect(p.state.context).toMatchObject({ activeTypes: [], leaseUntil: 0 });
  });
});
