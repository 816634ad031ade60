// The gateway's tunnel mode (TunnelManager) and the node's routes (RouteAgent) against fake drivers, a fake
// directory and a ManualClock: what a standby preloads, taking over, following a peer gateway that moves,
// losing the role, a failing driver; and a node repointing on failover.
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../../shared/clock";
import { soloGateway, type Gateway } from "../../../shared/gateway";
import { silentLogger } from "../../../shared/log";
import type { NodeRecord } from "../../../shared/node-record";
import { decode, type GatewayTunnel } from "../../../shared/protocol";
import type { NatsConnection } from "../../../shared/nats";
import { FakeVpnDriver } from "../../../lib/vpn";
import { type RouteDesired } from "../../../lib/vxlan";
import { TunnelManager } from "../../../services/gateway-actor/tunnel/manager";
import { RouteAgent } from "../../../services/node-actor/route-agent";

const rec = (name: string, domain: string, internalIP: string, podCIDR: string): NodeRecord => ({
  name,
  labels: {},
  internalIP,
  domain,
  registeredAt: 0,
  podCIDR,
});
const NODES = new Map(
  [
    rec("c-gw", "cloud", "10.0.0.1", "10.244.0.0/24"),
    rec("a-gw-1", "edge-a", "192.168.0.1", "10.244.16.0/24"),
    rec("a-gw-2", "edge-a", "192.168.0.2", "10.244.17.0/24"),
    rec("a-node", "edge-a", "192.168.0.3", "10.244.18.0/24"),
    rec("b-gw-1", "edge-b", "192.168.0.1", "10.244.32.0/24"),
    rec("b-gw-2", "edge-b", "192.168.0.2", "10.244.33.0/24"),
  ].map((n) => [n.name, n]),
);
const ADDR: Record<string, string> = {
  "c-gw": "198.18.0.10",
  "a-gw-1": "198.18.0.11",
  "a-gw-2": "198.18.0.12",
  "b-gw-1": "198.18.0.13",
  "b-gw-2": "198.18.0.14",
};

function record(name: string, candidates: string[], members: string[], active: string | null, term: number): Gateway {
  const gw = soloGateway(name);
  gw.metadata = { name };
  const ep = (n: string) => ({ nodeName: n, type: "tunnel" as const, port: 4500, underNAT: false, publicIP: ADDR[n]! });
  gw.spec = { ...gw.spec, endpoints: candidates.map(ep) };
  gw.status = {
    nodes: members.map((n) => ({ nodeName: n, privateIP: "", subnets: [] })),
    activeEndpoints: active ? [ep(active)] : [],
    term,
  };
  return gw;
}

class FakeDirectory {
  records = new Map<string, Gateway>();
  private listeners = new Set<() => void>();
  set(gw: Gateway): void {
    this.records.set(gw.metadata.name, gw);
    for (const fn of this.listeners) fn();
  }
  gateways = () => [...this.records.values()];
  nodeRecords = () => NODES;
  onChange = (fn: () => void) => {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  };
}

function fleet(): FakeDirectory {
  const dir = new FakeDirectory();
  dir.set(record("gw-c", ["c-gw"], ["c-gw"], "c-gw", 1));
  dir.set(record("gw-a", ["a-gw-1", "a-gw-2"], ["a-gw-1", "a-gw-2", "a-node"], "a-gw-1", 1));
  dir.set(record("gw-b", ["b-gw-1", "b-gw-2"], ["b-gw-1", "b-gw-2"], "b-gw-1", 1));
  return dir;
}

const settle = async () => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

function setup(node: string) {
  const clock = new ManualClock();
  // Timer callbacks run: the wake-ups an idle gateway pays for.
  const wakeups = { count: 0 };
  const setTimeout = clock.setTimeout.bind(clock);
  const setInterval = clock.setInterval.bind(clock);
  clock.setTimeout = (fn, ms) => setTimeout(() => (wakeups.count++, fn()), ms);
  clock.setInterval = (fn, ms) => setInterval(() => (wakeups.count++, fn()), ms);
  const dir = fleet();
  const driver = new FakeVpnDriver();
  const published: GatewayTunnel[] = [];
  const nc = {
    publish: (_s: string, data: Uint8Array) => void published.push((decode(data) as { body: GatewayTunnel }).body),
  } as unknown as NatsConnection;
  const manager = new TunnelManager({
    nc,
    node,
    domain: "edge-a",
    directory: dir,
    driver,
    clock,
    log: silentLogger(),
    probe: async () => 0.5,
  });
  manager.start();
  const step = async (ms = 0) => {
    clock.advance(ms);
    await settle();
  };
  return { clock, dir, driver, manager, published, step, wakeups };
}

describe("TunnelManager", () => {
  it("as a standby, preloads the peers it would have as the active, none to initiate, and spawns no TunnelActors", async () => {
    const { driver, manager, published, step } = setup("a-gw-2");
    manager.role(false, 1);
    await step(1_000);
    const last = driver.applied.at(-1)!;
    expect(last.peers.map((p) => [p.name, p.localAddr, p.remoteAddr, p.initiate])).toEqual([
      ["cloud", "198.18.0.12", "198.18.0.10", false],
      ["edge-b", "198.18.0.12", "198.18.0.13", false],
    ]);
    expect(manager.tunnels()).toEqual([]);
    expect(published.at(-1)).toMatchObject({ node: "a-gw-2", active: false, tunnels: [], error: null });
  });

  it("taking over, one TunnelActor per peer domain comes up, fenced to the peer's gateway and term, with latency", async () => {
    const { dir, manager, published, step } = setup("a-gw-2");
    manager.role(false, 1);
    await step(100);
    dir.set(record("gw-a", ["a-gw-1", "a-gw-2"], ["a-gw-1", "a-gw-2", "a-node"], "a-gw-2", 2));
    manager.role(true, 2);
    await step(0); // ManualClock runs due timers before any promise settles: let the takeover apply first
    await step(2_500); // a probe every 2 s
    expect(manager.tunnels().map((t) => [t.peer, t.state, t.peerNode, t.peerTerm])).toEqual([
      ["cloud", "up", "c-gw", 1],
      ["edge-b", "up", "b-gw-1", 1],
    ]);
    expect(manager.tunnels()[0]!.latencyUs).toBe(500);
    expect(published.at(-1)).toMatchObject({ active: true, term: 2, driver: "fake" });
  });

  it("follows a peer domain's new gateway at once: renegotiates to the new address under the new term", async () => {
    const { dir, driver, manager, step } = setup("a-gw-1");
    manager.role(true, 1);
    await step(500);
    expect(driver.established).toEqual(["cloud", "edge-b"]);
    dir.set(record("gw-b", ["b-gw-1", "b-gw-2"], ["b-gw-1", "b-gw-2"], "b-gw-2", 2));
    await step(300);
    expect(driver.applied.at(-1)!.peers.find((p) => p.name === "edge-b")!.remoteAddr).toBe("198.18.0.14");
    expect(driver.established).toEqual(["cloud", "edge-b", "edge-b"]);
    expect(manager.tunnels().find((t) => t.peer === "edge-b")).toMatchObject({
      state: "up",
      peerNode: "b-gw-2",
      peerTerm: 2,
    });
  });

  it("losing the role closes every TunnelActor and falls back to the preloaded, uninitiated peers", async () => {
    const { dir, driver, manager, step } = setup("a-gw-1");
    manager.role(true, 1);
    await step(500);
    dir.set(record("gw-a", ["a-gw-1", "a-gw-2"], ["a-gw-1", "a-gw-2", "a-node"], "a-gw-2", 2));
    manager.role(false, 2);
    await step(500);
    expect(manager.tunnels()).toEqual([]);
    expect(driver.applied.at(-1)!.peers.every((p) => p.initiate === false)).toBe(true);
  });

  it("reports a failing driver as the gateway's tunnel error and retries until it applies", async () => {
    const { driver, manager, published, step } = setup("a-gw-1");
    const apply = driver.apply.bind(driver);
    let broken = true;
    driver.apply = async (d) => {
      if (broken) throw new Error("charon did not start");
      return apply(d);
    };
    manager.role(true, 1);
    await step(0);
    await step(1_000);
    expect(published.at(-1)!.error).toBe("charon did not start");
    broken = false;
    await step(0);
    await step(1_000);
    await step(0);
    await step(1_000);
    expect(manager.tunnels().map((t) => t.state)).toEqual(["up", "up"]);
    expect(published.at(-1)!.error).toBeNull();
  });

  it("a peer that will not come up backs off and is retried; it comes up once healed", async () => {
    const { driver, manager, step } = setup("a-gw-1");
    driver.failPeer("edge-b", "NO_PROPOSAL_CHOSEN");
    manager.role(true, 1);
    await step(300);
    expect(manager.tunnels().find((t) => t.peer === "edge-b")).toMatchObject({
      state: "backoff",
      error: "NO_PROPOSAL_CHOSEN",
    });
    const applies = driver.applied.length;
    await step(2_000);
    expect(driver.applied.length).toBeGreaterThan(applies); // renegotiated (re-applied) after the backoff
    driver.healPeer("edge-b");
    await step(3_000);
    expect(manager.tunnels().find((t) => t.peer === "edge-b")!.state).toBe("up");
  });
});

describe("TunnelManager: status reads", () => {
  it("reads the driver's status every stableStatusMs while every tunnel is up (or none is wanted), every statusMs while one is not", async () => {
    const { driver, manager, step, wakeups } = setup("a-gw-1");
    let reads = 0;
    const status = driver.status.bind(driver);
    driver.status = () => (reads++, status());
    const readsOver = async (ms: number) => {
      const before = reads;
      for (let t = 0; t < ms; t += 50) await step(50);
      return reads - before;
    };
    manager.role(true, 1);
    await step(0);
    await readsOver(1_000); // both tunnels come up
    expect(manager.tunnels().map((t) => t.state)).toEqual(["up", "up"]);
    const woken = wakeups.count;
    expect(await readsOver(6_000)).toBe(3); // every 2 s, not every 250 ms
    // ...and nothing else wakes it in between: 3 reads, 3 probes (2 s), 6 reports (1 s).
    expect(wakeups.count - woken).toBe(12);
    driver.failPeer("edge-b");
    await readsOver(2_000); // the next read finds it down
    expect(manager.tunnels().find((t) => t.peer === "edge-b")?.state).not.toBe("up");
    expect(await readsOver(1_000)).toBeGreaterThanOrEqual(3); // on its way back: every 250 ms
    driver.healPeer("edge-b");
    await readsOver(3_000);
    expect(manager.tunnels().map((t) => t.state)).toEqual(["up", "up"]);
    expect(await readsOver(4_000)).toBeLessThanOrEqual(2);
    manager.role(false, 2); // no tunnels wanted: no reads at all
    await readsOver(500);
    expect(await readsOver(4_000)).toBe(0);
  });
});

describe("RouteAgent", () => {
  it("points a node's routes at its domain's active gateway and repoints on failover, applying only changes", async () => {
    const clock = new ManualClock();
    const dir = fleet();
    const applied: RouteDesired[] = [];
    const driver = { apply: async (d: RouteDesired) => (applied.push(d), ["changed"]), cleanup: async () => undefined };
    const agent = new RouteAgent({
      directory: dir,
      node: "a-node",
      domain: "edge-a",
      driver,
      link: { underlayMtu: 1500, vpnOverheadBytes: 65 },
      clock,
      log: silentLogger(),
      retryMs: 200,
      resyncMs: 10_000,
    });
    agent.start();
    await settle();
    expect(applied).toHaveLength(1);
    expect(applied[0]!.routes.map((r) => `${r.dst} via ${r.via}`)).toEqual([
      "10.244.0.0/24 via 240.168.0.1",
      "10.244.32.0/24 via 240.168.0.1",
      "10.244.33.0/24 via 240.168.0.1",
    ]);
    dir.set(record("gw-c", ["c-gw"], ["c-gw"], "c-gw", 1)); // same content: nothing to apply
    await settle();
    expect(applied).toHaveLength(1);
    dir.set(record("gw-a", ["a-gw-1", "a-gw-2"], ["a-gw-1", "a-gw-2", "a-node"], "a-gw-2", 2));
    await settle();
    expect(applied).toHaveLength(2);
    expect(applied[1]!.vxlan.peers.map((p) => p.lanIP)).toEqual(["192.168.0.2"]);
    expect(agent.status()).toMatchObject({ role: "node", gatewayIP: "192.168.0.2", lastError: null });
    await agent.stop();
  });

  it("applies again after changes its driver sees in the namespace (one resync per burst, 1 s later), and stops watching when stopped", async () => {
    const clock = new ManualClock();
    const dir = fleet();
    let applies = 0;
    let onChange: (() => void) | null = null;
    let watching = false;
    const driver = {
      apply: async () => (applies++, []),
      cleanup: async () => undefined,
      watch: (cb: () => void) => ((onChange = cb), (watching = true), () => void (watching = false)),
    };
    const agent = new RouteAgent({
      directory: dir,
      node: "a-node",
      domain: "edge-a",
      driver,
      link: { underlayMtu: 1500, vpnOverheadBytes: 65 },
      clock,
      log: silentLogger(),
      retryMs: 200,
      resyncMs: 10_000,
    });
    agent.start();
    await settle();
    expect([applies, watching]).toEqual([1, true]);
    for (let i = 0; i < 3; i++) onChange!(); // e.g. wireguard-go restarted: its new device has none of the routes
    await settle();
    expect(applies).toBe(1);
    clock.advance(1_000);
    await settle();
    expect(applies).toBe(2); // once for the burst; the desired state did not change, the namespace did
    await agent.stop();
    expect(watching).toBe(false);
  });

  it("keeps the last routes while the domain has no active gateway, and retries a failed apply", async () => {
    const clock = new ManualClock();
    const dir = fleet();
    let fail = true;
    const applied: RouteDesired[] = [];
    const driver = {
      apply: async (d: RouteDesired) => {
        if (fail) throw new Error("RTNETLINK answers: File exists");
        applied.push(d);
        return [];
      },
      cleanup: async () => undefined,
    };
    const agent = new RouteAgent({
      directory: dir,
      node: "a-node",
      domain: "edge-a",
      driver,
      link: { underlayMtu: 1500, vpnOverheadBytes: 65 },
      clock,
      log: silentLogger(),
      retryMs: 200,
      resyncMs: 10_000,
    });
    agent.start();
    await settle();
    expect(agent.status().lastError).toMatch(/File exists/);
    fail = false;
    clock.advance(200);
    await settle();
    expect(applied).toHaveLength(1);
    dir.set(record("gw-a", ["a-gw-1", "a-gw-2"], ["a-gw-1", "a-gw-2", "a-node"], null, 2));
    await settle();
    expect(applied).toHaveLength(1);
    expect(agent.status().gatewayIP).toBe("192.168.0.1");
    await agent.stop();
  });
});
