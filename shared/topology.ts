// The fleet topology file: the nodes of a cluster (name, labels, InternalIP, podCIDR) and its Gateway
// manifests. The launcher starts processes from it and seeds the Gateway records; domains follow from the
// labels exactly as they would in Kubernetes.
import { readFileSync } from "node:fs";
import { TopologyError, describeError } from "./errors";
import { LABEL_GATEWAY, type Gateway } from "./gateway";
import { parseGatewayManifest } from "./gateway-manifest";
import { computeUnits, domainProblem, type NodeFacts, type Partition } from "./domains";
import { isObjectName } from "./protocol/subjects";

export type Topology = Readonly<{ name: string; nodes: NodeFacts[]; gateways: Gateway[] }>;

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
const CIDR4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}\/(3[0-2]|[12]?\d)$/;

export function isIPv4(s: unknown): s is string {
  return typeof s === "string" && IPV4.test(s);
}

function parseNode(raw: unknown, i: number): NodeFacts {
  const where = `nodes[${i}]`;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new TopologyError(`${where}: must be an object`);
  const r = raw as Record<string, unknown>;
  if (!isObjectName(r.name))
    throw new TopologyError(`${where}.name: must be a node name, got ${JSON.stringify(r.name)}`);
  const labels = r.labels ?? {};
  if (
    typeof labels !== "object" ||
    labels === null ||
    Array.isArray(labels) ||
    !Object.values(labels).every((v) => typeof v === "string")
  ) {
    throw new TopologyError(`node ${r.name}: labels must map strings to strings`);
  }
  if (!isIPv4(r.internalIP))
    throw new TopologyError(`node ${r.name}: internalIP must be an IPv4 address, got ${JSON.stringify(r.internalIP)}`);
  if (r.podCIDR !== undefined && (typeof r.podCIDR !== "string" || !CIDR4.test(r.podCIDR))) {
    throw new TopologyError(`node ${r.name}: podCIDR must be an IPv4 CIDR, got ${JSON.stringify(r.podCIDR)}`);
  }
  const node: NodeFacts = {
    name: r.name,
    labels: labels as Record<string, string>,
    internalIP: r.internalIP,
    ...(r.podCIDR ? { podCIDR: r.podCIDR as string } : {}),
  };
  const problem = domainProblem(node);
  if (problem) throw new TopologyError(problem);
  return node;
}

export function parseTopology(raw: unknown): Topology {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new TopologyError("topology must be an object");
  const r = raw as Record<string, unknown>;
  const name = typeof r.name === "string" ? r.name : "raven";
  if (!Array.isArray(r.nodes) || r.nodes.length === 0) throw new TopologyError("nodes: must be a non-empty list");
  const nodes = r.nodes.map(parseNode);
  const gateways = (Array.isArray(r.gateways) ? r.gateways : []).map((g, i) =>
    parseGatewayManifest(g, `gateways[${i}]`),
  );
  const nodeNames = new Set<string>();
  for (const n of nodes) {
    if (nodeNames.has(n.name)) throw new TopologyError(`node ${n.name} is listed twice`);
    nodeNames.add(n.name);
  }
  const gwNames = new Set<string>();
  const owner = new Map<string, string>();
  for (const g of gateways) {
    if (gwNames.has(g.metadata.name)) throw new TopologyError(`gateway ${g.metadata.name} is listed twice`);
    gwNames.add(g.metadata.name);
    for (const ep of g.spec.endpoints) {
      if (!nodeNames.has(ep.nodeName)) {
        throw new TopologyError(`gateway ${g.metadata.name}: endpoint node ${ep.nodeName} is not in nodes`);
      }
      const other = owner.get(ep.nodeName);
      if (other !== undefined && other !== g.metadata.name) {
        throw new TopologyError(
          `node ${ep.nodeName} is an endpoint of both gateway ${other} and gateway ${g.metadata.name}`,
        );
      }
      owner.set(ep.nodeName, g.metadata.name);
    }
  }
  for (const n of nodes) {
    const label = n.labels[LABEL_GATEWAY];
    const own = owner.get(n.name);
    if (label !== undefined && own !== undefined && label !== own) {
      throw new TopologyError(`node ${n.name} is an endpoint of gateway ${own} but labelled ${LABEL_GATEWAY}=${label}`);
    }
  }
  const partition = computeUnits(gateways, nodes);
  for (const unit of partition.units.values()) {
    if (unit.problem) throw new TopologyError(unit.problem);
    if (!unit.solo && unit.domain === undefined) throw new TopologyError(`gateway ${unit.name} serves no node`);
  }
  return { name, nodes, gateways };
}

export function loadTopology(file: string): Topology {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new TopologyError(`cannot read topology ${file}: ${describeError(err)}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new TopologyError(`topology ${file} is not JSON: ${describeError(err)}`);
  }
  return parseTopology(raw);
}

export function partitionOf(topology: Topology): Partition {
  return computeUnits(topology.gateways, topology.nodes);
}

/** The gateway candidates of a topology: every node named by an endpoint, plus every solo node. */
export function gatewayCandidates(topology: Topology): Set<string> {
  const { units } = partitionOf(topology);
  const out = new Set<string>();
  for (const unit of units.values()) for (const c of unit.candidates) out.add(c);
  return out;
}
