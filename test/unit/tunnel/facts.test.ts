// Tunnel mode's view of the fleet (facts.ts: domains, VPN peers, route inputs) and the inventory's
// overlapping-pod-CIDR check (overlap.ts).
import { describe, expect, it } from "vitest";
import { soloGateway, type Gateway } from "../../../shared/gateway";
import type { NodeRecord } from "../../../shared/node-record";
import { computeRoutes } from "../../../lib/vxlan";
import { podCidrProblems } from "../../../shared/pod-cidrs";
import { routeInputOf, tunnelDomains, vpnPeersOf } from "../../../lib/tunnel";

const rec = (name: string, domain: string, internalIP: string, podCIDR?: string): NodeRecord => ({
  name,
  labels: {},
  internalIP,
  domain,
  registeredAt: 0,
  ...(podCIDR ? { podCIDR } : {}),
});

function gateway(
  name: string,
  members: string[],
  active: { node: string; publicIP?: string; underNAT?: boolean } | null,
  term: number,
  tunnelProblem?: string,
): Gateway {
  const gw = soloGateway(name);
  gw.metadata = { name };
  gw.status = {
    nodes: members.map((n) => ({ nodeName: n, privateIP: "", subnets: [] })),
    activeEndpoints: active
      ? [
          { nodeName: active.node, type: "proxy", port: 10262, underNAT: false },
          {
            nodeName: active.node,
            type: "tunnel",
            port: 4500,
            underNAT: active.underNAT ?? false,
            ...(active.publicIP ? { publicIP: active.publicIP } : {}),
          },
        ]
      : [],
    term,
    ...(tunnelProblem ? { tunnelProblem } : {}),
  };
  gw.spec = { ...gw.spec, endpoints: gw.status.activeEndpoints };
  return gw;
}

const nodes = new Map(
  [
    rec("c-gw", "cloud", "10.0.0.1", "10.244.0.0/24"),
    rec("a-gw-1", "edge-a", "192.168.0.1", "10.244.16.0/24"),
    rec("a-gw-2", "edge-a", "192.168.0.2", "10.244.17.0/24"),
    rec("a-node", "edge-a", "192.168.0.3", "10.244.18.0/24"),
    rec("b-gw", "edge-b", "192.168.0.1", "10.244.32.0/24"),
    rec("b-node", "edge-b", "192.168.0.3"),
  ].map((n) => [n.name, n]),
);
const records = [
  gateway("gw-c", ["c-gw"], { node: "c-gw", publicIP: "198.18.0.10" }, 3),
  gateway("gw-a", ["a-gw-1", "a-gw-2", "a-node"], { node: "a-gw-2", publicIP: "198.18.0.12", underNAT: true }, 7),
  gateway("gw-b", ["b-gw", "b-node"], { node: "b-gw", publicIP: "198.18.0.13", underNAT: true }, 2),
];
const link = { underlayMtu: 1500, vpnOverheadBytes: 65 };

describe("tunnelDomains", () => {
  it("derives each domain's active tunnel endpoint, term, nodes and pod CIDRs from the records", () => {
    const ds = tunnelDomains(records, nodes);
    expect(ds.map((d) => d.domain)).toEqual(["cloud", "edge-a", "edge-b"]);
    expect(ds[1]).toEqual({
      domain: "edge-a",
      gateway: "gw-a",
      term: 7,
      active: { node: "a-gw-2", addr: "198.18.0.12", underNAT: true, lanIP: "192.168.0.2" },
      candidates: [{ node: "a-gw-2", addr: "198.18.0.12", underNAT: true, lanIP: "192.168.0.2" }],
      nodes: [
        { name: "a-gw-1", lanIP: "192.168.0.1", podCidrs: ["10.244.16.0/24"] },
        { name: "a-gw-2", lanIP: "192.168.0.2", podCidrs: ["10.244.17.0/24"] },
        { name: "a-node", lanIP: "192.168.0.3", podCidrs: ["10.244.18.0/24"] },
      ],
      problem: null,
    });
  });

  it("falls back to the endpoint node's InternalIP without a publicIP, and has no active without a tunnel endpoint", () => {
    const ds = tunnelDomains(
      [gateway("gw-c", ["c-gw"], { node: "c-gw" }, 1), gateway("gw-a", ["a-gw-1"], null, 0)],
      nodes,
    );
    expect(ds[0]!.active?.addr).toBe("10.0.0.1");
    expect(ds[1]!.active).toBeNull();
  });
});

describe("vpnPeersOf", () => {
  const ds = tunnelDomains(records, nodes);

  it("gives the active endpoint one peer per other domain, with both sides' pod CIDRs and the peer's term", () => {
    const plans = vpnPeersOf(ds, { domain: "edge-a", node: "a-gw-2" });
    expect(plans.map((p) => [p.domain, p.node, p.term])).toEqual([
      ["cloud", "c-gw", 3],
      ["edge-b", "b-gw", 2],
    ]);
    expect(plans[0]!.peer).toEqual({
      name: "cloud",
      localAddr: "198.18.0.12",
      remoteAddr: "198.18.0.10",
      localSubnets: ["10.244.16.0/24", "10.244.17.0/24", "10.244.18.0/24"],
      remoteSubnets: ["10.244.0.0/24"],
      remoteNode: "c-gw",
      initiate: true, // behind NAT facing a peer that is not: it must start
    });
    expect(plans[1]!.peer.initiate).toBeUndefined(); // both behind NAT: the lower address starts
  });

  it("gives a standby candidate, when asked, the peers it would have as the active, none to initiate", () => {
    const withStandby = records.map((g) =>
      g.metadata.name === "gw-a"
        ? {
            ...g,
            spec: {
              ...g.spec,
              endpoints: [
                { nodeName: "a-gw-1", type: "tunnel" as const, port: 4500, underNAT: true, publicIP: "198.18.0.11" },
              ],
            },
          }
        : g,
    );
    const plans = vpnPeersOf(
      tunnelDomains(withStandby, nodes),
      { domain: "edge-a", node: "a-gw-1" },
      { standby: true },
    );
    expect(plans.map((p) => [p.domain, p.peer.localAddr, p.peer.remoteAddr, p.peer.initiate])).toEqual([
      ["cloud", "198.18.0.11", "198.18.0.10", false],
      ["edge-b", "198.18.0.11", "198.18.0.13", false],
    ]);
    expect(
      vpnPeersOf(tunnelDomains(withStandby, nodes), { domain: "edge-a", node: "a-node" }, { standby: true }),
    ).toEqual([]);
  });

  it("gives a standby, or any node of a refused domain, no peers, and leaves refused peers out", () => {
    expect(vpnPeersOf(ds, { domain: "edge-a", node: "a-gw-1" })).toEqual([]);
    const refused = tunnelDomains(
      [records[0]!, records[1]!, gateway("gw-b", ["b-gw"], { node: "b-gw", publicIP: "198.18.0.13" }, 2, "overlap")],
      nodes,
    );
    expect(vpnPeersOf(refused, { domain: "edge-a", node: "a-gw-2" }).map((p) => p.domain)).toEqual(["cloud"]);
    expect(vpnPeersOf(refused, { domain: "edge-b", node: "b-gw" })).toEqual([]);
  });
});

describe("routeInputOf", () => {
  const ds = tunnelDomains(records, nodes);

  it("routes a plain node's remote pod CIDRs to its domain's active gateway over VXLAN", () => {
    const input = routeInputOf(ds, { domain: "edge-a", node: "a-node" }, link)!;
    expect(input).toMatchObject({
      role: "node",
      localIP: "192.168.0.3",
      gatewayIP: "192.168.0.2",
      remotePodCidrs: ["10.244.0.0/24", "10.244.32.0/24"],
    });
    const desired = computeRoutes(input);
    expect(desired.routes.map((r) => `${r.dst} via ${r.via}`)).toEqual([
      "10.244.0.0/24 via 240.168.0.2",
      "10.244.32.0/24 via 240.168.0.2",
    ]);
  });

  it("makes the active endpoint's node the gateway, routing the local nodes' pod CIDRs back over VXLAN", () => {
    const input = routeInputOf(ds, { domain: "edge-a", node: "a-gw-2" }, { ...link, tunnelDev: "raven-wg0" })!;
    expect(input.role).toBe("gateway");
    const desired = computeRoutes(input);
    expect(desired.routes.filter((r) => r.dev === "raven0").map((r) => r.dst)).toEqual([
      "10.244.16.0/24",
      "10.244.18.0/24",
    ]);
    expect(desired.routes.filter((r) => r.dev === "raven-wg0").map((r) => r.dst)).toEqual([
      "10.244.0.0/24",
      "10.244.32.0/24",
    ]);
  });

  it("is null while the domain has no active endpoint or the node is unknown", () => {
    const none = tunnelDomains([gateway("gw-a", ["a-gw-1", "a-node"], null, 0)], nodes);
    expect(routeInputOf(none, { domain: "edge-a", node: "a-node" }, link)).toBeNull();
    expect(routeInputOf(ds, { domain: "edge-a", node: "nobody" }, link)).toBeNull();
  });
});

const cidr24 = (k: number) => `${10 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}.0/24`;

describe("podCidrProblems", () => {
  it("names both domains of an overlap, nested or equal, and nothing else", () => {
    const problems = podCidrProblems([
      { domain: "cloud", podCidrs: ["10.244.0.0/24"] },
      { domain: "factory", podCidrs: ["10.244.16.0/24", "10.244.17.0/24"] },
      { domain: "shop", podCidrs: ["10.244.16.0/20"] },
      { domain: "kiosk", podCidrs: ["10.244.17.0/24"] },
    ]);
    expect([...problems.keys()].sort()).toEqual(["factory", "kiosk", "shop"]);
    expect(problems.get("kiosk")).toBe(
      "pod CIDR 10.244.17.0/24 of domain kiosk overlaps 10.244.17.0/24 of domain factory; pod CIDR 10.244.17.0/24 of domain kiosk overlaps 10.244.16.0/20 of domain shop",
    );
    expect(problems.get("factory")).toContain(
      "pod CIDR 10.244.16.0/24 of domain factory overlaps 10.244.16.0/20 of domain shop",
    );
  });

  it("ignores overlap inside one domain, reports a malformed CIDR, and caps the sentences", () => {
    expect(podCidrProblems([{ domain: "a", podCidrs: ["10.0.0.0/16", "10.0.1.0/24"] }]).size).toBe(0);
    expect(podCidrProblems([{ domain: "a", podCidrs: ["10.0.0.1/24"] }]).get("a")).toMatch(
      /domain a: CIDR 10.0.0.1\/24 has host bits set/,
    );
    const many = podCidrProblems([
      { domain: "big", podCidrs: ["10.0.0.0/8"] },
      ...[1, 2, 3, 4, 5].map((i) => ({ domain: `d${i}`, podCidrs: [`10.${i}.0.0/16`] })),
    ]);
    expect(many.get("big")).toMatch(/; and 2 more$/);
  });

  it("handles a large inventory quickly enough to run on every membership change (sort, not all pairs)", () => {
    const domains = Array.from({ length: 1000 }, (_, d) => ({
      domain: `d${d}`,
      podCidrs: Array.from({ length: 100 }, (_, n) => cidr24(d * 100 + n)),
    }));
    expect(podCidrProblems(domains).size).toBe(0);
  });
});
