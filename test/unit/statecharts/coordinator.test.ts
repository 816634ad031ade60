// Coordinator: lease campaign → active (holding the lease) → standby on LEASE_LOST, retrying after a failed
// campaign, and STOP. The DomainActors are run by the service while this machine is `active`, so here only
// the lease lifecycle is tested: pure transitions, a SimulatedClock run with fake actors, and a graph walk.
import { beforeAll, describe, expect, it } from "vitest";
import {
  SimulatedClock,
  createActor,
  fromCallback,
  fromPromise,
  initialTransition,
  transition,
  waitFor,
  type SnapshotFrom,
} from "xstate";
import { getShortestPaths } from "xstate/graph";
import { coordinatorMachine, type CoordinatorEvent } from "../../../statecharts/coordinator";
import {
  declaredEdges,
  declaredStates,
  takenEdges,
  delays,
  reachedStates,
  serializeEvent,
  spawned,
  stoppedChildren,
} from "./fixtures";

type Snap = SnapshotFrom<typeof coordinatorMachine>;
const input = { id: "coord-1", retryMs: 100 };
const CAMPAIGN = "0.coordinator.standby";
const HOLD = "0.coordinator.active";
const ev = (e: object) => e as unknown as CoordinatorEvent;
const won = ev({ type: `xstate.done.actor.${CAMPAIGN}` });
const lost = (error: unknown) => ev({ type: `xstate.error.actor.${CAMPAIGN}`, error });
const RETRY = ev({ type: "xstate.after.retryDelay.coordinator.retrying" });
const LEASE_LOST: CoordinatorEvent = { type: "LEASE_LOST", reason: "lease taken by another coordinator" };

const start = (): Snap => initialTransition(coordinatorMachine, input)[0];
const step = (s: Snap, e: CoordinatorEvent) => transition(coordinatorMachine, s, e);
const active = (): Snap => step(start(), won)[0];
const retrying = (): Snap => step(start(), lost(new Error("kv gone")))[0];

describe("Coordinator transitions", () => {
  it("starts in standby campaigning for the lease", () => {
    const [s, actions] = initialTransition(coordinatorMachine, input);
    expect(s.value).toEqual({ standby: "dormant" });
    expect(s.context).toEqual({ id: "coord-1", retryMs: 100, lastError: null });
    expect(spawned(actions)).toEqual([
      expect.objectContaining({ id: CAMPAIGN, src: "campaign", input: { id: "coord-1" } }),
    ]);
  });

  it("becomes active when the campaign resolves, and holds the lease", () => {
    const [s, actions] = step(start(), won);
    expect(s.value).toEqual({ active: "warming" });
    expect(Object.keys(s.children)).toEqual([HOLD]);
    expect(stoppedChildren(actions)).toEqual([CAMPAIGN]);
    expect(spawned(actions)).toEqual([expect.objectContaining({ src: "hold", input: { id: "coord-1" } })]);
  });

  it("goes to retrying when the campaign rejects, keeping the reason", () => {
    const [s, actions] = step(start(), lost(new Error("kv gone")));
    expect(s.value).toBe("retrying");
    expect(s.context.lastError).toBe("kv gone");
    expect(Object.keys(s.children)).toEqual([]);
    expect(delays(actions)).toEqual([100]);
    expect(step(start(), lost("refused"))[0].context.lastError).toBe("refused");
  });

  it("campaigns again once the retry delay fires", () => {
    const [s, actions] = step(retrying(), RETRY);
    expect(s.value).toEqual({ standby: "dormant" });
    expect(spawned(actions).map((a) => a.src)).toEqual(["campaign"]);
  });

  it("steps down to standby on LEASE_LOST, releasing the hold and campaigning again", () => {
    const [s, actions] = step(active(), LEASE_LOST);
    expect(s.value).toEqual({ standby: "dormant" });
    expect(s.context.lastError).toBe("lease taken by another coordinator");
    expect(stoppedChildren(actions)).toEqual([HOLD]);
    expect(spawned(actions).map((a) => a.src)).toEqual(["campaign"]);
    expect(Object.keys(s.children)).toEqual([CAMPAIGN]);
  });

  it("ignores LEASE_LOST outside active", () => {
    for (const s of [start(), retrying()]) {
      const [next, actions] = step(s, LEASE_LOST);
      expect(next.value).toBe(s.value);
      expect(next.context).toEqual(s.context);
      expect(actions).toEqual([]);
    }
  });

  it("follows heartbeats as a standby only while the campaign finds the holder stale", () => {
    const [following] = step(start(), { type: "HOLDER_STALE" });
    expect(following.value).toEqual({ standby: "following" });
    expect(Object.keys(following.children)).toEqual([CAMPAIGN]); // the same campaign goes on
    expect(step(following, { type: "HOLDER_FRESH" })[0].value).toEqual({ standby: "dormant" });
    expect(step(following, won)[0].value).toEqual({ active: "warming" });
    expect(step(active(), { type: "HOLDER_STALE" })[0].value).toEqual({ active: "warming" });
  });

  it("decides only once its health view is warm, and forgets it when the lease goes", () => {
    const [deciding, actions] = step(active(), { type: "WARM" });
    expect(deciding.value).toEqual({ active: "deciding" });
    expect(actions.map((a) => a.type)).toContain("warmed");
    expect(Object.keys(deciding.children)).toEqual([HOLD]); // still holding the lease
    expect(step(deciding, LEASE_LOST)[0].value).toEqual({ standby: "dormant" });
    expect(step(step(deciding, LEASE_LOST)[0], won)[0].value).toEqual({ active: "warming" });
    expect(step(start(), { type: "WARM" })[0].value).toEqual({ standby: "dormant" });
  });

  it("stops for good on STOP from every state, stopping what that state runs", () => {
    const cases: [Snap, string[]][] = [
      [start(), [CAMPAIGN]],
      [retrying(), []],
      [active(), [HOLD]],
    ];
    for (const [s, running] of cases) {
      const [stopped, actions] = step(s, { type: "STOP" });
      expect(stopped.value).toBe("stopped");
      expect(stopped.status).toBe("done");
      expect(Object.keys(stopped.children)).toEqual([]);
      expect(stoppedChildren(actions)).toEqual(running);
    }
  });

  it("cancels the pending retry on STOP", () => {
    const [, actions] = step(retrying(), { type: "STOP" });
    expect(actions.map((a) => a.type)).toContain("xstate.cancel");
  });
});

describe("Coordinator on a SimulatedClock", () => {
  function harness(outcomes: ("win" | "pending" | Error)[]) {
    const clock = new SimulatedClock();
    const signals: AbortSignal[] = [];
    const h = { campaigns: 0, holds: 0, released: 0, sendBack: null as ((e: CoordinatorEvent) => void) | null };
    const machine = coordinatorMachine.provide({
      actors: {
        campaign: fromPromise<void, { id: string }>(({ signal }) => {
          signals.push(signal);
          const next = outcomes[Math.min(h.campaigns++, outcomes.length - 1)]!;
          if (next instanceof Error) return Promise.reject(next);
          if (next === "win") return Promise.resolve();
          return new Promise<void>(() => {});
        }),
        hold: fromCallback<CoordinatorEvent, { id: string }>(({ sendBack }) => {
          h.holds++;
          h.sendBack = sendBack;
          return () => {
            h.released++;
          };
        }),
      },
    });
    const actor = createActor(machine, { input, clock });
    actor.start();
    return { actor, clock, signals, h };
  }

  it("retries a rejected campaign only after retryMs, then becomes active", async () => {
    const { actor, clock, h } = harness([new Error("mesh down"), "win"]);
    await waitFor(actor, (s) => s.matches("retrying"));
    clock.increment(99);
    expect(actor.getSnapshot().value).toBe("retrying");
    expect(h.campaigns).toBe(1);
    clock.increment(1);
    expect(h.campaigns).toBe(2);
    await waitFor(actor, (s) => s.matches("active"));
    expect(h.holds).toBe(1);
    expect(actor.getSnapshot().context.lastError).toBe("mesh down");
    actor.stop();
  });

  it("steps down when the hold reports LEASE_LOST, releases the hold, and campaigns again", async () => {
    const { actor, h } = harness(["win", "pending"]);
    await waitFor(actor, (s) => s.matches("active"));
    h.sendBack!({ type: "LEASE_LOST", reason: "lease expired before it could be renewed" });
    expect(actor.getSnapshot().value).toEqual({ standby: "dormant" });
    expect(actor.getSnapshot().context.lastError).toBe("lease expired before it could be renewed");
    expect(h.released).toBe(1);
    expect(h.campaigns).toBe(2);
    actor.stop();
  });

  it("aborts a pending campaign on STOP and ends", async () => {
    const { actor, signals, h } = harness(["pending"]);
    expect(signals).toHaveLength(1);
    expect(signals[0]!.aborted).toBe(false);
    actor.send({ type: "STOP" });
    expect(actor.getSnapshot().status).toBe("done");
    expect(signals[0]!.aborted).toBe(true);
    expect(h.holds).toBe(0);
  });

  it("releases the hold on STOP while active", async () => {
    const { actor, h } = harness(["win"]);
    await waitFor(actor, (s) => s.matches("active"));
    actor.send({ type: "STOP" });
    expect(actor.getSnapshot().value).toBe("stopped");
    expect(h.released).toBe(1);
  });

  it("never campaigns while retrying: the timer is the only way back", async () => {
    const { actor, clock, h } = harness([new Error("a"), new Error("b"), "win"]);
    await waitFor(actor, (s) => s.matches("retrying"));
    actor.send(LEASE_LOST);
    expect(h.campaigns).toBe(1);
    clock.increment(100);
    await waitFor(actor, (s) => s.matches("retrying") && h.campaigns === 2);
    clock.increment(100);
    await waitFor(actor, (s) => s.matches("active"));
    expect(h.campaigns).toBe(3);
    actor.stop();
  });
});

describe("Coordinator graph", () => {
  const machine = coordinatorMachine.provide({
    actors: { campaign: fromPromise<void, { id: string }>(async () => {}), hold: fromCallback(() => {}) },
  });
  const events: CoordinatorEvent[] = [
    won,
    lost(new Error("kv gone")),
    RETRY,
    LEASE_LOST,
    { type: "HOLDER_STALE" },
    { type: "HOLDER_FRESH" },
    { type: "WARM" },
    { type: "STOP" },
  ];
  let paths: ReturnType<typeof getShortestPaths<typeof machine>> = [];
  beforeAll(() => {
    paths = getShortestPaths(machine, { input, events, serializeEvent });
  });

  it("takes every declared transition on some path", () => {
    expect(takenEdges(machine, paths, events)).toEqual(declaredEdges(machine));
  });

  it("reaches every declared state, and only those", () => {
    expect(declaredStates(coordinatorMachine)).toEqual(["active", "retrying", "standby", "stopped"]);
    expect(reachedStates(paths)).toEqual(declaredStates(coordinatorMachine));
  });

  it("is active only after a campaign won", () => {
    for (const p of paths.filter((q) => q.state.matches("active"))) {
      const i = p.steps.findIndex((s) => s.state.matches("active"));
      expect(p.steps[i - 1]!.state.matches("standby")).toBe(true);
      expect(p.steps[i]!.event.type).toBe(`xstate.done.actor.${CAMPAIGN}`);
    }
  });
});
