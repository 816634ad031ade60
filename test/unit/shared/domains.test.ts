import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  computeUnits,
  domainOf,
  domainProblem,
  endpointOwners,
  placeNode,
  type NodeFacts,
  type Partition,
} from "../../../shared/domains";
import { LABEL_GATEWAY, LABEL_NODEPOOL, gatewayKey, soloKey, type Gateway } from "../../../shared/gateway";
import { parseGatewayManifest } from "../../../shared/gateway-manifest";
import { loadTopology } from "../../../shared/topology";

const node = (name: string, pool?: string, gateway?: string): NodeFacts => ({
  name,
  labels: {
    ...(pool === undefined ? {} : { [LABEL_NODEPOOL]: pool }),
    ...(gateway === undefined ? {} : { [LABEL_GATEWAY]: gateway }),
  },
  internalIP: "10.0.0.1",
});
const gw = (name: string, ...endpoints: [string, "proxy" | "tunnel"][]): Gateway =>
  parseGatewayManifest({
    metadata: { name },
    spec: { endpoints: endpoints.map(([nodeName, type]) => ({ nodeName, type })) },
  });

/** placeNode must agree with computeUnits for every node: the coordinator uses one, the node agent the other. */
function expectPlacementAgrees(gateways: Gateway[], nodes: NodeFacts[], partition: Partition) {
  const names = new Set(gateways.map((g) => g.metadata.name));
  const owners = endpointOwners(gateways);
  for (const n of nodes) {
    const place = placeNode(n, names, owners);
    expect(partition.unitOfNode.get(n.name), n.name).toBe(place.key);
    const unit = partition.units.get(place.key)!;
    expect(unit.name).toBe(place.name);
    expect(unit.solo).toBe(place.solo);
    expect(unit.nodes).toContain(n.name);
    if (place.problem) expect(unit.problem).toBe(place.problem);
  }
}

describe("domainOf / domainProblem", () => {
  it("the domain is the node pool, or the node's own name without one", () => {
    expect(domainOf(node("n1", "factory-a"))).toBe("factory-a");
    expect(domainOf(node("kiosk-1"))).toBe("kiosk-1");
    expect(domainProblem(node("n1", "factory-a"))).toBeUndefined();
    expect(domainProblem(node("kiosk-1"))).toBeUndefined();
  });

  it("explains why a node cannot be placed", () => {
    expect(domainProblem(node("n1", "Factory"))).toBe('node pool "Factory" is not a DNS label');
    expect(domainProblem(node("n.example.com"))).toBe(
      'node "n.example.com" has no node pool and its name is not a DNS label',
    );
    expect(domainProblem(node("n.example.com", "edge"))).toBeUndefined();
  });
});

describe("computeUnits", () => {
  it("a pool with a Gateway: one unit serving the labelled nodes, sorted, candidates from the endpoints", () => {
    const gateways = [gw("gw-a", ["a-gw-1", "proxy"], ["a-gw-1", "tunnel"], ["a-gw-2", "proxy"])];
    const nodes = [
      node("a-node-2", "a", "gw-a"),
      node("a-gw-2", "a", "gw-a"),
      node("a-gw-1", "a", "gw-a"),
      node("a-node-1", "a", "gw-a"),
    ];
    const p = computeUnits(gateways, nodes);
    expect(p.units.size).toBe(1);
    expect(p.units.get(gatewayKey("gw-a"))).toEqual({
      key: "gw.gw-a",
      name: "gw-a",
      solo: false,
      domain: "a",
      nodes: ["a-gw-1", "a-gw-2", "a-node-1", "a-node-2"],
      candidates: ["a-gw-1", "a-gw-2"],
    });
    for (const n of nodes) expect(p.unitOfNode.get(n.name)).toBe("gw.gw-a");
    expectPlacementAgrees(gateways, nodes, p);
  });

  it("candidates keep spec order (not name order) and appear once per node", () => {
    const g = gw("gw-a", ["z-gw", "tunnel"], ["b-gw", "proxy"], ["z-gw", "proxy"], ["m-gw", "tunnel"]);
    const nodes = [node("z-gw", "a", "gw-a"), node("b-gw", "a", "gw-a"), node("m-gw", "a", "gw-a")];
    expect(computeUnits([g], nodes).units.get("gw.gw-a")!.candidates).toEqual(["z-gw", "b-gw", "m-gw"]);
  });

  it("a pool without a Gateway: every node is solo, in the pool's domain", () => {
    const nodes = [node("k-2", "kiosk"), node("k-1", "kiosk")];
    const p = computeUnits([], nodes);
    expect([...p.units.keys()].sort()).toEqual(["solo.k-1", "solo.k-2"]);
    for (const name of ["k-1", "k-2"]) {
      expect(p.units.get(soloKey(name))).toEqual({
        key: `solo.${name}`,
        name,
        solo: true,
        domain: "kiosk",
        nodes: [name],
        candidates: [name],
      });
    }
    expectPlacementAgrees([], nodes, p);
  });

  it("a node without a pool is solo in a domain named after itself", () => {
    const p = computeUnits([gw("gw-a", ["a-1", "proxy"])], [node("a-1", "a", "gw-a"), node("loner")]);
    expect(p.units.get("solo.loner")).toMatchObject({
      solo: true,
      domain: "loner",
      nodes: ["loner"],
      candidates: ["loner"],
    });
    expect(p.units.get("solo.loner")!.problem).toBeUndefined();
  });

  it("a label naming a missing Gateway: the node is solo, with a problem naming the label", () => {
    const nodes = [node("stray", "a", "gw-gone")];
    const p = computeUnits([], nodes);
    const unit = p.units.get("solo.stray")!;
    expect(unit.solo).toBe(true);
    expect(unit.domain).toBe("a");
    expect(unit.problem).toBe(
      `node stray: label ${LABEL_GATEWAY}=gw-gone names no Gateway; the node is its own gateway`,
    );
    expectPlacementAgrees([], nodes, p);
  });

  it("an unlabelled endpoint node is placed by the Gateway that lists it", () => {
    const gateways = [gw("gw-a", ["a-gw-1", "proxy"])];
    const nodes = [node("a-gw-1", "a"), node("a-node-1", "a", "gw-a"), node("a-node-2", "a")];
    const p = computeUnits(gateways, nodes);
    expect(p.units.get("gw.gw-a")!.nodes).toEqual(["a-gw-1", "a-node-1"]);
    // an unlabelled, non-endpoint node in the same pool is not served by the Gateway: it is solo
    expect(p.units.get("solo.a-node-2")).toMatchObject({ solo: true, domain: "a" });
    expectPlacementAgrees(gateways, nodes, p);
  });

  it("the label wins over the endpoint list", () => {
    const gateways = [gw("gw-a", ["x", "proxy"]), gw("gw-b", ["b-1", "proxy"])];
    const nodes = [node("x", "b", "gw-b"), node("b-1", "b", "gw-b")];
    const p = computeUnits(gateways, nodes);
    expect(p.unitOfNode.get("x")).toBe("gw.gw-b");
    expect(p.units.get("gw.gw-a")!.domain).toBeUndefined();
    expectPlacementAgrees(gateways, nodes, p);
  });

  it("a Gateway with no member has no domain yet", () => {
    const p = computeUnits([gw("gw-empty")], [node("n", "p")]);
    expect(p.units.get("gw.gw-empty")).toMatchObject({ domain: undefined, nodes: [], candidates: [] });
    expect(p.units.get("gw.gw-empty")!.problem).toBeUndefined();
  });

  it("a Gateway spanning two pools serves the first by name, with a problem", () => {
    const nodes = [node("z-1", "zeta", "gw-x"), node("a-1", "alpha", "gw-x"), node("a-2", "alpha", "gw-x")];
    const p = computeUnits([gw("gw-x", ["a-1", "proxy"])], nodes);
    const unit = p.units.get("gw.gw-x")!;
    expect(unit.domain).toBe("alpha");
    expect(unit.problem).toBe("Gateway gw-x spans domains alpha, zeta; it serves alpha");
  });

  it("a Gateway named like a node does not collide with that node's solo unit", () => {
    const nodes = [node("twin", "p1"), node("m", "p2", "twin")];
    const p = computeUnits([gw("twin", ["m", "proxy"])], nodes);
    expect(p.units.get("gw.twin")).toMatchObject({ solo: false, nodes: ["m"], domain: "p2" });
    expect(p.units.get("solo.twin")).toMatchObject({ solo: true, nodes: ["twin"], domain: "p1" });
    expectPlacementAgrees([gw("twin", ["m", "proxy"])], nodes, p);
  });

  it("does not depend on the order of the node list", () => {
    const gateways = [gw("gw-a", ["a-2", "proxy"], ["a-1", "proxy"])];
    const nodes = [node("a-1", "a", "gw-a"), node("a-3", "a", "gw-a"), node("a-2", "a", "gw-a"), node("k", "kiosk")];
    const forward = computeUnits(gateways, nodes);
    const backward = computeUnits(gateways, [...nodes].reverse());
    expect([...backward.units.entries()].sort()).toEqual([...forward.units.entries()].sort());
    expect(new Map([...backward.unitOfNode].sort())).toEqual(new Map([...forward.unitOfNode].sort()));
  });

  it("placeNode agrees with computeUnits for every node of the demo topology", () => {
    const topo = loadTopology(fileURLToPath(new URL("../../../topology.json", import.meta.url)));
    const p = computeUnits(topo.gateways, topo.nodes);
    expect(p.unitOfNode.size).toBe(topo.nodes.length);
    expectPlacementAgrees(topo.gateways, topo.nodes, p);
  });
});

describe("endpointOwners", () => {
  it("maps each endpoint node to its Gateway", () => {
    const owners = endpointOwners([gw("gw-a", ["a-1", "proxy"], ["a-1", "tunnel"]), gw("gw-b", ["b-1", "tunnel"])]);
    expect(owners).toEqual(
      new Map([
        ["a-1", "gw-a"],
        ["b-1", "gw-b"],
      ]),
    );
  });
});
