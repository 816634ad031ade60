// L3TunnelActor: negotiation, rekeying, probing, backoff and the peer-term fences of one tunnel-mode peer
// link, tested as pure transitions; plus a graph walk showing every declared state and transition is reachable
// and that a report about another peer term never changes anything.
// Over 400 lines, one concept: one machine's cases and the fixtures they share.
import { describe, expect, it } from "vitest";
import { initialTransition, transition, type SnapshotFrom } from "xstate";
import { getShortestPaths } from "xstate/graph";
import {
  isTunnelUsable,
  l3TunnelMachine,
  l3TunnelView,
  type L3TunnelEmitted,
  type L3TunnelEvent,
  type L3TunnelState,
} from "../../../statecharts/l3-tunnel";
import { backoffMs } from "../../../statecharts/retry";
import { declaredEdges, declaredStates, emitted, reachedStates, serializeEvent, takenEdges } from "./fixtures";

type Snap = SnapshotFrom<typeof l3TunnelMachine>;
const input = { peer: "edge-b", driver: "fake", retryMs: 100, negotiateTimeoutMs: 1_000, probeFailLimit: 3 };

const peer = (term: number, now = 0, node = "b-gw1", addr = "10.2.0.1"): L3TunnelEvent => ({
  type: "PEER",
  node,
  addr,
  term,
  now,
});
type StatusOpts = { term?: number; saId?: string | null; now?: number; error?: string | null; bytes?: number | null };
const status = (state: "up" | "connecting" | "down", o: StatusOpts = {}): L3TunnelEvent => ({
  type: "STATUS",
  peerTerm: o.term ?? 1,
  state,
  saId: o.saId === undefined ? (state === "up" ? "sa-1" : null) : o.saId,
  bytesIn: o.bytes ?? null,
  bytesOut: o.bytes === undefined || o.bytes === null ? null : o.bytes * 2,
  error: o.error ?? null,
  now: o.now ?? 0,
});
const probe = (ok: boolean, o: { term?: number; rttMs?: number; now?: number } = {}): L3TunnelEvent => ({
  type: "PROBE",
  peerTerm: o.term ?? 1,
  ok,
  rttMs: ok ? (o.rttMs ?? 12) : null,
  now: o.now ?? 0,
});
const tick = (now: number): L3TunnelEvent => ({ type: "TICK", now });
const close: L3TunnelEvent = { type: "CLOSE" };

function start(i = input): Snap {
  return initialTransition(l3TunnelMachine, i)[0];
}
function step(snap: Snap, event: L3TunnelEvent): [Snap, L3TunnelEmitted[]] {
  const [next, actions] = transition(l3TunnelMachine, snap, event);
  return [next, emitted<L3TunnelEmitted>(actions)];
}
/** Runs the events from `from` (a fresh idle machine by default); returns the end and the last event's emits. */
function run(events: L3TunnelEvent[], from: Snap = start()): [Snap, L3TunnelEmitted[]] {
  let snap = from;
  let out: L3TunnelEmitted[] = [];
  for (const e of events) [snap, out] = step(snap, e);
  return [snap, out];
}
function at(expected: L3TunnelState, events: L3TunnelEvent[]): Snap {
  const [snap] = run(events);
  expect(snap.value).toBe(expected);
  return snap;
}

// One snapshot per state, for term 1 with peer b-gw1 (all at now = 0 unless said).
const negotiating = () => at("negotiating", [peer(1, 10)]);
const up = () => at("up", [peer(1, 10), status("up", { now: 20, bytes: 5 })]);
const rekeying = () =>
  at("rekeying", [peer(1, 10), status("up", { now: 20 }), status("up", { saId: "sa-2", now: 30 })]);
const degraded = () =>
  at("degraded", [peer(1, 10), status("up"), probe(false), probe(false), probe(false, { now: 40 })]);
const down = () => at("down", [peer(1, 10), status("up"), status("down", { error: "peer deleted the SA", now: 50 })]);
const backoff = () => at("backoff", [peer(1, 10), status("down", { error: "NO_PROPOSAL_CHOSEN", now: 60 })]);
const idle = () => start();
const ALL: [string, () => Snap][] = [
  ["idle", idle],
  ["negotiating", negotiating],
  ["up", up],
  ["rekeying", rekeying],
  ["degraded", degraded],
  ["down", down],
  ["backoff", backoff],
];
const LIVE = ALL.filter(([name]) => name !== "idle");

describe("L3TunnelActor: idle and the first peer", () => {
  it("starts idle with no peer and reports it", () => {
    const [snap, actions] = initialTransition(l3TunnelMachine, input);
    expect(snap.value).toBe("idle");
    expect(snap.context).toMatchObject({
      peer: "edge-b",
      driver: "fake",
      peerNode: null,
      peerTerm: 0,
      saId: null,
      since: 0,
    });
    expect(emitted(actions)).toEqual([
      { type: "tunnelState", state: "idle", peer: "edge-b", peerNode: null, peerTerm: 0, error: null },
    ]);
  });

  it("ignores STATUS, PROBE and TICK until a peer is known", () => {
    for (const e of [status("up", { term: 0 }), status("up"), probe(true, { term: 0 }), tick(1e9)]) {
      const [snap, out] = step(idle(), e);
      expect(snap.value).toBe("idle");
      expect(snap.context).toEqual(idle().context);
      expect(out).toEqual([]);
    }
  });

  it("adopts a PEER, arms the negotiation deadline and asks the service to negotiate", () => {
    const [snap, out] = step(idle(), peer(1, 10));
    expect(snap.value).toBe("negotiating");
    expect(snap.context).toMatchObject({
      peerNode: "b-gw1",
      peerAddr: "10.2.0.1",
      peerTerm: 1,
      deadline: 1_010,
      since: 10,
    });
    expect(out).toEqual([
      { type: "tunnelState", state: "negotiating", peer: "edge-b", peerNode: "b-gw1", peerTerm: 1, error: null },
      { type: "negotiate", peer: "edge-b", peerNode: "b-gw1", peerAddr: "10.2.0.1", peerTerm: 1 },
    ]);
  });
});

describe("L3TunnelActor: PEER fencing", () => {
  it.each(LIVE)("in %s, ignores an older term and reports it as staleTerm", (_name, make) => {
    const [moved] = step(make(), peer(5, 70, "b-gw2", "10.2.0.2"));
    const before = run([status("up", { term: 5 })], moved)[0];
    const [snap, out] = step(before, peer(4, 80, "b-gw1"));
    expect(snap.value).toBe(before.value);
    expect(snap.context).toEqual(before.context);
    expect(out).toEqual([{ type: "staleTerm", peer: "edge-b", term: 4, current: 5 }]);
  });

  it.each(LIVE)("in %s, the same peer at the same term is a no-op", (_name, make) => {
    const before = make();
    const [snap, out] = step(before, peer(1, 500));
    expect(snap.value).toBe(before.value);
    expect(snap.context).toEqual(before.context);
    expect(out).toEqual([]);
  });

  it.each(ALL)("in %s, a newer term renegotiates at once (no backoff) with the counters reset", (_name, make) => {
    const [snap, out] = step(make(), peer(2, 90, "b-gw2", "10.2.0.2"));
    expect(snap.value).toBe("negotiating");
    expect(snap.context).toMatchObject({
      peerNode: "b-gw2",
      peerAddr: "10.2.0.2",
      peerTerm: 2,
      saId: null,
      failures: 0,
    });
    expect(snap.context).toMatchObject({ probeFails: 0, latencyMs: null, bytesIn: null, deadline: 1_090, since: 90 });
    expect(out.at(-1)).toEqual({
      type: "negotiate",
      peer: "edge-b",
      peerNode: "b-gw2",
      peerAddr: "10.2.0.2",
      peerTerm: 2,
    });
  });

  it.each(LIVE)(
    "in %s, a newer term naming the same gateway only advances the fence (a proxy-only change of the peer's record)",
    (_name, make) => {
      const before = make();
      const [snap, out] = step(before, peer(before.context.peerTerm + 1, 500));
      expect(snap.value).toBe(before.value);
      expect(snap.context).toEqual({ ...before.context, peerTerm: before.context.peerTerm + 1 });
      expect(out).toEqual([]);
      // reports about the old term are fenced off from now on
      expect(step(snap, status("down", { term: before.context.peerTerm }))[0].context).toEqual(snap.context);
    },
  );

  it("treats a changed node or address at the same term as a new peer", () => {
    expect(step(up(), peer(1, 90, "b-gw2"))[0].context).toMatchObject({ peerNode: "b-gw2", saId: null });
    const [moved, out] = step(up(), peer(1, 90, "b-gw1", "10.2.9.9"));
    expect(moved.value).toBe("negotiating");
    expect(out.map((e) => e.type)).toEqual(["tunnelState", "negotiate"]);
  });

  it("a new peer while negotiating starts the negotiation over, with a fresh deadline", () => {
    const [snap, out] = step(negotiating(), peer(2, 900, "b-gw2"));
    expect(snap.value).toBe("negotiating");
    expect(snap.context.deadline).toBe(1_900);
    expect(out.map((e) => e.type)).toEqual(["tunnelState", "negotiate"]);
    expect(step(snap, tick(1_899))[0].value).toBe("negotiating");
  });
});

describe("L3TunnelActor: STATUS and PROBE fencing", () => {
  it.each(LIVE)("in %s, ignores STATUS and PROBE about another peer term", (_name, make) => {
    const before = make();
    for (const e of [
      status("up", { term: 0, saId: "sa-9" }),
      status("up", { term: 2, saId: "sa-9" }),
      status("down", { term: 0, error: "old" }),
      status("connecting", { term: 2 }),
      probe(true, { term: 0 }),
      probe(false, { term: 2 }),
    ]) {
      const [snap, out] = step(before, e);
      expect(snap.value).toBe(before.value);
      expect(snap.context).toEqual(before.context);
      expect(out).toEqual([]);
    }
  });

  it("after the peer moves, a late 'up' about the old gateway does not bring the new tunnel up", () => {
    const [moved] = step(up(), peer(2, 100, "b-gw2"));
    expect(step(moved, status("up", { term: 1, saId: "sa-1" }))[0].value).toBe("negotiating");
    expect(step(moved, status("up", { term: 2, saId: "sa-7" }))[0].value).toBe("up");
  });
});

describe("L3TunnelActor: negotiating", () => {
  it("comes up on STATUS up, storing the association and its counters", () => {
    const [snap, out] = step(negotiating(), status("up", { saId: "sa-1", bytes: 5, now: 20 }));
    expect(snap.value).toBe("up");
    expect(snap.context).toMatchObject({
      saId: "sa-1",
      bytesIn: 5,
      bytesOut: 10,
      failures: 0,
      lastError: null,
      since: 20,
    });
    expect(out).toEqual([
      { type: "tunnelState", state: "up", peer: "edge-b", peerNode: "b-gw1", peerTerm: 1, error: null },
    ]);
  });

  it("keeps waiting while the driver is connecting", () => {
    const [snap, out] = step(negotiating(), status("connecting", { now: 500 }));
    expect(snap.value).toBe("negotiating");
    expect(snap.context).toEqual(negotiating().context);
    expect(out).toEqual([]);
  });

  it("backs off on STATUS down with the driver's error (or a default)", () => {
    const [snap, out] = step(negotiating(), status("down", { error: "AUTHENTICATION_FAILED", now: 60 }));
    expect(snap.value).toBe("backoff");
    expect(snap.context).toMatchObject({ failures: 1, retryAt: 160, lastError: "AUTHENTICATION_FAILED", since: 60 });
    expect(out).toEqual([
      {
        type: "tunnelState",
        state: "backoff",
        peer: "edge-b",
        peerNode: "b-gw1",
        peerTerm: 1,
        error: "AUTHENTICATION_FAILED",
      },
    ]);
    expect(step(negotiating(), status("down"))[0].context.lastError).toBe("negotiation failed");
  });

  it("times out on the TICK that reaches the deadline", () => {
    expect(step(negotiating(), tick(1_009))[0].value).toBe("negotiating");
    const [snap, out] = step(negotiating(), tick(1_010));
    expect(snap.value).toBe("backoff");
    expect(snap.context).toMatchObject({
      failures: 1,
      retryAt: 1_110,
      lastError: "negotiation timed out after 1000 ms",
    });
    expect(out[0]).toMatchObject({ state: "backoff", error: "negotiation timed out after 1000 ms" });
  });
});

describe("L3TunnelActor: backoff", () => {
  it("retries when due, with a delay that doubles per failure and is capped at 10 x retryMs", () => {
    let snap = negotiating();
    const delays: number[] = [];
    for (let n = 1, now = 1_000; n <= 6; n++, now += 10_000) {
      [snap] = step(snap, status("down", { now }));
      expect(snap.value).toBe("backoff");
      expect(snap.context.failures).toBe(n);
      delays.push(snap.context.retryAt - now);
      expect(step(snap, tick(snap.context.retryAt - 1))[0].value).toBe("backoff");
      const [again, out] = step(snap, tick(snap.context.retryAt));
      expect(again.value).toBe("negotiating");
      expect(out.map((e) => e.type)).toEqual(["tunnelState", "negotiate"]);
      snap = again;
    }
    expect(delays).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect(delays).toEqual([1, 2, 3, 4, 5, 6].map((n) => backoffMs(100, n)));
  });

  it("comes up if the association comes up meanwhile (the peer initiated)", () => {
    const [snap] = step(backoff(), status("up", { saId: "sa-p", now: 70 }));
    expect(snap.value).toBe("up");
    expect(snap.context).toMatchObject({ saId: "sa-p", failures: 0, lastError: null });
  });

  it("only notes the error of a further STATUS down", () => {
    const before = backoff();
    const [snap, out] = step(before, status("down", { error: "TS_UNACCEPTABLE", now: 65 }));
    expect(snap.value).toBe("backoff");
    expect(snap.context).toEqual({ ...before.context, lastError: "TS_UNACCEPTABLE" });
    expect(out).toEqual([]);
    expect(step(before, status("down"))[0].context.lastError).toBe("NO_PROPOSAL_CHOSEN");
  });
});

describe("L3TunnelActor: up", () => {
  it("stays up on the same association, updating the byte counters", () => {
    const [snap, out] = step(up(), status("up", { bytes: 700, now: 99 }));
    expect(snap.value).toBe("up");
    expect(snap.context).toMatchObject({ bytesIn: 700, bytesOut: 1_400, since: 20 });
    expect(out).toEqual([]);
  });

  it("rekeys on a new association id, with a rekey deadline", () => {
    const [snap, out] = step(up(), status("up", { saId: "sa-2", now: 30 }));
    expect(snap.value).toBe("rekeying");
    expect(snap.context).toMatchObject({ saId: "sa-2", deadline: 1_030 });
    expect(out[0]).toMatchObject({ state: "rekeying" });
  });

  it("goes down when the driver reports connecting or down, counting a failure", () => {
    const [lost, out] = step(up(), status("connecting", { now: 50 }));
    expect(lost.value).toBe("down");
    expect(lost.context).toMatchObject({
      failures: 1,
      retryAt: 150,
      lastError: "security association lost",
      since: 50,
    });
    expect(out).toEqual([
      {
        type: "tunnelState",
        state: "down",
        peer: "edge-b",
        peerNode: "b-gw1",
        peerTerm: 1,
        error: "security association lost",
      },
    ]);
    expect(step(up(), status("down", { error: "DPD timeout" }))[0].context.lastError).toBe("DPD timeout");
  });

  it("records latency from probes; failed probes count up and a good one resets them", () => {
    const [fast] = step(up(), probe(true, { rttMs: 7 }));
    expect(fast.context).toMatchObject({ latencyMs: 7, probeFails: 0 });
    const [twice] = run([probe(false), probe(false)], fast);
    expect(twice.value).toBe("up");
    expect(twice.context).toMatchObject({ probeFails: 2, latencyMs: 7 });
    expect(step(twice, probe(true, { rttMs: 9 }))[0].context).toMatchObject({ probeFails: 0, latencyMs: 9 });
  });

  it("degrades after probeFailLimit failed probes in a row", () => {
    const [snap, out] = run([probe(false), probe(false), probe(false, { now: 40 })], up());
    expect(snap.value).toBe("degraded");
    expect(snap.context).toMatchObject({ probeFails: 3, lastError: "3 probes in a row failed", since: 40 });
    expect(out[0]).toMatchObject({ state: "degraded", error: "3 probes in a row failed" });
    const strict = run([peer(1), status("up"), probe(false)], start({ ...input, probeFailLimit: 1 }))[0];
    expect(strict.value).toBe("degraded");
  });
});

describe("L3TunnelActor: rekeying", () => {
  it("is up again on a good probe or the driver confirming the new association", () => {
    expect(step(rekeying(), probe(true, { rttMs: 3 }))[0].context).toMatchObject({ latencyMs: 3 });
    expect(step(rekeying(), probe(true))[0].value).toBe("up");
    const [snap, out] = step(rekeying(), status("up", { saId: "sa-2", bytes: 1, now: 40 }));
    expect(snap.value).toBe("up");
    expect(snap.context).toMatchObject({ saId: "sa-2", bytesIn: 1, since: 40 });
    expect(out[0]).toMatchObject({ state: "up" });
  });

  it("follows a further association id without extending its deadline", () => {
    const [snap, out] = step(rekeying(), status("up", { saId: "sa-3", now: 500 }));
    expect(snap.value).toBe("rekeying");
    expect(snap.context).toMatchObject({ saId: "sa-3", deadline: 1_030 });
    expect(out).toEqual([]);
  });

  it("waits through connecting and failed probes", () => {
    expect(step(rekeying(), status("connecting"))[0].value).toBe("rekeying");
    expect(step(rekeying(), probe(false))[0].value).toBe("rekeying");
  });

  it("goes down on STATUS down or at the deadline", () => {
    expect(step(rekeying(), status("down", { error: "rekey rejected" }))[0].context).toMatchObject({
      failures: 1,
      lastError: "rekey rejected",
    });
    expect(step(rekeying(), tick(1_029))[0].value).toBe("rekeying");
    const [snap] = step(rekeying(), tick(1_030));
    expect(snap.value).toBe("down");
    expect(snap.context).toMatchObject({ failures: 1, retryAt: 1_130, lastError: "rekey timed out after 1000 ms" });
  });
});

describe("L3TunnelActor: degraded", () => {
  it("is up again on a good probe, with the error cleared", () => {
    const [snap, out] = step(degraded(), probe(true, { rttMs: 30, now: 45 }));
    expect(snap.value).toBe("up");
    expect(snap.context).toMatchObject({ probeFails: 0, latencyMs: 30, lastError: null, since: 45 });
    expect(out).toEqual([
      { type: "tunnelState", state: "up", peer: "edge-b", peerNode: "b-gw1", peerTerm: 1, error: null },
    ]);
  });

  it("keeps counting failed probes", () => {
    expect(step(degraded(), probe(false))[0].context.probeFails).toBe(4);
  });

  it("goes down on STATUS down or connecting, and rekeys on a new association id", () => {
    expect(step(degraded(), status("down"))[0].value).toBe("down");
    expect(step(degraded(), status("connecting"))[0].value).toBe("down");
    expect(step(degraded(), status("up", { saId: "sa-2" }))[0].value).toBe("rekeying");
    expect(step(degraded(), status("up"))[0].value).toBe("degraded");
  });
});

describe("L3TunnelActor: down", () => {
  it("counts the failure and sets the retry deadline on the way in", () => {
    expect(down().context).toMatchObject({ failures: 1, retryAt: 150, lastError: "peer deleted the SA", since: 50 });
  });

  it("comes up when the driver reports up again", () => {
    const [snap] = step(down(), status("up", { saId: "sa-5", now: 60 }));
    expect(snap.value).toBe("up");
    expect(snap.context).toMatchObject({ saId: "sa-5", failures: 0, lastError: null });
  });

  it("renegotiates when the retry is due, and a further failure backs off longer", () => {
    expect(step(down(), tick(149))[0].value).toBe("down");
    const [snap, out] = step(down(), tick(150));
    expect(snap.value).toBe("negotiating");
    expect(out).toContainEqual({
      type: "negotiate",
      peer: "edge-b",
      peerNode: "b-gw1",
      peerAddr: "10.2.0.1",
      peerTerm: 1,
    });
    const [again] = step(snap, status("down", { now: 200 }));
    expect(again.context).toMatchObject({ failures: 2, retryAt: 400 });
  });
});

describe("L3TunnelActor: CLOSE", () => {
  it.each(ALL)("closes from %s, for good", (_name, make) => {
    const before = make();
    const [snap, out] = step(before, close);
    expect(snap.value).toBe("closed");
    expect(snap.status).toBe("done");
    expect(snap.context.since).toBe(before.context.since); // CLOSE carries no time
    expect(out).toEqual([
      {
        type: "tunnelState",
        state: "closed",
        peer: "edge-b",
        peerNode: before.context.peerNode,
        peerTerm: before.context.peerTerm,
        error: before.context.lastError,
      },
    ]);
    for (const e of [peer(9, 1), status("up"), probe(true), tick(1e9), close]) {
      const [after, none] = step(snap, e);
      expect(after.value).toBe("closed");
      expect(none).toEqual([]);
    }
  });
});

describe("l3TunnelView and isTunnelUsable", () => {
  it("reports what the service publishes", () => {
    const [snap] = step(up(), probe(true, { rttMs: 4 }));
    expect(l3TunnelView(snap)).toEqual({
      peer: "edge-b",
      peerNode: "b-gw1",
      peerTerm: 1,
      state: "up",
      latencyMs: 4,
      bytesIn: 5,
      bytesOut: 10,
      lastError: null,
      since: 20,
    });
    expect(l3TunnelView(backoff())).toMatchObject({ state: "backoff", lastError: "NO_PROPOSAL_CHOSEN", since: 60 });
  });

  it("counts a tunnel usable while an association exists", () => {
    const states: L3TunnelState[] = ["idle", "negotiating", "up", "rekeying", "degraded", "down", "backoff", "closed"];
    expect(states.filter(isTunnelUsable)).toEqual(["up", "rekeying", "degraded"]);
  });
});

describe("L3TunnelActor: graph", () => {
  // Time stands still at 0 except for one late TICK, so every deadline and retry is either pending or due.
  const events: L3TunnelEvent[] = [
    peer(1),
    peer(2),
    peer(3, 0, "b-gw2"),
    status("up", { saId: "sa-1" }),
    status("up", { saId: "sa-2" }),
    status("connecting"),
    status("down", { error: "x" }),
    probe(true),
    probe(false),
    tick(0),
    tick(10_000),
    close,
  ];
  const paths = getShortestPaths(l3TunnelMachine, {
    input,
    events,
    serializeEvent,
    serializeState: (s) => {
      const c = s.context;
      const due = c.retryAt <= 10_000;
      return JSON.stringify({ v: s.value, term: c.peerTerm, sa: c.saId, probes: Math.min(c.probeFails, 3), due });
    },
  });

  it("reaches every declared state and takes every declared transition", () => {
    expect(declaredStates(l3TunnelMachine)).toEqual([
      "backoff",
      "closed",
      "degraded",
      "down",
      "idle",
      "negotiating",
      "rekeying",
      "up",
    ]);
    expect(reachedStates(paths)).toEqual(declaredStates(l3TunnelMachine));
    expect(takenEdges(l3TunnelMachine, paths, events)).toEqual(declaredEdges(l3TunnelMachine));
  });

  // One snapshot per distinct (serialized) reachable state.
  const reached = paths.map((p) => p.state as Snap);

  it("counts exactly one failure, and sets a future retry, on every way into down or backoff", () => {
    const ways = new Set<string>();
    for (const snap of reached) {
      for (const e of [...events, tick(100_000)]) {
        const [next] = step(snap, e);
        if ((next.value === "down" || next.value === "backoff") && next.value !== snap.value) {
          ways.add(`${String(snap.value)} --${e.type}--> ${String(next.value)}`);
          expect(next.context.failures).toBe(snap.context.failures + 1);
          expect(next.context.retryAt).toBeGreaterThan("now" in e ? e.now : 0);
        }
      }
    }
    expect([...ways].sort()).toEqual([
      "degraded --STATUS--> down",
      "negotiating --STATUS--> backoff",
      "negotiating --TICK--> backoff",
      "rekeying --STATUS--> down",
      "rekeying --TICK--> down",
      "up --STATUS--> down",
    ]);
  });

  it("in every reachable state, a STATUS or PROBE about another peer term changes nothing", () => {
    for (const snap of reached) {
      for (const term of [snap.context.peerTerm - 1, snap.context.peerTerm + 1]) {
        for (const e of [
          status("up", { term, saId: "sa-z" }),
          status("down", { term }),
          probe(true, { term }),
          probe(false, { term }),
        ]) {
          const [next, out] = step(snap, e);
          expect(next.value).toBe(snap.value);
          expect(next.context).toEqual(snap.context);
          expect(out).toEqual([]);
        }
      }
    }
  });
});
