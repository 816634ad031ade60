// RouteDriver against FakeNet (one namespace's links, neighbours, FDB and routes in memory, as the kernel keeps
// them): what it reads, what it changes and in which order — a failover is make-before-break — and that a
// resync of an unchanged state changes nothing.
import { describe, expect, it } from "vitest";
import { computeRoutes, RAVEN_ROUTE_PROTO, RouteDriver, type RouteDesired } from "../../../lib/vxlan";
import { FakeNet } from "../../../lib/kernel";

/** a-node-1 (192.168.0.3) of a domain whose active gateway is `gatewayIP`. */
function nodeRoutes(gatewayIP: string): RouteDesired {
  return computeRoutes({
    role: "node",
    localIP: "192.168.0.3",
    gatewayIP,
    localNodes: [
      { lanIP: "192.168.0.1", podCidrs: ["10.244.16.0/24"] },
      { lanIP: "192.168.0.2", podCidrs: ["10.244.17.0/24"] },
      { lanIP: "192.168.0.3", podCidrs: ["10.244.18.0/24"] },
    ],
    remotePodCidrs: ["10.244.32.0/24", "10.244.33.0/24", "10.244.34.0/24"],
    underlayMtu: 1500,
    vpnOverheadBytes: 100,
  });
}

const raven0 = (net: FakeNet) => [...net.linkTable.values()].find((l) => l.name === "raven0")!;

describe("RouteDriver", () => {
  it("builds the device, its gateway peer and the routes from nothing", async () => {
    const net = new FakeNet("n1");
    const drv = new RouteDriver({ net });
    const changes = await drv.apply(nodeRoutes("192.168.0.1"));
    expect(changes).toContain("fdb 0e:52:c0:a8:00:01 -> 192.168.0.1");
    const dev = raven0(net);
    expect(dev).toMatchObject({
      up: true,
      mtu: 1450,
      mac: "0e:52:c0:a8:00:03",
      kind: "vxlan",
      vxlan: { id: 200, port: 4472, local: "192.168.0.3", learning: false },
    });
    expect(net.addrList.filter((a) => a.index === dev.index).map((a) => `${a.address}/${a.prefixLen}`)).toEqual([
      "240.168.0.3/32",
    ]);
    expect(net.neighTable.get(`${dev.index} 240.168.0.1`)?.mac).toBe("0e:52:c0:a8:00:01");
    expect([...net.routeTable.keys()].sort()).toEqual(["10.244.32.0/24", "10.244.33.0/24", "10.244.34.0/24"]);
    expect(net.routeTable.get("10.244.32.0/24")).toMatchObject({
      oif: dev.index,
      gateway: "240.168.0.1",
      mtu: 1400,
      protocol: RAVEN_ROUTE_PROTO,
    });
    expect(drv.netns).toBe("n1");
  });

  it("applies the same state again reading only: no change", async () => {
    const net = new FakeNet();
    const drv = new RouteDriver({ net });
    await drv.apply(nodeRoutes("192.168.0.1"));
    const before = net.changes.length;
    expect(await drv.apply(nodeRoutes("192.168.0.1"))).toEqual([]);
    expect(net.changes.length).toBe(before);
    expect(net.reads).toBeGreaterThan(0);
  });

  it("repoints on failover make-before-break: new FDB entry and neighbour, routes replaced in place, then the old peer's entries", async () => {
    const net = new FakeNet();
    const drv = new RouteDriver({ net });
    await drv.apply(nodeRoutes("192.168.0.1"));
    net.changes.length = 0;
    await drv.apply(nodeRoutes("192.168.0.2"));
    expect(net.changes[0]).toBe("replace fdb 0e:52:c0:a8:00:02 dst 192.168.0.2");
    expect(net.changes[1]).toBe("replace neighbour 240.168.0.2 0e:52:c0:a8:00:02");
    expect(
      net.changes
        .slice(2, 5)
        .every((c) => /^replace route 10\.244\.3[234]\.0\/24 via 240\.168\.0\.2 mtu 1400$/.test(c)),
    ).toBe(true);
    expect(net.changes.slice(5)).toEqual([
      "delete neighbour 240.168.0.1",
      "delete fdb 0e:52:c0:a8:00:01 dst 192.168.0.1",
    ]);
    // No route was ever deleted: each was replaced while it pointed at the old gateway.
    expect(net.changes.some((c) => c.startsWith("delete route"))).toBe(false);
    const dev = raven0(net);
    expect([...net.fdbTable.values()].map((f) => `${f.mac} ${f.dst}`)).toEqual(["0e:52:c0:a8:00:02 192.168.0.2"]);
    expect([...net.neighTable.values()].filter((n) => n.index === dev.index).map((n) => n.dst)).toEqual([
      "240.168.0.2",
    ]);
  });

  it("puts the pinned neighbour back when the device's MAC had to change (the kernel flushed it)", async () => {
    const net = new FakeNet();
    const drv = new RouteDriver({ net });
    await drv.apply(nodeRoutes("192.168.0.1"));
    raven0(net).mac = "0e:00:00:00:00:99"; // drift: someone readdressed raven0
    const changes = await drv.apply(nodeRoutes("192.168.0.1"));
    expect(changes).toEqual(["link raven0 address 0e:52:c0:a8:00:03", "neigh 240.168.0.1 0e:52:c0:a8:00:01"]);
    expect(net.neighTable.get(`${raven0(net).index} 240.168.0.1`)?.mac).toBe("0e:52:c0:a8:00:01");
  });

  it("recreates a device whose VNI the kernel cannot change, and removes routes it no longer wants", async () => {
    const net = new FakeNet();
    const drv = new RouteDriver({ net });
    await drv.apply(nodeRoutes("192.168.0.1"));
    raven0(net).vxlan = { id: 999, local: "192.168.0.3", port: 4472, learning: false };
    const fewer = { ...nodeRoutes("192.168.0.1"), routes: nodeRoutes("192.168.0.1").routes.slice(0, 1) };
    const changes = await drv.apply(fewer);
    expect(changes[0]).toBe("link raven0 removed (kind/vni/port/local changed)");
    expect(raven0(net).vxlan?.id).toBe(200);
    expect([...net.routeTable.keys()]).toEqual([fewer.routes[0]!.dst]);
  });

  it("fails the apply at the first refused change, naming it, and the next apply finishes the job", async () => {
    const net = new FakeNet();
    const drv = new RouteDriver({ net });
    await drv.apply(nodeRoutes("192.168.0.1"));
    net.failOn = { match: /^delete neighbour 240\.168\.0\.1$/, errno: "ENOENT" };
    await expect(drv.apply(nodeRoutes("192.168.0.2"))).rejects.toThrow(/^delete neighbour 240\.168\.0\.1: ENOENT/);
    net.failOn = null;
    expect(await drv.apply(nodeRoutes("192.168.0.2"))).toEqual([
      "neigh 240.168.0.1 removed",
      "fdb 0e:52:c0:a8:00:01 -> 192.168.0.1 removed",
    ]);
    expect([...net.fdbTable.values()].map((f) => f.mac)).toEqual(["0e:52:c0:a8:00:02"]);
  });

  it("switches forwarding on for a gateway and restores the value it found on cleanup, removing what it owns", async () => {
    const net = new FakeNet();
    const drv = new RouteDriver({ net });
    const gw = { ...nodeRoutes("192.168.0.1"), forwarding: true };
    expect(await drv.apply(gw)).toContain("net.ipv4.ip_forward=1");
    expect(net.ipForward).toBe(true);
    await drv.cleanup();
    expect(net.ipForward).toBe(false);
    expect([...net.linkTable.values()].map((l) => l.name)).toEqual(["lo"]);
    expect(net.routeTable.size).toBe(0);
    await drv.cleanup(); // idempotent
  });

  it("reports changes in the namespace to a watcher until it stops watching", async () => {
    const net = new FakeNet();
    const drv = new RouteDriver({ net });
    let seen = 0;
    const stop = drv.watch(() => seen++);
    await drv.apply(nodeRoutes("192.168.0.1"));
    expect(seen).toBeGreaterThan(0);
    stop();
    const before = seen;
    net.addDevice("ipsec0");
    expect(seen).toBe(before);
  });
});
