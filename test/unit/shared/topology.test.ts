import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { ErrorCode, TopologyError } from "../../../shared/errors";
import { gatewayKey, soloKey } from "../../../shared/gateway";
import { gatewayCandidates, isIPv4, loadTopology, parseTopology, partitionOf } from "../../../shared/topology";

const TOPOLOGY_FILE = fileURLToPath(new URL("../../../topology.json", import.meta.url));

const node = (name: string, pool: string | undefined, gateway?: string, internalIP = "10.0.0.1") => ({
  name,
  labels: {
    ...(pool === undefined ? {} : { "apps.openyurt.io/nodepool": pool }),
    ...(gateway === undefined ? {} : { "raven.openyurt.io/gateway": gateway }),
  },
  internalIP,
});
const manifest = (name: string, ...endpointNodes: string[]) => ({
  apiVersion: "raven.openyurt.io/v1beta1",
  kind: "Gateway",
  metadata: { name },
  spec: { endpoints: endpointNodes.map((nodeName) => ({ nodeName, type: "proxy" })) },
});

/** A small valid fleet: pool `edge` with Gateway gw-edge (two candidates), and a node with no pool. */
const base = () => ({
  name: "t",
  nodes: [node("edge-gw-1", "edge", "gw-edge"), node("edge-gw-2", "edge", "gw-edge"), node("loner", undefined)],
  gateways: [manifest("gw-edge", "edge-gw-1", "edge-gw-2")],
});

function topologyError(raw: unknown): string {
  try {
    parseTopology(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(TopologyError);
    expect((err as TopologyError).code).toBe(ErrorCode.Topology);
    return (err as Error).message;
  }
  throw new Error("expected a TopologyError");
}

describe("the demo topology.json", () => {
  const topo = loadTopology(TOPOLOGY_FILE);
  const { units, unitOfNode } = partitionOf(topo);

  it("parses into 19 nodes and 4 Gateways", () => {
    expect(topo.name).toBe("raven-demo");
    expect(topo.nodes).toHaveLength(19);
    expect(topo.gateways.map((g) => g.metadata.name)).toEqual([
      "gw-cloud",
      "gw-factory-a",
      "gw-shop-b",
      "gw-vehicle-c",
    ]);
  });

  it("has five election units: four Gateways and the solo kiosk-1", () => {
    expect([...units.keys()].sort()).toEqual(
      ["gw.gw-cloud", "gw.gw-factory-a", "gw.gw-shop-b", "gw.gw-vehicle-c", "solo.kiosk-1"].sort(),
    );
    const kiosk = units.get(soloKey("kiosk-1"))!;
    expect(kiosk).toMatchObject({ solo: true, domain: "kiosk", nodes: ["kiosk-1"], candidates: ["kiosk-1"] });
    for (const [gw, domain] of [
      ["gw-cloud", "cloud"],
      ["gw-factory-a", "factory-a"],
      ["gw-shop-b", "shop-b"],
      ["gw-vehicle-c", "vehicle-c"],
    ] as const) {
      const unit = units.get(gatewayKey(gw))!;
      expect(unit.solo).toBe(false);
      expect(unit.domain).toBe(domain);
      expect(unit.problem).toBeUndefined();
      expect(unit.candidates).toEqual([`${domain}-gw-1`, `${domain}-gw-2`]);
      expect(unit.nodes.every((n) => n.startsWith(`${domain}-`))).toBe(true);
    }
    expect(units.get(gatewayKey("gw-factory-a"))!.nodes).toHaveLength(5);
    expect(unitOfNode.size).toBe(19);
  });

  it("lets factory-a and shop-b (and the kiosk) reuse the same InternalIPs: domains are isolated networks", () => {
    const ips = (pool: string) =>
      topo.nodes.filter((n) => n.labels["apps.openyurt.io/nodepool"] === pool).map((n) => n.internalIP);
    const shared = ips("factory-a").filter((ip) => ips("shop-b").includes(ip));
    expect(shared).toEqual(["192.168.1.11", "192.168.1.12", "192.168.1.13", "192.168.1.14"]);
    expect(ips("kiosk")).toEqual(["192.168.1.11"]);
  });

  it("names every endpoint node and the solo node as gateway candidates", () => {
    expect([...gatewayCandidates(topo)].sort()).toEqual(
      [
        "cloud-gw-1",
        "cloud-gw-2",
        "factory-a-gw-1",
        "factory-a-gw-2",
        "kiosk-1",
        "shop-b-gw-1",
        "shop-b-gw-2",
        "vehicle-c-gw-1",
        "vehicle-c-gw-2",
      ].sort(),
    );
  });

  it("keeps the Gateway spec of the file", () => {
    const cloud = topo.gateways[0]!;
    expect(cloud.spec.exposeType).toBe("PublicIP");
    expect(cloud.spec.proxyConfig).toEqual({ Replicas: 1, proxyHTTPPort: "10255,9445", proxyHTTPSPort: "10250,9100" });
    expect(topo.gateways[1]!.spec.endpoints.every((e) => e.underNAT)).toBe(true);
    expect(cloud.status).toEqual({ nodes: [], activeEndpoints: [], term: 0 });
  });
});

describe("parseTopology accepts", () => {
  it("a small fleet, with and without Gateways", () => {
    const topo = parseTopology(base());
    expect(topo.name).toBe("t");
    expect(topo.gateways.map((g) => g.metadata.name)).toEqual(["gw-edge"]);
    expect(topo.nodes.map((n) => n.name)).toEqual(["edge-gw-1", "edge-gw-2", "loner"]);
    const bare = parseTopology({ nodes: [node("a", "edge"), node("b", undefined)] });
    expect(bare.name).toBe("raven");
    expect(bare.gateways).toEqual([]);
    expect([...gatewayCandidates(bare)].sort()).toEqual(["a", "b"]);
  });

  it("a Gateway endpoint node without a gateway label: the endpoint places it", () => {
    const t = base();
    t.nodes[1] = node("edge-gw-2", "edge");
    const { unitOfNode } = partitionOf(parseTopology(t));
    expect(unitOfNode.get("edge-gw-2")).toBe(gatewayKey("gw-edge"));
  });

  it("a podCIDR, kept only when given", () => {
    const topo = parseTopology({ nodes: [{ ...node("a", "p"), podCIDR: "10.244.0.0/16" }, node("b", "p")] });
    expect(topo.nodes[0]!.podCIDR).toBe("10.244.0.0/16");
    expect("podCIDR" in topo.nodes[1]!).toBe(false);
  });
});

describe("parseTopology refuses, naming the culprit", () => {
  it("a node listed twice", () => {
    const t = base();
    t.nodes.push(node("edge-gw-2", "edge", "gw-edge", "10.0.0.9"));
    expect(topologyError(t)).toBe("node edge-gw-2 is listed twice");
  });

  it("a Gateway listed twice", () => {
    const t = base();
    t.gateways.push(manifest("gw-edge", "edge-gw-1"));
    expect(topologyError(t)).toBe("gateway gw-edge is listed twice");
  });

  it("an endpoint naming a node that is not in nodes", () => {
    const t = base();
    t.gateways[0] = manifest("gw-edge", "edge-gw-1", "edge-gw-9");
    expect(topologyError(t)).toBe("gateway gw-edge: endpoint node edge-gw-9 is not in nodes");
  });

  it("bad InternalIPs", () => {
    for (const ip of [
      "256.0.0.1",
      "10.0.0",
      "10.0.0.1.5",
      "a.b.c.d",
      " 10.0.0.1",
      "10.0.0.1/24",
      "::1",
      "",
      167772161,
      undefined,
    ]) {
      const t = base();
      t.nodes[1] = { ...node("edge-gw-2", "edge", "gw-edge"), internalIP: ip as string };
      const msg = topologyError(t);
      expect(msg).toContain("node edge-gw-2: internalIP must be an IPv4 address");
      expect(msg).toContain(JSON.stringify(ip) ?? "undefined");
    }
  });

  it("bad podCIDRs", () => {
    for (const cidr of ["10.244.0.0/33", "10.244.0.0", "10.244.0.0/", "300.0.0.0/8", "10.244.0.0/-1", 24]) {
      const t = base();
      t.nodes[0] = { ...node("edge-gw-1", "edge", "gw-edge"), podCIDR: cidr } as (typeof t.nodes)[0];
      expect(topologyError(t)).toBe(`node edge-gw-1: podCIDR must be an IPv4 CIDR, got ${JSON.stringify(cidr)}`);
    }
  });

  it("invalid node names", () => {
    for (const name of ["Edge-1", "a_b", "", "a b", 7]) {
      const t = base();
      t.nodes[2] = { ...node("x", undefined), name: name as string };
      expect(topologyError(t)).toBe(`nodes[2].name: must be a node name, got ${JSON.stringify(name)}`);
    }
  });

  it("a pool name that is not a DNS label", () => {
    for (const pool of ["Factory-A", "factory.a", "factory_a", "", "p".repeat(64)]) {
      const t = base();
      t.nodes.push(node("x-1", pool));
      expect(topologyError(t)).toBe(`node pool ${JSON.stringify(pool)} is not a DNS label`);
    }
  });

  it("a node without a pool whose name cannot be a domain", () => {
    const t = base();
    t.nodes.push(node("ip-10-0-0-1.ec2.internal", undefined));
    expect(topologyError(t)).toBe('node "ip-10-0-0-1.ec2.internal" has no node pool and its name is not a DNS label');
    // with a pool, the same dotted name is fine
    const ok = base();
    ok.nodes.push(node("ip-10-0-0-1.ec2.internal", "edge", "gw-edge"));
    expect(parseTopology(ok).nodes).toHaveLength(4);
  });

  it("a Gateway whose nodes span two pools", () => {
    const t = base();
    t.nodes.push(node("other-1", "other", "gw-edge"));
    const msg = topologyError(t);
    expect(msg).toBe("Gateway gw-edge spans domains edge, other; it serves edge");
  });

  it("a label naming a Gateway that does not exist", () => {
    const t = base();
    t.nodes.push(node("stray", "edge", "gw-missing"));
    expect(topologyError(t)).toBe(
      "node stray: label raven.openyurt.io/gateway=gw-missing names no Gateway; the node is its own gateway",
    );
  });

  it("a Gateway that serves no node", () => {
    const t = base();
    t.gateways.push(manifest("gw-empty"));
    expect(topologyError(t)).toBe("gateway gw-empty serves no node");
  });

  it("labels that are not a string map", () => {
    const t = base();
    t.nodes[0] = {
      ...node("edge-gw-1", "edge"),
      labels: { "apps.openyurt.io/nodepool": 3 } as unknown as Record<string, string>,
    };
    expect(topologyError(t)).toBe("node edge-gw-1: labels must map strings to strings");
  });

  // parseNode checks `typeof labels !== "object"`, which an array passes; Object.values(["edge"]) are strings.
  it("labels given as a list", () => {
    const t = base();
    t.nodes[2] = { ...node("loner", undefined), labels: ["edge"] as unknown as Record<string, string> };
    expect(topologyError(t)).toContain("node loner: labels");
  });

  it("a broken Gateway manifest, with its position", () => {
    const t = base();
    t.gateways[0] = { ...manifest("gw-edge", "edge-gw-1"), metadata: { name: "GW" } };
    expect(topologyError(t)).toBe('gateways[0].metadata.name: must be a DNS subdomain name, got "GW"');
  });

  it("an empty or missing node list, and a non-object", () => {
    expect(topologyError({ nodes: [] })).toBe("nodes: must be a non-empty list");
    expect(topologyError({})).toBe("nodes: must be a non-empty list");
    expect(topologyError([])).toBe("topology must be an object");
    expect(topologyError({ nodes: [null] })).toBe("nodes[0]: must be an object");
  });
});

describe("loadTopology", () => {
  const dir = mkdtempSync(join(tmpdir(), "raven-topology-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("names the file it cannot read or parse", () => {
    const missing = join(dir, "missing.json");
    expect(() => loadTopology(missing)).toThrow(new RegExp(`^cannot read topology ${missing}: `));
    const broken = join(dir, "broken.json");
    writeFileSync(broken, "{ nodes: [");
    expect(() => loadTopology(broken)).toThrow(new RegExp(`^topology ${broken} is not JSON: `));
  });
});

describe("isIPv4", () => {
  it("accepts dotted quads in range only", () => {
    for (const ok of ["0.0.0.0", "10.0.0.11", "192.168.1.255", "255.255.255.255"]) expect(isIPv4(ok), ok).toBe(true);
    for (const bad of ["256.1.1.1", "1.1.1", "1.1.1.1.", "1.1.1.a", "", null, 1])
      expect(isIPv4(bad), String(bad)).toBe(false);
  });
});

describe("parseTopology refuses ambiguous Gateway membership", () => {
  const raw = (gateways: unknown[], labels: Record<string, string> = {}) => ({
    nodes: [{ name: "n1", labels: { "apps.openyurt.io/nodepool": "p", ...labels }, internalIP: "10.0.0.1" }],
    gateways,
  });
  const gw = (name: string) => ({ metadata: { name }, spec: { endpoints: [{ nodeName: "n1", type: "proxy" }] } });

  it("a node that is an endpoint of two Gateways", () => {
    expect(() => parseTopology(raw([gw("gw-1"), gw("gw-2")]))).toThrow(
      "node n1 is an endpoint of both gateway gw-1 and gateway gw-2",
    );
  });

  it("a node labelled for one Gateway but an endpoint of another", () => {
    expect(() =>
      parseTopology(raw([gw("gw-1"), { metadata: { name: "gw-2" } }], { "raven.openyurt.io/gateway": "gw-2" })),
    ).toThrow("node n1 is an endpoint of gateway gw-1 but labelled raven.openyurt.io/gateway=gw-2");
  });
});
