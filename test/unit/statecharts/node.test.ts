// NodeActor: registration with exponential backoff, disconnect/reconnect, re-registration. Pure transitions
// for the decisions, a SimulatedClock for the backoff timer, and a graph walk over every state.
import { describe, expect, it } from "vitest";
import {
  SimulatedClock,
  createActor,
  fromPromise,
  initialTransition,
  transition,
  waitFor,
  type SnapshotFrom,
} from "xstate";
import { getShortestPaths } from "xstate/graph";
import { nodeMachine, type NodeEvent, type Registration } from "../../../statecharts/node";
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

type Snap = SnapshotFrom<typeof nodeMachine>;
const input = { node: "n1", domain: "pool-a", retryMs: 100 };
const INVOKE = "0.node.registering";
const done = (output: Registration) => ({ type: `xstate.done.actor.${INVOKE}`, output }) as unknown as NodeEvent;
const fail = (error: unknown) => ({ type: `xstate.error.actor.${INVOKE}`, error }) as unknown as NodeEvent;
const retry = { type: "xstate.after.retryDelay.node.backoff" } as unknown as NodeEvent;
const reg: Registration = { gateway: "gw-a", solo: false };

const start = (): Snap => initialTransition(nodeMachine, input)[0];
const step = (snap: Snap, e: NodeEvent) => transition(nodeMachine, snap, e);

describe("NodeActor transitions", () => {
  it("starts registering, invoking `register` with its node and domain", () => {
    const [snap, actions] = initialTransition(nodeMachine, input);
    expect(snap.value).toBe("registering");
    expect(spawned(actions)).toEqual([
      expect.objectContaining({ src: "register", input: { node: "n1", domain: "pool-a" } }),
    ]);
  });

  it("registering → registered on success, storing the registration", () => {
    const [snap] = step(start(), done(reg));
    expect(snap.value).toBe("registered");
    expect(snap.context).toMatchObject({ registration: reg, attempt: 0, lastError: null });
  });

  it("registering → backoff on failure, counting the attempt and keeping the message", () => {
    const [snap, actions] = step(start(), fail(new Error("no coordinator answered")));
    expect(snap.value).toBe("backoff");
    expect(snap.context).toMatchObject({ attempt: 1, lastError: "no coordinator answered", registration: null });
    expect(delays(actions)).toEqual([100]);
  });

  it("keeps a non-Error rejection as text", () => {
    expect(step(start(), fail("refused"))[0].context.lastError).toBe("refused");
  });

  it("backoff → registering when the retry delay fires", () => {
    const [backoff] = step(start(), fail(new Error("x")));
    const [snap, actions] = step(backoff, retry);
    expect(snap.value).toBe("registering");
    expect(spawned(actions).map((s) => s.src)).toEqual(["register"]);
  });

  it("doubles the retry delay per failed attempt and caps it at 10x retryMs", () => {
    let snap = start();
    const seen: number[] = [];
    for (let i = 0; i < 7; i++) {
      const [failed, actions] = step(snap, fail(new Error(`attempt ${i + 1}`)));
      seen.push(...delays(actions));
      snap = step(failed, retry)[0];
    }
    expect(seen).toEqual([100, 200, 400, 800, 1_000, 1_000, 1_000]);
    expect(snap.context.attempt).toBe(7);
  });

  it("resets the attempt count after a success", () => {
    const [b1] = step(start(), fail(new Error("x")));
    const [r1] = step(b1, retry);
    const [b2] = step(r1, fail(new Error("y")));
    const [ok] = step(step(b2, retry)[0], done(reg));
    expect(ok.context.attempt).toBe(0);
    const [again, actions] = step(step(ok, { type: "REREGISTER" })[0], fail(new Error("z")));
    expect(again.context.attempt).toBe(1);
    expect(delays(actions)).toEqual([100]);
  });

  it("goes to disconnected from every state on DISCONNECTED", () => {
    const registering = start();
    const registered = step(registering, done(reg))[0];
    const backoff = step(registering, fail(new Error("x")))[0];
    const disconnected = step(registering, { type: "DISCONNECTED" })[0];
    for (const s of [registering, registered, backoff, disconnected]) {
      expect(step(s, { type: "DISCONNECTED" })[0].value).toBe("disconnected");
    }
  });

  it("stops the pending registration when disconnected", () => {
    const [, actions] = step(start(), { type: "DISCONNECTED" });
    expect(stoppedChildren(actions)).toEqual([INVOKE]);
  });

  it("disconnected → registering on CONNECTED", () => {
    const [disc] = step(step(start(), done(reg))[0], { type: "DISCONNECTED" });
    const [snap, actions] = step(disc, { type: "CONNECTED" });
    expect(snap.value).toBe("registering");
    expect(spawned(actions).map((s) => s.src)).toEqual(["register"]);
  });

  it("registered → registering on REREGISTER", () => {
    const [snap, actions] = step(step(start(), done(reg))[0], { type: "REREGISTER" });
    expect(snap.value).toBe("registering");
    expect(spawned(actions).map((s) => s.src)).toEqual(["register"]);
  });

  it("ignores CONNECTED outside disconnected and REREGISTER outside registered", () => {
    const registered = step(start(), done(reg))[0];
    const backoff = step(start(), fail(new Error("x")))[0];
    expect(step(registered, { type: "CONNECTED" })[0].value).toBe("registered");
    expect(step(backoff, { type: "CONNECTED" })[0].value).toBe("backoff");
    expect(step(backoff, { type: "REREGISTER" })[0].value).toBe("backoff");
    expect(step(start(), { type: "REREGISTER" })[0].value).toBe("registering");
  });
});

describe("NodeActor on a SimulatedClock", () => {
  function run(outcomes: (Registration | Error)[]) {
    const clock = new SimulatedClock();
    let calls = 0;
    const machine = nodeMachine.provide({
      actors: {
        register: fromPromise<Registration, { node: string; domain: string }>(async () => {
          const next = outcomes[Math.min(calls++, outcomes.length - 1)]!;
          if (next instanceof Error) throw next;
          return next;
        }),
      },
    });
    const actor = createActor(machine, { input, clock });
    actor.start();
    return { actor, clock, calls: () => calls };
  }

  it("registers on the first try", async () => {
    const { actor, calls } = run([reg]);
    await waitFor(actor, (s) => s.matches("registered"));
    expect(actor.getSnapshot().context.registration).toEqual(reg);
    expect(calls()).toBe(1);
    actor.stop();
  });

  it("waits retryMs, then 2x retryMs, before retrying", async () => {
    const { actor, clock, calls } = run([new Error("one"), new Error("two"), reg]);
    await waitFor(actor, (s) => s.matches("backoff"));
    clock.increment(99);
    expect(actor.getSnapshot().value).toBe("backoff");
    expect(calls()).toBe(1);
    clock.increment(1);
    expect(calls()).toBe(2);
    await waitFor(actor, (s) => s.matches("backoff") && s.context.attempt === 2);
    clock.increment(199);
    expect(calls()).toBe(2);
    clock.increment(1);
    await waitFor(actor, (s) => s.matches("registered"));
    expect(calls()).toBe(3);
    expect(actor.getSnapshot().context).toMatchObject({ attempt: 0, lastError: null, registration: reg });
    actor.stop();
  });

  it("cancels the backoff timer on DISCONNECTED", async () => {
    const { actor, clock, calls } = run([new Error("one"), reg]);
    await waitFor(actor, (s) => s.matches("backoff"));
    actor.send({ type: "DISCONNECTED" });
    clock.increment(10_000);
    expect(actor.getSnapshot().value).toBe("disconnected");
    expect(calls()).toBe(1);
    actor.send({ type: "CONNECTED" });
    await waitFor(actor, (s) => s.matches("registered"));
    expect(calls()).toBe(2);
    actor.stop();
  });
});

describe("NodeActor graph", () => {
  it("reaches every declared state, and only those", () => {
    const machine = nodeMachine.provide({ actors: { register: fromPromise(async () => reg) } });
    const events: NodeEvent[] = [
      done(reg),
      fail(new Error("refused")),
      retry,
      { type: "DISCONNECTED" },
      { type: "CONNECTED" },
      { type: "REREGISTER" },
    ];
    const paths = getShortestPaths(machine, {
      input,
      events,
      serializeEvent,
      serializeState: (s) => JSON.stringify({ value: s.value, attempt: Math.min(s.context.attempt, 2) }),
    });
    expect(declaredStates(nodeMachine)).toEqual(["backoff", "disconnected", "registered", "registering"]);
    expect(reachedStates(paths)).toEqual(declaredStates(nodeMachine));
    // Every declared transition, not just every state, is taken from some reached state.
    expect(takenEdges(machine, paths, events)).toEqual(declaredEdges(machine));
  });
});
