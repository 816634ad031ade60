// computeRoutes (node and gateway, failover, MTU arithmetic, validation) and checkPodCidrOverlap.
import { describe, expect, it } from "vitest";
import { TunnelError } from "../../../shared/errors";
import {
  checkPodCidrOverlap,
  computeRoutes,
  VXLAN_OVERHEAD_BYTES,
  vxlanAddress,
  vxlanMac,
  type RouteInput,
} from "../../../lib/vxlan";
import { IPSEC_OVERHEAD_BYTES, WIREGUARD_OVERHEAD_BYTES } from "../../../lib/vpn";
import { parseCidr } from "../../../shared/cidr";

const nodes = [
  { lanIP: "192.168.1.1", podCidrs: ["10.244.0.0/24"] },
  { lanIP: "192.168.1.2", podCidrs: ["10.244.1.0/24"] },
  { lanIP: "192.168.1.3", podCidrs: ["10.244.3.0/24", "10.244.4.0/24"] },
];
const base: RouteInput = {
  role: "node",
  localIP: "192.168.1.2",
  gatewayIP: "192.168.1.1",
  localNodes: nodes,
  remotePodCidrs: ["10.245.0.0/16", "10.246.0.0/24"],
  underlayMtu: 1500,
  vpnOverheadBytes: IPSEC_OVERHEAD_BYTES,
};

describe("overheads", () => {
  it("are the documented sums", () => {
    expect(VXLAN_OVERHEAD_BYTES).toBe(20 + 8 + 8 + 14);
    expect(IPSEC_OVERHEAD_BYTES).toBe(65);
    expect(WIREGUARD_OVERHEAD_BYTES).toBe(80);
  });
});

describe("computeRoutes", () => {
  it("on a node: one VXLAN peer (the active gateway) and the remote CIDRs through it at the path MTU", () => {
    const d = computeRoutes(base);
    expect(d.vxlan).toEqual({
      name: "raven0",
      vni: 200,
      port: 4472,
      localIP: "192.168.1.2",
      mac: "0e:52:c0:a8:01:02",
      address: "240.168.1.2",
      mtu: 1450,
      peers: [{ lanIP: "192.168.1.1", mac: "0e:52:c0:a8:01:01", address: "240.168.1.1" }],
    });
    expect(d.pathMtu).toBe(1500 - 65);
    expect(d.routes).toEqual([
      { dst: "10.245.0.0/16", dev: "raven0", via: "240.168.1.1", mtu: 1435 },
      { dst: "10.246.0.0/24", dev: "raven0", via: "240.168.1.1", mtu: 1435 },
    ]);
    expect(d.forwarding).toBe(true);
  });

  it("the path MTU is the smaller of the VXLAN leg and the tunnel leg (the overheads never stack)", () => {
    expect(computeRoutes({ ...base, vpnOverheadBytes: 20 }).pathMtu).toBe(1450);
    expect(computeRoutes({ ...base, vpnOverheadBytes: WIREGUARD_OVERHEAD_BYTES }).pathMtu).toBe(1420);
    expect(computeRoutes({ ...base, underlayMtu: 9000 }).vxlan.mtu).toBe(8950);
  });

  it("on the gateway: every other node as a VXLAN peer, their pod CIDRs back over VXLAN; remote CIDRs only into a tunnel device", () => {
    const gw = { ...base, role: "gateway" as const, localIP: "192.168.1.1" };
    const d = computeRoutes(gw);
    expect(d.vxlan.peers.map((p) => p.lanIP)).toEqual(["192.168.1.2", "192.168.1.3"]);
    expect(d.routes).toEqual([
      { dst: "10.244.1.0/24", dev: "raven0", via: "240.168.1.2", mtu: 1450 },
      { dst: "10.244.3.0/24", dev: "raven0", via: "240.168.1.3", mtu: 1450 },
      { dst: "10.244.4.0/24", dev: "raven0", via: "240.168.1.3", mtu: 1450 },
    ]);
    const wg = computeRoutes({ ...gw, tunnelDev: "raven-wg0", vpnOverheadBytes: WIREGUARD_OVERHEAD_BYTES });
    expect(wg.routes.filter((r) => r.dev === "raven-wg0")).toEqual([
      { dst: "10.245.0.0/16", dev: "raven-wg0", via: null, mtu: 1420 },
      { dst: "10.246.0.0/24", dev: "raven-wg0", via: null, mtu: 1420 },
    ]);
    expect(computeRoutes({ ...gw, tunnelDev: null })).toEqual(d);
  });

  it("on failover only the gateway peer and the next hops change", () => {
    const before = computeRoutes(base);
    const after = computeRoutes({ ...base, gatewayIP: "192.168.1.3" });
    expect(after.vxlan).toEqual({
      ...before.vxlan,
      peers: [{ lanIP: "192.168.1.3", mac: "0e:52:c0:a8:01:03", address: "240.168.1.3" }],
    });
    expect(after.routes.map((r) => r.via)).toEqual(["240.168.1.3", "240.168.1.3"]);
    // the former gateway becomes a node, the node the gateway
    expect(computeRoutes({ ...base, localIP: "192.168.1.1", gatewayIP: "192.168.1.3" }).vxlan.peers[0]!.lanIP).toBe(
      "192.168.1.3",
    );
  });

  it("is deterministic in the order of its inputs", () => {
    const gw = { ...base, role: "gateway" as const, localIP: "192.168.1.1" };
    expect(
      computeRoutes({ ...gw, localNodes: [...nodes].reverse(), remotePodCidrs: ["10.246.0.0/24", "10.245.0.0/16"] }),
    ).toEqual(computeRoutes(gw));
  });

  it("refuses inputs that cannot be routed, naming the field", () => {
    const bad: [Partial<RouteInput>, RegExp][] = [
      [{ role: "gateway" }, /not the active gateway/],
      [{ localIP: "192.168.1.1" }, /is the active gateway/],
      [{ remotePodCidrs: ["10.245.0.1/16"] }, /host bits set \(the network is 10\.245\.0\.0\/16\)/],
      [
        { remotePodCidrs: ["10.244.1.128/25"] },
        /local node 192\.168\.1\.2 pod CIDR 10\.244\.1\.0\/24 overlaps remote pod CIDR 10\.244\.1\.128\/25/,
      ],
      [{ underlayMtu: 600 }, /underlayMtu 600/],
      [{ vpnOverheadBytes: 1000 }, /vpnOverheadBytes 1000/],
      [{ tunnelDev: "wg0" }, /only for a gateway/],
      [{ vxlan: { vni: 0 } }, /vni 0/],
      [{ localNodes: [nodes[0]!, nodes[0]!] }, /listed twice/],
      [{ localIP: "10.168.1.1", gatewayIP: "192.168.1.1", localNodes: [] }, /same VXLAN address 240\.168\.1\.1/],
    ];
    for (const [patch, msg] of bad) {
      const call = () => computeRoutes({ ...base, ...patch });
      expect(call).toThrow(TunnelError);
      expect(call).toThrow(msg);
    }
  });

  it("derives the VXLAN address and MAC from the LAN IP", () => {
    expect(vxlanAddress("10.0.7.250")).toBe("240.0.7.250");
    expect(vxlanMac("10.0.7.250")).toBe("0e:52:0a:00:07:fa");
  });
});

describe("checkPodCidrOverlap", () => {
  it("accepts disjoint domains and overlap inside one domain", () => {
    expect(
      checkPodCidrOverlap([
        { domain: "factory", podCidrs: ["10.244.0.0/24", "10.244.0.0/16"] },
        { domain: "shop", podCidrs: ["10.245.0.0/16"] },
      ]),
    ).toBeUndefined();
    expect(checkPodCidrOverlap([])).toBeUndefined();
  });

  it("names both domains and both CIDRs of every overlapping pair", () => {
    expect(
      checkPodCidrOverlap([
        { domain: "factory", podCidrs: ["10.244.1.0/24"] },
        { domain: "shop", podCidrs: ["10.244.0.0/16"] },
        { domain: "truck", podCidrs: ["10.244.1.128/25", "10.250.0.0/24"] },
      ]),
    ).toBe(
      "pod CIDR 10.244.1.0/24 of domain factory overlaps 10.244.0.0/16 of domain shop; " +
        "pod CIDR 10.244.1.0/24 of domain factory overlaps 10.244.1.128/25 of domain truck; " +
        "pod CIDR 10.244.0.0/16 of domain shop overlaps 10.244.1.128/25 of domain truck",
    );
  });

  it("reports a malformed CIDR with its domain", () => {
    expect(checkPodCidrOverlap([{ domain: "shop", podCidrs: ["10.244.0.0/33"] }])).toMatch(
      /^domain shop: CIDR "10.244.0.0\/33" is not an IPv4/,
    );
  });
});

describe("parseCidr", () => {
  it("parses networks, including /0 and /32", () => {
    expect(parseCidr("0.0.0.0/0")).toMatchObject({ start: 0, end: 2 ** 32 - 1 });
    expect(parseCidr("10.0.0.5/32")).toMatchObject({ start: 167772165, end: 167772165 });
  });
});
