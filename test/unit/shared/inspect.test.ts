// The inspector's presence, sampling, batching and bounds, on a ManualClock with a fake publish.
import { createActor } from "xstate";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../../shared/clock";
import { INSPECT_DROPPED, MeshInspector, createMeshInspector } from "../../../shared/inspect";
import { counters } from "../../../shared/metrics";
import { decodeAs, encode, subjects, type InspectBatch } from "../../../shared/protocol";
import { gatewayMachine, nodeMachine, type GatewayEvent } from "../../../statecharts";

function setup(settings: ConstructorParameters<typeof MeshInspector>[0]["settings"] = {}) {
  const clock = new ManualClock();
  const sent: { subject: string; batch: InspectBatch }[] = [];
  const inspector = new MeshInspector({
    source: "gateway/a-gw-1",
    domain: "edge-a",
    subject: subjects.gatewayInspect("edge-a", "a-gw-1"),
    publish: (subject, data) => sent.push({ subject, batch: decodeAs(data, "inspect.batch") }),
    clock,
    settings,
  });
  const actor = createActor(gatewayMachine, {
    input: { node: "a-gw-1", drainTimeoutMs: 1_000, lapseHoldMs: 2_000 },
    inspect: inspector.inspect,
  });
  actor.start();
  const viewer = (id = "ui-1", ttlMs = 3_000) =>
    inspector.onPresence(encode("inspect.viewer", { viewer: id, sentAt: 0, ttlMs }));
  const entries = () => sent.flatMap((s) => s.batch.entries);
  return { clock, sent, inspector, actor, viewer, entries };
}

const assign = (term: number, active: boolean, now: number): GatewayEvent => ({
  type: "ASSIGNMENT",
  gateway: "gw-a",
  term,
  activeTypes: active ? ["proxy"] : [],
  leaseUntil: active ? now + 250 : null,
  now,
});

describe("MeshInspector", () => {
  it("publishes nothing and starts no timer while no viewer announced itself", () => {
    const { clock, sent, inspector, actor } = setup();
    for (let i = 0; i < 100; i++) actor.send({ type: "TICK", now: i });
    actor.send(assign(1, true, 0));
    clock.advance(10_000);
    expect(sent).toEqual([]);
    expect(inspector.isViewed).toBe(false);
  });

  it("a new viewer first gets the current state of every actor (sync), then every transition", () => {
    const { clock, sent, actor, viewer, entries } = setup();
    actor.send(assign(3, true, 0));
    viewer();
    clock.advance(100);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.subject).toBe("raven.d.edge-a.gw.a-gw-1.inspect");
    expect(sent[0]!.batch).toMatchObject({ source: "gateway/a-gw-1", domain: "edge-a", sync: true, dropped: 0 });
    expect(sent[0]!.batch.entries).toEqual([
      expect.objectContaining({
        actor: "gateway/a-gw-1",
        machine: "gateway",
        event: "sync",
        state: "active",
        term: 3,
        changed: false,
      }),
    ]);
    actor.send({ type: "TICK", now: 1_000 }); // lease over: active -> lapsed
    clock.advance(100);
    expect(entries().at(-1)).toMatchObject({ event: "TICK", state: "lapsed", changed: true, term: 3 });
    expect(JSON.parse(entries().at(-1)!.payload!)).toEqual({ type: "TICK", now: 1_000 });
    expect(JSON.parse(entries().at(-1)!.context!)).toMatchObject({ node: "a-gw-1", term: 3 });
  });

  it("drops TICKs and repeated ASSIGNMENTs that change neither state nor term", () => {
    const { clock, actor, viewer, entries } = setup();
    viewer();
    clock.advance(100);
    const before = entries().length;
    for (let i = 0; i < 500; i++) actor.send({ type: "TICK", now: i });
    actor.send(assign(1, false, 0)); // standby stays standby, but the term moves: shown
    actor.send(assign(1, false, 0)); // a repeat (a heartbeat's acknowledgement): quiet
    clock.advance(100);
    const after = entries().slice(before);
    expect(after.map((e) => `${e.event}:${e.term}:${e.changed}`)).toEqual(["ASSIGNMENT:1:false"]);
    actor.send(assign(2, true, 0));
    actor.send({ type: "TICK", now: 10 }); // no change
    actor.send({ type: "TICK", now: 300 }); // lease expired: a state change, published
    clock.advance(100);
    expect(
      entries()
        .slice(before + 1)
        .map((e) => `${e.event}:${e.state}:${e.term}`),
    ).toEqual(["ASSIGNMENT:active:2", "TICK:lapsed:2"]);
  });

  it("stops publishing about ttlMs after the last announcement", () => {
    const { clock, sent, inspector, actor, viewer } = setup();
    viewer("ui-1", 3_000);
    clock.advance(2_500);
    viewer("ui-1", 3_000); // still there
    clock.advance(2_500);
    expect(inspector.isViewed).toBe(true);
    clock.advance(600);
    expect(inspector.isViewed).toBe(false);
    const n = sent.length;
    actor.send(assign(5, true, 0));
    clock.advance(1_000);
    expect(sent).toHaveLength(n);
  });

  it("bounds its buffer: drops the oldest entries, counts them and reports them in the next batch", () => {
    const { clock, actor, viewer, entries, sent } = setup({ maxBuffer: 10, maxBatch: 4, maxBatchesPerFlush: 1 });
    viewer();
    clock.advance(100); // sync
    const dropped0 = counters.total(INSPECT_DROPPED);
    for (let t = 1; t <= 25; t++) actor.send(assign(t, false, 0));
    expect(counters.total(INSPECT_DROPPED) - dropped0).toBe(15);
    clock.advance(100);
    expect(sent.at(-1)!.batch.dropped).toBe(15);
    expect(sent.at(-1)!.batch.entries.map((e) => e.term)).toEqual([16, 17, 18, 19]);
    clock.advance(100); // one batch per flush: the rest follows, and the drop count is reported once
    expect(sent.at(-1)!.batch.dropped).toBe(0);
    clock.advance(300);
    expect(entries().at(-1)!.term).toBe(25);
  });

  it("never throws into the actor, even when publishing fails", () => {
    const clock = new ManualClock();
    const inspector = new MeshInspector({
      source: "node/n1",
      domain: "edge-a",
      subject: "x",
      clock,
      publish: () => {
        throw new Error("mesh down");
      },
    });
    const actor = createActor(nodeMachine, {
      input: { node: "n1", domain: "edge-a", retryMs: 10 },
      inspect: inspector.inspect,
    });
    inspector.onPresence(encode("inspect.viewer", { viewer: "v", sentAt: 0, ttlMs: 1_000 }));
    inspector.onPresence(new Uint8Array([1, 2, 3])); // garbage presence is dropped
    actor.start();
    expect(() => clock.advance(500)).not.toThrow();
    expect(actor.getSnapshot().status).toBe("active");
  });

  it("keeps one entry per named actor and reports only machines (not their invoked promises)", () => {
    const clock = new ManualClock();
    const sent: InspectBatch[] = [];
    const inspector = new MeshInspector({
      source: "coordinator/c-1",
      subject: "x",
      clock,
      publish: (_s, d) => sent.push(decodeAs(d, "inspect.batch")),
    });
    const a = createActor(nodeMachine, {
      input: { node: "n1", domain: "edge-a", retryMs: 10 },
      inspect: inspector.observer("node/n1"),
    });
    const b = createActor(nodeMachine, {
      input: { node: "n2", domain: "edge-a", retryMs: 10 },
      inspect: inspector.observer("node/n2"),
    });
    a.start();
    b.start();
    inspector.onPresence(encode("inspect.viewer", { viewer: "v", sentAt: 0, ttlMs: 1_000 }));
    clock.advance(100);
    expect(sent[0]!.sync).toBe(true);
    expect(sent[0]!.entries.map((e) => e.actor).sort()).toEqual(["node/n1", "node/n2"]);
    b.stop();
    inspector.onPresence(encode("inspect.viewer", { viewer: "v2", sentAt: 0, ttlMs: 1_000 })); // a new viewer: sync again
    clock.advance(100);
    expect(
      sent
        .filter((s) => s.sync)
        .at(-1)!
        .entries.map((e) => e.actor),
    ).toEqual(["node/n1"]);
  });

  it("attach: no inspection observer on the actor until a viewer is present, none after it left", () => {
    const clock = new ManualClock();
    const sent: InspectBatch[] = [];
    const inspector = new MeshInspector({
      source: "gateway/g1",
      domain: "edge-a",
      subject: "x",
      clock,
      publish: (_s, d) => sent.push(decodeAs(d, "inspect.batch")),
    });
    const actor = createActor(gatewayMachine, { input: { node: "g1", drainTimeoutMs: 1_000, lapseHoldMs: 2_000 } });
    let observers = 0;
    const inspect = actor.system.inspect.bind(actor.system);
    actor.system.inspect = (o) => {
      observers++;
      const sub = inspect(o);
      return {
        unsubscribe: () => {
          observers--;
          sub.unsubscribe();
        },
      };
    };
    inspector.attach(actor);
    actor.start();
    expect(observers).toBe(0);
    inspector.onPresence(encode("inspect.viewer", { viewer: "v", sentAt: 0, ttlMs: 1_000 }));
    expect(observers).toBe(1);
    actor.send(assign(2, true, 0));
    clock.advance(100);
    expect(sent.flatMap((b) => b.entries).map((e) => `${e.event}:${e.state}:${e.term}`)).toEqual(["sync:active:2"]);
    actor.send({ type: "TICK", now: 1_000 });
    clock.advance(100);
    expect(sent.flatMap((b) => b.entries).at(-1)).toMatchObject({ event: "TICK", state: "lapsed", changed: true });
    clock.advance(1_000);
    expect(inspector.isViewed).toBe(false);
    expect(observers).toBe(0);
  });

  it("createMeshInspector subscribes to its domain's presence subject and publishes under raven.d.<domain>", () => {
    const subs: string[] = [];
    const pubs: string[] = [];
    let deliver: ((data: Uint8Array) => void) | null = null;
    const clock = new ManualClock();
    const nc = {
      publish: (s: string) => void pubs.push(s),
      subscribe: (s: string, o: { callback: (e: unknown, m: { data: Uint8Array }) => void }) => {
        subs.push(s);
        deliver = (data) => o.callback(null, { data });
        return { unsubscribe: () => {} };
      },
    };
    const h = createMeshInspector(nc, { actorSource: "node/n-1", domain: "edge-a", clock });
    createActor(nodeMachine, { input: { node: "n-1", domain: "edge-a", retryMs: 10 }, inspect: h.inspect }).start();
    expect(subs).toEqual(["raven.d.edge-a.inspect.viewer"]);
    deliver!(encode("inspect.viewer", { viewer: "v", sentAt: 0, ttlMs: 1_000 }));
    clock.advance(100);
    expect(pubs).toEqual(["raven.d.edge-a.node.n-1.inspect"]);
    const c = createMeshInspector(nc, { actorSource: "coordinator/coordinator-1-42-abc", clock });
    expect(subs.at(-1)).toBe("raven.ctl.inspect.viewer");
    c.stop();
    h.stop();
    expect(() => createMeshInspector(nc, { actorSource: "gateway/x" })).toThrow(/domain/);
  });
});
