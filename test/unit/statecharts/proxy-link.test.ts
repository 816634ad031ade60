// TunnelActor: when a proxy peer link dials, degrades, backs off and recovers, tested as pure transitions;
// plus a graph walk showing every declared state and transition is reachable.
import { describe, expect, it } from "vitest";
import { initialTransition, transition, type SnapshotFrom } from "xstate";
import { getShortestPaths } from "xstate/graph";
import {
  proxyLinkMachine,
  wantsDials,
  type ProxyLinkEmitted,
  type ProxyLinkEvent,
  type ProxyLinkState,
} from "../../../statecharts/proxy-link";
import { declaredEdges, declaredStates, emitted, reachedStates, serializeEvent, takenEdges } from "./fixtures";

type Snap = SnapshotFrom<typeof proxyLinkMachine>;
const input = { peer: "cloud-gw-1", retryMs: 100 };

function run(...events: ProxyLinkEvent[]): [Snap, ProxyLinkEmitted[]] {
  let [snap] = initialTransition(proxyLinkMachine, input);
  let out: ProxyLinkEmitted[] = [];
  for (const e of events) {
    const [next, actions] = transition(proxyLinkMachine, snap, e);
    snap = next;
    out = emitted<ProxyLinkEmitted>(actions);
  }
  return [snap, out];
}

const up: ProxyLinkEvent = { type: "SPARE_UP" };
const gone: ProxyLinkEvent = { type: "SPARE_GONE" };
const failed = (now: number): ProxyLinkEvent => ({ type: "DIAL_FAILED", error: "ECONNREFUSED", now });
const tick = (now: number): ProxyLinkEvent => ({ type: "TICK", now });

describe("TunnelActor", () => {
  it("starts connecting and wants dials; a welcomed spare makes it up", () => {
    const [start] = run();
    expect(start.value).toBe("connecting");
    expect(wantsDials(start.value as ProxyLinkState)).toBe(true);
    const [snap, out] = run(up);
    expect(snap.value).toBe("up");
    expect(snap.context.spares).toBe(1);
    expect(out).toEqual([{ type: "linkState", state: "up", peer: "cloud-gw-1", error: null }]);
  });

  it("a failed dial with no spare backs off with a growing delay, then dials again when due", () => {
    const [b1] = run(failed(1_000));
    expect(b1.value).toBe("backoff");
    expect(b1.context.retryAt).toBe(1_100);
    expect(wantsDials("backoff")).toBe(false);
    const [notYet] = run(failed(1_000), tick(1_099));
    expect(notYet.value).toBe("backoff");
    const [again, out] = run(failed(1_000), tick(1_100));
    expect(again.value).toBe("connecting");
    expect(out.map((e) => e.state)).toEqual(["connecting"]);
    const [b2] = run(failed(1_000), tick(1_100), failed(1_200));
    expect(b2.context.retryAt).toBe(1_400); // second failed round: 2 x retryMs
    // Four dials of one round failing together count as one failed round.
    const [round] = run(failed(1_000), failed(1_001), failed(1_002), failed(1_003));
    expect(round.context.failures).toBe(1);
    expect(round.context.retryAt).toBe(1_100);
  });

  it("a failed dial while spares remain degrades (no dialing) until the retry is due", () => {
    const [snap, out] = run(up, failed(500));
    expect(snap.value).toBe("degraded");
    expect(out[0]).toMatchObject({ state: "degraded", error: "ECONNREFUSED" });
    expect(wantsDials("degraded")).toBe(false);
    expect(run(up, failed(500), tick(600))[0].value).toBe("up");
  });

  it("using the last spare goes back to connecting; a welcomed spare resets the failure count", () => {
    expect(run(up, gone)[0].value).toBe("connecting");
    expect(run(up, up, gone)[0].value).toBe("up");
    const [snap] = run(failed(0), up);
    expect(snap.value).toBe("up");
    expect(snap.context.failures).toBe(0);
  });

  it("closes from any state, for good", () => {
    for (const prefix of [[], [up], [failed(0)], [up, failed(0)]] as ProxyLinkEvent[][]) {
      const [snap, out] = run(...prefix, { type: "CLOSE" });
      expect(snap.value).toBe("closed");
      expect(snap.status).toBe("done");
      expect(out.at(-1)).toMatchObject({ state: "closed" });
    }
  });

  it("reaches every declared state and takes every declared transition", () => {
    const events: ProxyLinkEvent[] = [up, gone, failed(0), tick(0), tick(10_000), { type: "CLOSE" }];
    const paths = getShortestPaths(proxyLinkMachine, {
      input,
      events,
      serializeEvent,
      serializeState: (s) =>
        JSON.stringify({ v: s.value, spares: Math.min(s.context.spares, 2), due: s.context.retryAt <= 10_000 }),
    });
    expect(declaredStates(proxyLinkMachine)).toEqual(["backoff", "closed", "connecting", "degraded", "up"]);
    expect(reachedStates(paths)).toEqual(declaredStates(proxyLinkMachine));
    expect(takenEdges(proxyLinkMachine, paths, events)).toEqual(declaredEdges(proxyLinkMachine));
  });
});
