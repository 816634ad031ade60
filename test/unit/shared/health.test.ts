import { describe, expect, it } from "vitest";
import type { GatewayHeartbeat, NodeHeartbeat } from "../../../shared/protocol";
import { HealthTracker, type HealthSettings } from "../../../services/coordinator/health";
import { MAX_HEARTBEAT_STRETCH } from "../../../shared/config";

const settings: HealthSettings = { deadAfterMs: 300, heartbeatMs: 100, riseCount: 2, nodeDeadAfterMs: 3500 };
const DEAD = settings.deadAfterMs;

const gwHb = (seq: number, patch: Partial<GatewayHeartbeat> = {}): GatewayHeartbeat => ({
  node: "gw-1",
  domain: "factory-a",
  gateway: "gw-factory-a",
  seq,
  sentAt: 1_000 + seq,
  term: 2,
  active: [],
  leaseLeftMs: 0,
  draining: false,
  datapathOk: true,
  ...patch,
});
const nodeHb = (seq: number, ready = true, node = "n-1"): NodeHeartbeat => ({
  node,
  domain: "factory-a",
  seq,
  ready,
  sentAt: seq,
});

/** A sweep after a detector that declares every candidate silent for deadAfterMs (detector.ts decides when). */
const sweepAll = (h: HealthTracker, now: number) =>
  h.sweep(
    now,
    h.silences(now).map((s) => s.node),
  );

/** A tracker with `gw-1` healthy after `riseCount` heartbeats at 0, 100, ...; returns the time of the last. */
function healthyTracker(s: HealthSettings = settings): { h: HealthTracker; last: number } {
  const h = new HealthTracker(s, 0);
  let t = 0;
  for (let seq = 1; seq <= s.riseCount; seq++, t += 100) h.gateway(gwHb(seq), t);
  expect(h.isHealthy("gw-1")).toBe(true);
  h.sweep(t - 100);
  return { h, last: t - 100 };
}

describe("HealthTracker: rising", () => {
  it("calls a candidate rising only from a declared death until it is healthy again, and not while draining", () => {
    const { h, last } = healthyTracker();
    const c = h.candidates.get("gw-1")!;
    expect(c.rising).toBe(false); // healthy
    h.gateway(gwHb(3, { datapathOk: false }), last + 100);
    h.gateway(gwHb(4), last + 200);
    expect(c.rising).toBe(false); // short of the rise count after a data-path failure, but never silent: it may hold a lease
    sweepAll(h, last + 200 + DEAD);
    expect(c.rising).toBe(false); // declared dead: silent, not rising
    h.gateway(gwHb(10), last + 200 + DEAD + 50);
    expect(c.rising).toBe(true); // heard again, one heartbeat of two
    h.gateway(gwHb(11, { draining: true }), last + 200 + DEAD + 150);
    expect(c.rising).toBe(false); // draining: handed over, not kept
    h.gateway(gwHb(12), last + 200 + DEAD + 250);
    expect(h.isHealthy("gw-1")).toBe(true);
    expect(c.rising).toBe(false); // risen: healthy
    h.gateway(gwHb(13, { datapathOk: false }), last + 200 + DEAD + 350);
    expect(c.rising).toBe(false); // unhealthy, but acknowledged since its silence
    h.gateway(gwHb(1), last + 200 + DEAD + 400);
    expect(c.rising).toBe(false); // a low seq alone (a restart, or a spoof) proves no lease ran out
    // Revived with its data path failing: not on its way back, so not rising; its recovery is a flip.
    sweepAll(h, last + 1400);
    h.gateway(gwHb(20, { datapathOk: false }), last + 1500);
    expect(c.rising).toBe(false);
    h.sweep(last + 1500);
    h.gateway(gwHb(21), last + 1600);
    expect(c.rising).toBe(true);
    expect(h.sweep(last + 1600)).toEqual(new Set(["gw-1"]));
  });

  it("needs riseCount consecutive heartbeats to become healthy", () => {
    for (const riseCount of [1, 2, 3, 5]) {
      const h = new HealthTracker({ ...settings, riseCount }, 0);
      for (let seq = 1; seq <= riseCount; seq++) {
        const c = h.gateway(gwHb(seq), seq * 100);
        expect(c.streak).toBe(seq);
        expect(c.alive).toBe(true);
        expect(c.healthy, `riseCount ${riseCount}, heartbeat ${seq}`).toBe(seq === riseCount);
        expect(h.isHealthy("gw-1")).toBe(seq === riseCount);
      }
    }
  });

  it("reports the first heartbeat (now alive) and the rise (now healthy) as flips, each once", () => {
    const h = new HealthTracker(settings, 0);
    h.gateway(gwHb(1), 0);
    expect(h.sweep(0)).toEqual(new Set(["gw-1"]));
    expect(h.sweep(10)).toEqual(new Set());
    h.gateway(gwHb(2), 100);
    expect(h.sweep(100)).toEqual(new Set(["gw-1"]));
    h.gateway(gwHb(3), 200);
    expect(h.sweep(200)).toEqual(new Set());
  });

  it("records the heartbeat's facts", () => {
    const h = new HealthTracker(settings, 0);
    const c = h.gateway(gwHb(9, { term: 5, active: ["proxy"], domain: "shop-b" }), 50);
    expect(c).toMatchObject({
      node: "gw-1",
      domain: "shop-b",
      seq: 9,
      sentAt: 1_009,
      term: 5,
      acting: ["proxy"],
      lastSeenAt: 50,
    });
    expect(h.candidates.get("gw-1")).toBe(c);
    expect(h.isHealthy("nobody")).toBe(false);
  });
});

describe("HealthTracker: silence", () => {
  it("silence of deadAfterMs makes a candidate unhealthy and not alive, reported once", () => {
    const { h, last } = healthyTracker();
    expect(sweepAll(h, last + DEAD - 1)).toEqual(new Set());
    expect(h.isHealthy("gw-1")).toBe(true);
    expect(sweepAll(h, last + DEAD)).toEqual(new Set(["gw-1"]));
    const c = h.candidates.get("gw-1")!;
    expect(c.alive).toBe(false);
    expect(c.healthy).toBe(false);
    expect(sweepAll(h, last + DEAD + 1)).toEqual(new Set());
    expect(sweepAll(h, last + 10 * DEAD)).toEqual(new Set());
  });

  it("after a long gap the streak starts over", () => {
    const { h, last } = healthyTracker();
    sweepAll(h, last + DEAD + 50);
    const c = h.gateway(gwHb(3), last + DEAD + 100);
    expect(c.streak).toBe(1);
    expect(c.alive).toBe(true);
    expect(c.healthy).toBe(false);
    expect(h.sweep(last + DEAD + 100)).toEqual(new Set(["gw-1"]));
    expect(h.gateway(gwHb(4), last + DEAD + 200).healthy).toBe(true);
  });

  it("a late heartbeat (silent past deadAfterMs, not declared dead) keeps the streak: lateness is not a recovery", () => {
    const { h, last } = healthyTracker();
    expect(h.sweep(last + DEAD + 50)).toEqual(new Set()); // the detector declared nobody (it waited)
    const c = h.gateway(gwHb(3), last + DEAD + 60);
    expect(c).toMatchObject({ streak: 3, alive: true, healthy: true });
    expect(h.sweep(last + DEAD + 60)).toEqual(new Set());
  });

  it("expires only what the detector names, and never before deadAfterMs of silence", () => {
    const { h, last } = healthyTracker();
    expect(h.silences(last + DEAD - 1)).toEqual([
      { node: "gw-1", domain: "factory-a", silentMs: DEAD - 1, deadAfterMs: DEAD },
    ]);
    expect(h.sweep(last + DEAD - 1, ["gw-1"])).toEqual(new Set());
    expect(h.isHealthy("gw-1")).toBe(true);
    expect(h.sweep(last + DEAD, ["nobody"])).toEqual(new Set());
    expect(h.sweep(last + DEAD, ["gw-1"])).toEqual(new Set(["gw-1"]));
    expect(h.silences(last + DEAD)).toEqual([]); // declared dead: no longer the detector's business
  });

  it("a heartbeat exactly deadAfterMs after the last one, after being swept dead, needs a new streak", () => {
    const { h, last } = healthyTracker();
    expect(sweepAll(h, last + DEAD)).toEqual(new Set(["gw-1"]));
    const c = h.gateway(gwHb(3), last + DEAD);
    expect(c.streak).toBe(1);
    expect(c.healthy).toBe(false);
  });
});

describe("HealthTracker: a standby's longer period", () => {
  it("stretches a candidate's window by the period its last heartbeat announced, and no further than MAX_HEARTBEAT_STRETCH", () => {
    const { h, last } = healthyTracker();
    expect(h.candidates.get("gw-1")!.deadAfterMs).toBe(DEAD); // no everyMs: the usual period
    h.gateway(gwHb(3, { everyMs: 300 }), last + 100);
    expect(h.silences(last + 100 + DEAD)).toEqual([
      { node: "gw-1", domain: "factory-a", silentMs: DEAD, deadAfterMs: 3 * DEAD },
    ]);
    expect(h.sweep(last + 100 + DEAD, ["gw-1"])).toEqual(new Set()); // named too early: not expired
    expect(h.sweep(last + 100 + 3 * DEAD, ["gw-1"])).toEqual(new Set(["gw-1"]));
    h.gateway(gwHb(4, { everyMs: 600_000 }), last + 5_000);
    expect(h.candidates.get("gw-1")!.deadAfterMs).toBe(MAX_HEARTBEAT_STRETCH * DEAD);
    h.gateway(gwHb(5, { everyMs: 50 }), last + 5_100);
    expect(h.candidates.get("gw-1")!.deadAfterMs).toBe(DEAD); // never shorter than deadAfterMs
  });

  it("a heartbeat announcing the fast period again shrinks the window at once (a standby named active)", () => {
    const { h, last } = healthyTracker();
    h.gateway(gwHb(3, { everyMs: 300 }), last + 100);
    h.gateway(gwHb(4, { everyMs: 100 }), last + 150);
    expect(h.sweep(last + 150 + DEAD, ["gw-1"])).toEqual(new Set(["gw-1"]));
  });
});

describe("HealthTracker: flipsPending", () => {
  it("is set by a heartbeat that changes a candidate's health and cleared by the sweep that reports it", () => {
    const h = new HealthTracker(settings, 0);
    h.gateway(gwHb(1), 0); // new and alive: a flip
    expect(h.flipsPending).toBe(true);
    h.sweep(10);
    expect(h.flipsPending).toBe(false);
    h.gateway(gwHb(2), 100); // risen to healthy: a flip
    expect(h.flipsPending).toBe(true);
    h.sweep(110);
    h.gateway(gwHb(3), 200); // still healthy: nothing to tell
    expect(h.flipsPending).toBe(false);
    h.gateway(gwHb(4, { draining: true }), 300);
    expect(h.flipsPending).toBe(true);
  });
});

describe("HealthTracker: restart (a standby coordinator waking)", () => {
  it("forgets every candidate and is cold again for a whole dead-after window; nodes are kept", () => {
    const { h, last } = healthyTracker();
    h.node(nodeHb(1), last);
    h.restart(10_000);
    expect(h.candidates.size).toBe(0);
    expect(h.sweep(10_000)).toEqual(new Set());
    expect(h.warm(10_000 + DEAD - 1)).toBe(false);
    expect(h.warm(10_000 + DEAD)).toBe(true);
    expect(h.nodes.has("n-1")).toBe(true);
    h.gateway(gwHb(3), 10_000);
    h.gateway(gwHb(4), 10_100);
    expect(h.isHealthy("gw-1")).toBe(true); // rises as in a new tracker
  });
});

describe("HealthTracker: restarts, draining, data path", () => {
  it("a seq going backwards (a restart) resets the streak", () => {
    const { h, last } = healthyTracker({ ...settings, riseCount: 3 });
    const c = h.gateway(gwHb(1), last + 100);
    expect(c.streak).toBe(1);
    expect(c.healthy).toBe(false);
    expect(c.alive).toBe(true);
    expect(h.sweep(last + 100)).toEqual(new Set(["gw-1"]));
    h.gateway(gwHb(2), last + 200);
    expect(h.isHealthy("gw-1")).toBe(false);
    h.gateway(gwHb(3), last + 300);
    expect(h.isHealthy("gw-1")).toBe(true);
  });

  it("a repeated seq is not a restart", () => {
    const { h, last } = healthyTracker();
    expect(h.gateway(gwHb(2), last + 100).healthy).toBe(true);
  });

  it("draining makes a candidate unhealthy but alive; undraining restores it within riseCount heartbeats", () => {
    const { h, last } = healthyTracker();
    const c = h.gateway(gwHb(3, { draining: true }), last + 100);
    expect(c.healthy).toBe(false);
    expect(c.alive).toBe(true);
    expect(c.draining).toBe(true);
    expect(h.sweep(last + 100)).toEqual(new Set(["gw-1"]));
    // still alive: the sweep must not report it again while it keeps heartbeating
    h.gateway(gwHb(4, { draining: true }), last + 200);
    expect(h.sweep(last + 200)).toEqual(new Set());
    h.gateway(gwHb(5), last + 300);
    expect(h.gateway(gwHb(6), last + 400).healthy).toBe(true);
  });

  it("datapathOk=false makes a candidate unhealthy but alive", () => {
    const { h, last } = healthyTracker();
    const c = h.gateway(gwHb(3, { datapathOk: false }), last + 100);
    expect(c).toMatchObject({ healthy: false, alive: true, datapathOk: false });
    expect(h.sweep(last + 100)).toEqual(new Set(["gw-1"]));
  });

  // The module comment defines health as "at least riseCount consecutive heartbeats since it was last
  // unhealthy (hysteresis against flapping)". Only a gap or a restart resets the streak, so a data path
  // that flaps every heartbeat flips health every heartbeat. Fix: reset the streak while datapathOk is false.
  it("after the data path recovers, riseCount good heartbeats are needed again", () => {
    const { h, last } = healthyTracker();
    h.gateway(gwHb(3, { datapathOk: false }), last + 100);
    expect(h.gateway(gwHb(4), last + 200).healthy).toBe(false);
    h.gateway(gwHb(5), last + 300);
    expect(h.gateway(gwHb(6), last + 400).healthy).toBe(true);
  });

  it("a draining candidate that goes silent is reported once more, as not alive", () => {
    const { h, last } = healthyTracker();
    h.gateway(gwHb(3, { draining: true }), last + 100);
    h.sweep(last + 100);
    expect(sweepAll(h, last + 100 + DEAD)).toEqual(new Set(["gw-1"]));
    expect(h.candidates.get("gw-1")!.alive).toBe(false);
  });

  it("tracks candidates independently", () => {
    const h = new HealthTracker(settings, 0);
    for (const [t, seq] of [
      [0, 1],
      [100, 2],
    ] as const) {
      h.gateway(gwHb(seq), t);
      h.gateway(gwHb(seq, { node: "gw-2" }), t);
    }
    h.sweep(100);
    h.gateway(gwHb(3), 200);
    expect(sweepAll(h, 100 + DEAD)).toEqual(new Set(["gw-2"]));
    expect(h.isHealthy("gw-1")).toBe(true);
    expect(h.isHealthy("gw-2")).toBe(false);
  });
});

describe("HealthTracker: warm and nodes", () => {
  it("is warm only once deadAfterMs has passed since it started", () => {
    const h = new HealthTracker(settings, 5_000);
    expect(h.warm(5_000)).toBe(false);
    expect(h.warm(5_000 + DEAD - 1)).toBe(false);
    expect(h.warm(5_000 + DEAD)).toBe(true);
    expect(h.warm(50_000)).toBe(true);
  });

  it("nodeReady honours ready and nodeDeadAfterMs", () => {
    const h = new HealthTracker(settings, 0);
    expect(h.nodeReady("n-1", 0)).toBe(false);
    h.node(nodeHb(1), 1_000);
    expect(h.nodeReady("n-1", 1_000)).toBe(true);
    expect(h.nodeReady("n-1", 1_000 + settings.nodeDeadAfterMs - 1)).toBe(true);
    expect(h.nodeReady("n-1", 1_000 + settings.nodeDeadAfterMs)).toBe(false);
    h.node(nodeHb(2, false), 2_000);
    expect(h.nodeReady("n-1", 2_000)).toBe(false);
    h.node(nodeHb(3, true), 3_000);
    expect(h.nodeReady("n-1", 3_000 + settings.nodeDeadAfterMs - 1)).toBe(true);
    expect(h.nodes.get("n-1")).toEqual({ node: "n-1", domain: "factory-a", lastSeenAt: 3_000, ready: true, seq: 3 });
    expect(h.nodeReady("n-2", 3_000)).toBe(false);
  });

  it("node heartbeats do not make a gateway candidate", () => {
    const h = new HealthTracker(settings, 0);
    h.node(nodeHb(1, true, "gw-1"), 0);
    expect(h.candidates.size).toBe(0);
    expect(h.sweep(0)).toEqual(new Set());
  });
});

describe("HealthTracker: pruning", () => {
  it("forgets unknown names silent for longer than the window, keeps known and recent ones", () => {
    const h = new HealthTracker(settings, 0);
    h.gateway(gwHb(1, { node: "spoofed" }), 0);
    h.gateway(gwHb(1, { node: "known" }), 0);
    h.gateway(gwHb(1, { node: "recent" }), 50_000);
    h.node(nodeHb(1, true, "ghost"), 0);
    h.prune(61_000, (n) => n === "known", 60_000);
    expect([...h.candidates.keys()].sort()).toEqual(["known", "recent"]);
    expect(h.nodes.has("ghost")).toBe(false);
  });
});
