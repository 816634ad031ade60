// DomainActor: the pure `plan` (what to write), the machine's transitions (when to write, retry, reload,
// hand over), the same on a SimulatedClock with fake KV actors, and a graph walk over every state.
// Over 400 lines, one concept: one machine's cases, grouped as the header lists (plan, transitions, clock,
// graph); splitting them would scatter the fixtures they share.
import { beforeAll, describe, expect, it } from "vitest";
import { fromPromise, getMicrosteps, initialTransition, transition, waitFor, type SnapshotFrom } from "xstate";
import { getShortestPaths } from "xstate/graph";
import {
  domainMachine,
  plan,
  type DomainContext,
  type DomainEmitted,
  type DomainEvent,
} from "../../../statecharts/domain";
import type { LoadOutput, WriteInput, WriteOutput } from "../../../statecharts/domain";
import { CasConflictError } from "../../../shared/errors";
import { LABEL_SOLO, type Gateway } from "../../../shared/gateway";
import { runDomain, settle, type HarnessOptions } from "./domain-harness";
import {
  both,
  declaredEdges,
  declaredStates,
  takenEdges,
  delays,
  emitted,
  ep,
  gateway,
  keys,
  reachedStates,
  serializeEvent,
  spawned,
} from "./fixtures";

type Snap = SnapshotFrom<typeof domainMachine>;
const input = { key: "gw.g", name: "g", solo: false, retryMs: 100, handoverMs: 500 };
const LOAD = "0.domain.loading";
const WRITE = "0.domain.writing";
const ev = (e: object) => e as unknown as DomainEvent;
const loaded = (record: Gateway | null, revision: number) =>
  ev({ type: `xstate.done.actor.${LOAD}`, output: { record, revision } });
const loadFailed = (error: unknown) => ev({ type: `xstate.error.actor.${LOAD}`, error });
const written = (output: WriteOutput) => ev({ type: `xstate.done.actor.${WRITE}`, output });
const writeFailed = (error: unknown) => ev({ type: `xstate.error.actor.${WRITE}`, error });
const RETRY = ev({ type: "xstate.after.retryDelay.domain.backoff" });
const HANDOVER = ev({ type: "xstate.after.handoverDelay.domain.handover" });
const health = (healthy: string[], alive: string[] = healthy): DomainEvent => ({ type: "HEALTH", healthy, alive });
const nodeInfo = (nodeName: string) => ({ nodeName, privateIP: "10.0.0.1", subnets: ["10.244.1.0/24"] });

/** A proxy-only Gateway with candidates a and b, a active in term 1. */
const record = (o: Partial<Parameters<typeof gateway>[1]> = {}) =>
  gateway("g", { endpoints: [ep("a"), ep("b")], tunnel: 0, active: [ep("a")], term: 1, ...o });

const ctx = (over: Partial<DomainContext>): DomainContext => ({
  ...{
    ...input,
    record: null,
    revision: 0,
    healthy: [],
    alive: [],
    rising: [],
    healthKnown: true,
    stamped: true,
    members: null,
    tunnelProblem: null,
    attempt: 0,
    lastError: null,
  },
  ...over,
});

const step = (s: Snap, e: DomainEvent) => transition(domainMachine, s, e);
const start = (i = input): Snap => initialTransition(domainMachine, i)[0];
/** Loaded `rec` at revision 5 with health already known. */
const steadyWith = (rec: Gateway | null, healthy: string[], alive = healthy): Snap => {
  const [s] = step(step(start(), health(healthy, alive))[0], loaded(rec, 5));
  expect(s.value).toBe("steady");
  return s;
};

describe("plan", () => {
  it("writes nothing before HEALTH arrives", () => {
    expect(plan(ctx({ healthKnown: false, solo: true }))).toBeNull();
    expect(plan(ctx({ healthKnown: false, record: record(), healthy: ["b"] }))).toBeNull();
  });

  it("creates a solo unit's record with term 1, naming the node for both types", () => {
    const p = plan(ctx({ solo: true, healthy: ["g"], alive: ["g"] }))!;
    expect(p.handover).toBe(false);
    expect(p.record.metadata.labels?.[LABEL_SOLO]).toBe("true");
    expect(keys(p.record.status.activeEndpoints)).toEqual(["proxy/g", "tunnel/g"]);
    expect(p.record.status.term).toBe(1);
    expect(p.record.status.problem).toBeUndefined();
  });

  it("creates a solo record even when its node is not healthy yet, with term 0 and the shortfall", () => {
    const p = plan(ctx({ solo: true }))!;
    expect(p.record.status).toEqual({
      nodes: [],
      activeEndpoints: [],
      term: 0,
      problem: "no healthy candidate for proxy 0/1, tunnel 0/1",
    });
  });

  it("does nothing for a Gateway unit whose record does not exist", () => {
    expect(plan(ctx({ healthy: ["a"], alive: ["a"] }))).toBeNull();
  });

  it("does nothing when the stored record is already right (a healthy active is kept)", () => {
    expect(plan(ctx({ record: record(), healthy: ["a", "b"], alive: ["a", "b"] }))).toBeNull();
    expect(plan(ctx({ record: record({ active: [ep("b")] }), healthy: ["a", "b"], alive: ["a", "b"] }))).toBeNull();
  });

  it("replaces a silent active in one write, term + 1", () => {
    const p = plan(ctx({ record: record({ term: 7 }), healthy: ["b"], alive: ["b"] }))!;
    expect(p.handover).toBe(false);
    expect(keys(p.record.status.activeEndpoints)).toEqual(["proxy/b"]);
    expect(p.record.status.term).toBe(8);
    expect(p.record.status.problem).toBeUndefined();
  });

  it("keeps the term when only the members change", () => {
    const p = plan(ctx({ record: record({ term: 4 }), healthy: ["a"], alive: ["a"], members: [nodeInfo("a")] }))!;
    expect(p.record.status).toEqual({ nodes: [nodeInfo("a")], activeEndpoints: [ep("a")], term: 4 });
  });

  it("keeps the term when only the problem changes", () => {
    const short = plan(ctx({ record: record({ active: [], term: 2 }) }))!;
    expect(short.record.status).toEqual({
      nodes: [],
      activeEndpoints: [],
      term: 2,
      problem: "no healthy candidate for proxy 0/1",
    });
    const cleared = plan(ctx({ record: record({ term: 2, problem: "stale" }), healthy: ["a"], alive: ["a"] }))!;
    expect(cleared.record.status).toEqual({ nodes: [], activeEndpoints: [ep("a")], term: 2 });
  });

  it("keeps a silent active named, in its term, while nobody healthy can replace it", () => {
    // The whole domain went silent (its uplink is down): no term with nobody in it.
    const cut = plan(ctx({ record: record({ term: 3 }) }))!;
    expect(cut.handover).toBe(false);
    expect(cut.record.status).toEqual({
      nodes: [],
      activeEndpoints: [ep("a")],
      term: 3,
      problem: "silent active proxy/a kept named",
    });
    // Heard again and risen: the same active, the same term, the problem cleared — no election at all.
    const healed = plan(ctx({ record: cut.record, healthy: ["a"], alive: ["a"] }))!;
    expect(healed.record.status).toEqual({ nodes: [], activeEndpoints: [ep("a")], term: 3 });
    // Nothing more to write while the cut lasts, nor while it is heard again but has not risen yet.
    expect(plan(ctx({ record: cut.record }))).toBeNull();
    expect(plan(ctx({ record: cut.record, alive: ["a"], rising: ["a"] }))).toBeNull();
  });

  it("replaces a kept silent active with the first candidate that rises", () => {
    const cut = plan(ctx({ record: record({ term: 3 }) }))!.record;
    const p = plan(ctx({ record: cut, healthy: ["b"], alive: ["b"] }))!;
    expect(p.handover).toBe(false);
    expect(p.record.status).toEqual({ nodes: [], activeEndpoints: [ep("b")], term: 4 });
  });

  it("waits for a rising active rather than switch to a candidate that rose first", () => {
    // The whole domain was cut off; b rose first, a (the active) is heard again and rising.
    const cut = plan(ctx({ record: record({ term: 3 }) }))!.record;
    expect(plan(ctx({ record: cut, healthy: ["b"], alive: ["a", "b"], rising: ["a"] }))).toBeNull();
    // Risen: the same active, the same term.
    expect(plan(ctx({ record: cut, healthy: ["a", "b"], alive: ["a", "b"] }))!.record.status).toEqual({
      nodes: [],
      activeEndpoints: [ep("a")],
      term: 3,
    });
    // Its data path fails instead (no longer rising, but alive): handed over in two phases, as a live active.
    const live = plan(ctx({ record: cut, healthy: ["b"], alive: ["a", "b"] }))!;
    expect(live.handover).toBe(true);
    expect(live.record.status).toMatchObject({ activeEndpoints: [], term: 4 });
  });

  it("replaces a rising active that is no longer current without a handover: it holds no lease", () => {
    // a was the active, declared dead, and is rising again, but the record names nobody of its type now
    // (removed from the spec): nothing to wait for, and no lease to wait out.
    const rec = record({ endpoints: [ep("b")], active: [ep("a")], term: 3 });
    const p = plan(ctx({ record: rec, healthy: ["b"], alive: ["a", "b"], rising: ["a"] }))!;
    expect(p.handover).toBe(false);
    expect(p.record.status).toEqual({ nodes: [], activeEndpoints: [ep("b")], term: 4 });
  });

  it("keeps a silent solo node named for both types", () => {
    const solo = { ...ctx({}), solo: true, name: "g" };
    const first = plan({ ...solo, healthy: ["g"], alive: ["g"] })!.record;
    const silent = plan({ ...solo, record: first })!;
    expect(keys(silent.record.status.activeEndpoints)).toEqual(["proxy/g", "tunnel/g"]);
    expect(silent.record.status.term).toBe(first.status.term);
    expect(silent.record.status.problem).toBe("silent active proxy/g, tunnel/g kept named");
  });

  it("keeps no more silent actives of a type than its replicas now ask for", () => {
    // Two proxy actives went silent together after the spec went down to one replica, then to none.
    const two = record({ endpoints: [ep("a"), ep("b")], proxy: 2, active: [ep("a"), ep("b")], term: 2 });
    const one = plan(
      ctx({ record: { ...two, spec: { ...two.spec, proxyConfig: { ...two.spec.proxyConfig, Replicas: 1 } } } }),
    )!;
    expect(one.record.status).toMatchObject({ activeEndpoints: [ep("a")], term: 3 });
    const none = plan(
      ctx({ record: { ...two, spec: { ...two.spec, proxyConfig: { ...two.spec.proxyConfig, Replicas: 0 } } } }),
    )!;
    expect(none.record.status).toMatchObject({ activeEndpoints: [], term: 3 });
  });

  it("does not keep a live unhealthy active, nor a silent one when another active of its type remains", () => {
    // Alive but unhealthy (draining, data path failing) with no successor: handed over as before.
    const live = plan(ctx({ record: record({ term: 3 }), alive: ["a"] }))!;
    expect(live.handover).toBe(true);
    expect(live.record.status).toMatchObject({ activeEndpoints: [], term: 4 });
    // Two proxy replicas, one silent, nobody to replace it: the type still has a healthy active, so the
    // silent one is dropped and the shortfall reported.
    const rec = record({ endpoints: [ep("a"), ep("b")], proxy: 2, active: [ep("a"), ep("b")], term: 2 });
    const p = plan(ctx({ record: rec, healthy: ["b"], alive: ["b"] }))!;
    expect(p.record.status).toEqual({
      nodes: [],
      activeEndpoints: [ep("b")],
      term: 3,
      problem: "no healthy candidate for proxy 1/2",
    });
  });

  it("removes a live but unhealthy active alone first, then adds the successor", () => {
    const phaseOne = plan(ctx({ record: record({ term: 3 }), healthy: ["b"], alive: ["a", "b"] }))!;
    expect(phaseOne.handover).toBe(true);
    expect(phaseOne.record.status).toMatchObject({
      activeEndpoints: [],
      term: 4,
      problem: "handing over from a live gateway",
    });
    const phaseTwo = plan(ctx({ record: phaseOne.record, healthy: ["b"], alive: ["a", "b"] }))!;
    expect(phaseTwo.handover).toBe(false);
    expect(phaseTwo.record.status).toEqual({ nodes: [], activeEndpoints: [ep("b")], term: 5 });
  });

  it("hands over from a live active that was removed from the spec", () => {
    const rec = record({ endpoints: [ep("b")], active: [ep("a")] });
    const p = plan(ctx({ record: rec, healthy: ["a", "b"], alive: ["a", "b"] }))!;
    expect(p.handover).toBe(true);
    expect(p.record.status.activeEndpoints).toEqual([]);
  });

  it("keeps the other healthy actives in phase one", () => {
    const rec = record({ endpoints: [ep("a"), ep("b"), ep("c")], proxy: 2, active: [ep("a"), ep("b")] });
    const p = plan(ctx({ record: rec, healthy: ["b", "c"], alive: ["a", "b", "c"] }))!;
    expect(p.handover).toBe(true);
    expect(keys(p.record.status.activeEndpoints)).toEqual(["proxy/b"]);
    expect(p.record.status.term).toBe(2);
  });

  it("removes a live unhealthy active even when nobody can succeed it", () => {
    const p = plan(ctx({ record: record(), healthy: [], alive: ["a"] }))!;
    expect(p.record.status).toMatchObject({ nodes: [], activeEndpoints: [], term: 2 });
    expect(p.record.status.problem).toBeDefined();
  });
});

describe("DomainActor transitions", () => {
  it("starts loading its key", () => {
    const [s, actions] = initialTransition(domainMachine, input);
    expect(s.value).toBe("loading");
    expect(spawned(actions)).toEqual([expect.objectContaining({ src: "loadRecord", input: { key: "gw.g" } })]);
  });

  it("does not write on a cold view: loaded without HEALTH it settles in steady", () => {
    const [s, actions] = step(start(), loaded(record(), 3));
    expect(s.value).toBe("steady");
    expect(s.context).toMatchObject({ revision: 3, healthKnown: false, attempt: 0 });
    expect(spawned(actions)).toEqual([]);
    expect(emitted(actions)).toEqual([]);
  });

  it("stores HEALTH (sorted) while loading without leaving loading", () => {
    const [s] = step(start(), health(["b", "a"], ["c", "b", "a"]));
    expect(s.value).toBe("loading");
    expect(s.context).toMatchObject({ healthKnown: true, healthy: ["a", "b"], alive: ["a", "b", "c"] });
  });

  it("writes with CAS on the loaded revision when HEALTH calls for a change", () => {
    const [s, actions] = step(step(start(), loaded(record(), 5))[0], health(["b"], ["b"]));
    expect(s.value).toBe("writing");
    const [write] = spawned(actions);
    expect(write).toMatchObject({ src: "writeRecord", input: { key: "gw.g", revision: 5, handover: false } });
    const w = write!.input as WriteInput;
    expect(keys(w.record.status.activeEndpoints)).toEqual(["proxy/b"]);
    expect(w.record.status.term).toBe(2);
  });

  it("emits the written record as an assignment and settles", () => {
    const writing = step(steadyWith(record(), ["a"]), health(["b"]))[0];
    const rec = record({ active: [ep("b")], term: 2 });
    const [s, actions] = step(writing, written({ record: rec, revision: 6, handover: false }));
    expect(s.value).toBe("steady");
    expect(s.context).toMatchObject({ record: rec, revision: 6, attempt: 0, lastError: null });
    expect(emitted<DomainEmitted>(actions)).toEqual([{ type: "assignment", key: "gw.g", record: rec, revision: 6 }]);
  });

  it("waits handoverMs after a phase-one write, then writes phase two", () => {
    const writing = step(steadyWith(record(), ["a", "b"]), health(["b"], ["a", "b"]))[0];
    const phaseOne = record({ active: [], term: 2, problem: "handing over from a live gateway" });
    const [s, actions] = step(writing, written({ record: phaseOne, revision: 6, handover: true }));
    expect(s.value).toBe("handover");
    expect(delays(actions)).toEqual([500]);
    expect(emitted<DomainEmitted>(actions).map((e) => e.record.status.term)).toEqual([2]);
    const [next, more] = step(s, HANDOVER);
    expect(next.value).toBe("writing");
    expect(spawned(more)[0]).toMatchObject({ src: "writeRecord", input: { revision: 6, handover: false } });
    expect(keys((spawned(more)[0]!.input as WriteInput).record.status.activeEndpoints)).toEqual(["proxy/b"]);
  });

  it("reloads at once after a lost compare-and-swap", () => {
    const writing = step(steadyWith(record(), ["a"]), health(["b"]))[0];
    const [s, actions] = step(writing, writeFailed(new CasConflictError("gw.g")));
    expect(s.value).toBe("loading");
    expect(s.context.attempt).toBe(1);
    expect(s.context.lastError).toMatch(/compare-and-swap/);
    expect(spawned(actions).map((a) => a.src)).toEqual(["loadRecord"]);
    expect(delays(actions)).toEqual([]);
  });

  it("backs off after any other write error, then reloads", () => {
    const writing = step(steadyWith(record(), ["a"]), health(["b"]))[0];
    const [s, actions] = step(writing, writeFailed(new Error("kv unavailable")));
    expect(s.value).toBe("backoff");
    expect(s.context.lastError).toBe("kv unavailable");
    expect(delays(actions)).toEqual([100]);
    expect(step(s, RETRY)[0].value).toBe("loading");
  });

  it("doubles the retry delay per failed attempt up to 10x retryMs", () => {
    let s = start();
    const seen: number[] = [];
    for (let i = 0; i < 6; i++) {
      const [failed, actions] = step(s, loadFailed(new Error("down")));
      seen.push(...delays(actions));
      s = step(failed, RETRY)[0];
    }
    expect(seen).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect(step(s, loaded(record(), 1))[0].context.attempt).toBe(0);
  });

  it("ignores a RECORD with an older or equal revision", () => {
    const steady = steadyWith(record(), ["a"]);
    for (const revision of [4, 5]) {
      const [s, actions] = step(steady, { type: "RECORD", record: record({ active: [], term: 9 }), revision });
      expect(s.value).toBe("steady");
      expect(s.context).toEqual(steady.context);
      expect(actions).toEqual([]);
    }
    const [loading] = step(step(start(), { type: "RECORD", record: record(), revision: 3 })[0], {
      type: "RECORD",
      record: null,
      revision: 3,
    });
    expect(loading.context).toMatchObject({ record: record(), revision: 3 });
  });

  it("decides again on a newer RECORD", () => {
    const steady = steadyWith(record({ active: [ep("b")] }), ["b"]);
    const [same, none] = step(steady, { type: "RECORD", record: record({ active: [ep("b")], term: 7 }), revision: 6 });
    expect(same.value).toBe("steady");
    expect(same.context).toMatchObject({ revision: 6, record: { status: { term: 7 } } });
    expect(spawned(none)).toEqual([]);
    const [s, actions] = step(steady, { type: "RECORD", record: record({ term: 7 }), revision: 8 });
    expect(s.value).toBe("writing");
    expect(spawned(actions)[0]).toMatchObject({ input: { revision: 8 } });
    expect((spawned(actions)[0]!.input as WriteInput).record.status.term).toBe(8);
  });

  it("writes new members without changing the term", () => {
    const [s, actions] = step(steadyWith(record({ term: 3 }), ["a"]), { type: "MEMBERS", nodes: [nodeInfo("a")] });
    expect(s.value).toBe("writing");
    expect((spawned(actions)[0]!.input as WriteInput).record.status).toEqual({
      nodes: [nodeInfo("a")],
      activeEndpoints: [ep("a")],
      term: 3,
    });
  });

  it("re-emits the current assignment on RESYNC in steady, and only with a record", () => {
    const steady = steadyWith(record(), ["a"]);
    const [s, actions] = step(steady, { type: "RESYNC" });
    expect(s.value).toBe("steady");
    expect(emitted(actions)).toEqual([{ type: "assignment", key: "gw.g", record: record(), revision: 5 }]);
    expect(emitted(step(steadyWith(null, ["a"]), { type: "RESYNC" })[1])).toEqual([]);
    expect(emitted(step(start(), { type: "RESYNC" })[1])).toEqual([]);
  });
});

describe("DomainActor on a SimulatedClock", () => {
  const harness = (o: HarnessOptions) => runDomain({ ...input, solo: o.solo ?? false }, o);

  it("creates a solo record with term 1 once HEALTH arrives", async () => {
    const h = harness({ load: () => ({ record: null, revision: 0 }), solo: true });
    await waitFor(h.actor, (s) => s.matches("steady"));
    expect(h.writes).toEqual([]);
    h.actor.send(health(["g"]));
    await waitFor(h.actor, (s) => s.matches("steady") && s.context.revision === 1);
    expect(h.writes).toHaveLength(1);
    expect(h.writes[0]).toMatchObject({ revision: 0, handover: false });
    expect(h.assignments.map((a) => [a.key, a.revision, a.record.status.term])).toEqual([["gw.g", 1, 1]]);
    h.actor.stop();
  });

  it("hands over from a draining active: removal now, successor only after handoverMs", async () => {
    const h = harness({ load: () => ({ record: record(), revision: 1 }) });
    await waitFor(h.actor, (s) => s.matches("steady"));
    h.actor.send(health(["b"], ["a", "b"]));
    await waitFor(h.actor, (s) => s.matches("handover"));
    expect(h.writes.map((w) => keys(w.record.status.activeEndpoints))).toEqual([[]]);
    h.clock.increment(499);
    await settle();
    expect(h.actor.getSnapshot().value).toBe("handover");
    expect(h.writes).toHaveLength(1);
    h.clock.increment(1);
    await waitFor(h.actor, (s) => s.matches("steady"));
    expect(h.writes.map((w) => keys(w.record.status.activeEndpoints))).toEqual([[], ["proxy/b"]]);
    expect(h.assignments.map((a) => a.record.status.term)).toEqual([2, 3]);
    h.actor.stop();
  });

  it("reloads immediately on a CAS conflict and decides again on the fresh record", async () => {
    const fresh = record({ active: [ep("b")], term: 4 });
    const h = harness({
      load: (n) => (n === 0 ? { record: record(), revision: 1 } : { record: fresh, revision: 2 }),
      write: (_w, n) => (n === 0 ? new CasConflictError("gw.g") : null),
    });
    await waitFor(h.actor, (s) => s.matches("steady"));
    h.actor.send(health(["b"]));
    await waitFor(h.actor, (s) => s.matches("steady") && h.loads() === 2);
    expect(h.writes).toHaveLength(1);
    expect(h.actor.getSnapshot().context).toMatchObject({ record: fresh, revision: 2, attempt: 0 });
    expect(h.assignments).toEqual([]);
    h.actor.stop();
  });

  it("backs off retryDelay after another write error before reloading", async () => {
    const h = harness({
      load: () => ({ record: record(), revision: 1 }),
      write: (_w, n) => (n === 0 ? new Error("kv down") : null),
    });
    await waitFor(h.actor, (s) => s.matches("steady"));
    h.actor.send(health(["b"]));
    await waitFor(h.actor, (s) => s.matches("backoff"));
    h.clock.increment(99);
    expect(h.loads()).toBe(1);
    h.clock.increment(1);
    expect(h.loads()).toBe(2);
    await waitFor(h.actor, (s) => s.matches("steady") && h.writes.length === 2);
    expect(h.assignments.map((a) => keys(a.record.status.activeEndpoints))).toEqual([["proxy/b"]]);
    h.actor.stop();
  });

  it("retries a failed load after retryMs, then 2x retryMs", async () => {
    const h = harness({ load: (n) => (n < 2 ? new Error("no KV") : { record: record(), revision: 1 }) });
    await waitFor(h.actor, (s) => s.matches("backoff"));
    h.clock.increment(100);
    await waitFor(h.actor, (s) => s.matches("backoff") && s.context.attempt === 2);
    h.clock.increment(199);
    expect(h.loads()).toBe(2);
    h.clock.increment(1);
    await waitFor(h.actor, (s) => s.matches("steady"));
    expect(h.loads()).toBe(3);
    h.actor.stop();
  });

  // A live active removed while no successor is healthy: a successor that turns healthy a moment later must
  // still wait until the removed active's lease has run out.
  it("waits handoverMs after removing a live active even if the successor turns healthy later", async () => {
    const h = harness({ load: () => ({ record: record(), revision: 1 }) });
    await waitFor(h.actor, (s) => s.matches("steady"));
    h.actor.send(health([], ["a"]));
    await waitFor(h.actor, () => h.writes.length === 1);
    await settle();
    h.clock.increment(10);
    h.actor.send(health(["b"], ["a", "b"]));
    await settle();
    expect(h.writes.map((w) => keys(w.record.status.activeEndpoints))).toEqual([[]]);
    h.clock.increment(490);
    await settle();
    expect(h.writes.map((w) => keys(w.record.status.activeEndpoints)).at(-1)).toEqual(["proxy/b"]);
    h.actor.stop();
  });
});

describe("DomainActor with stampFirst (as the coordinator runs it)", () => {
  it("plan: an unstamped record that needs no change is written back unchanged once health is known", () => {
    const rec = record();
    expect(plan(ctx({ record: rec, revision: 4, healthy: ["a"], alive: ["a"], stamped: false }))).toEqual({
      record: rec,
      handover: false,
    });
    expect(plan(ctx({ record: rec, revision: 4, healthy: ["a"], alive: ["a"], stamped: true }))).toBeNull();
    expect(plan(ctx({ record: rec, revision: 4, healthKnown: false, stamped: false }))).toBeNull();
  });

  it("writes the loaded record once with CAS on its revision, then only when something changes", async () => {
    const h = runDomain({ ...input, stampFirst: true }, { load: () => ({ record: record(), revision: 7 }) });
    await waitFor(h.actor, (s) => s.matches("steady"));
    expect(h.writes).toHaveLength(0);
    h.actor.send(health(["a"]));
    await waitFor(h.actor, (s) => s.matches("steady") && s.context.stamped);
    expect(h.writes).toHaveLength(1);
    expect(h.writes[0]!.revision).toBe(7);
    expect(h.writes[0]!.record.status).toEqual(record().status);
    h.actor.send(health(["a", "b"]));
    await settle();
    expect(h.writes).toHaveLength(1);
    expect(h.actor.getSnapshot().context.record!.status.term).toBe(1);
    h.actor.stop();
  });

  it("stays unstamped after a lost compare-and-swap until its reload is written", async () => {
    const h = runDomain(
      { ...input, stampFirst: true },
      {
        load: (n) => ({ record: record(), revision: n === 0 ? 7 : 8 }),
        write: (_w, n) => (n === 0 ? new CasConflictError("gw.g") : null),
      },
    );
    h.actor.send(health(["a"]));
    await waitFor(h.actor, (s) => s.matches("steady") && s.context.stamped);
    expect(h.writes.map((w) => w.revision)).toEqual([7, 8]);
    expect(h.loads()).toBe(2);
    h.actor.stop();
  });
});

describe("DomainActor graph", () => {
  const machine = domainMachine.provide({
    actors: {
      loadRecord: fromPromise<LoadOutput, { key: string }>(async () => ({ record: record(), revision: 1 })),
      writeRecord: fromPromise<WriteOutput, WriteInput>(async ({ input: w }) => ({ ...w, revision: w.revision + 1 })),
    },
  });
  const events = (s: Snap): DomainEvent[] => {
    const p = plan(s.context);
    return [
      health(["a", "b"]),
      health(["b"], ["a", "b"]),
      health(["b"], ["b"]),
      { type: "RECORD", record: record({ endpoints: both("a", "b") }), revision: 50 },
      { type: "MEMBERS", nodes: [nodeInfo("a")] },
      { type: "RESYNC" },
      loaded(record(), 1),
      loadFailed(new Error("no KV")),
      ...(p ? [written({ record: p.record, revision: s.context.revision + 1, handover: p.handover })] : []),
      writeFailed(new CasConflictError("gw.g")),
      writeFailed(new Error("kv down")),
      RETRY,
      HANDOVER,
    ];
  };
  let paths: ReturnType<typeof getShortestPaths<typeof machine>> = [];
  beforeAll(() => {
    paths = getShortestPaths(machine, {
      input,
      events,
      serializeEvent,
      serializeState: (s) => {
        const { healthKnown, healthy, alive, record: r, members, attempt } = s.context;
        return JSON.stringify({
          v: s.value,
          healthKnown,
          healthy,
          alive,
          r: r && keys(r.status.activeEndpoints),
          m: !!members,
          f: attempt > 0,
        });
      },
    });
  });

  it("takes every declared transition on some path", () => {
    const declared = declaredEdges(machine);
    expect(declared.length).toBeGreaterThan(10);
    expect(takenEdges(machine, paths, events)).toEqual(declared);
  });

  it("reaches every declared state at rest except the transient `deciding`", () => {
    expect(declaredStates(domainMachine)).toEqual(["backoff", "deciding", "handover", "loading", "steady", "writing"]);
    expect(reachedStates(paths)).toEqual(["backoff", "handover", "loading", "steady", "writing"]);
  });

  it("passes through `deciding` in microsteps, so every declared state is reached", () => {
    const seen = new Set<string>(reachedStates(paths));
    for (const p of paths) {
      for (let i = 1; i < p.steps.length; i++) {
        for (const [snap] of getMicrosteps(machine, p.steps[i - 1]!.state, p.steps[i]!.event))
          seen.add(String(snap.value));
      }
    }
    expect([...seen].sort()).toEqual(declaredStates(domainMachine));
  });

  it("only ever reaches handover after a write that reported a handover", () => {
    for (const p of paths.filter((q) => q.state.value === "handover")) {
      const i = p.steps.findIndex((s) => s.state.value === "handover");
      expect(p.steps[i]!.event).toMatchObject({ type: `xstate.done.actor.${WRITE}`, output: { handover: true } });
    }
  });
});
