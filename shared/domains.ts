// Domain partitioning, pure. A node's network domain is its node pool (`apps.openyurt.io/nodepool`); a node
// with no pool is a domain of its own. Within a domain, the nodes labelled `raven.openyurt.io/gateway=<gw>`
// are served by that Gateway; a node whose pool has no Gateway (or whose label names none) is solo: its own
// gateway, with its own election unit and term.
import { LABEL_GATEWAY, LABEL_NODEPOOL, gatewayKey, soloKey, type Gateway } from "./gateway";
import { isDomainName } from "./protocol/subjects";

export type NodeFacts = Readonly<{
  name: string;
  labels: Readonly<Record<string, string>>;
  internalIP: string;
  podCIDR?: string;
}>;

/** One election: a Gateway record and the domain it serves, or a solo node. */
export type Unit = {
  key: string;
  /** Gateway record name (the node's name for a solo unit). */
  name: string;
  solo: boolean;
  /** Undefined until a member node is known. */
  domain: string | undefined;
  /** Nodes served by this unit (members), sorted. */
  nodes: string[];
  /** Candidate node names (from the endpoints), in spec order. */
  candidates: string[];
  problem?: string;
};

export function domainOf(node: Pick<NodeFacts, "name" | "labels">): string {
  return node.labels[LABEL_NODEPOOL] ?? node.name;
}

/** Why a node cannot be placed in a domain, or undefined when it can. */
export function domainProblem(node: Pick<NodeFacts, "name" | "labels">): string | undefined {
  const d = domainOf(node);
  if (isDomainName(d)) return undefined;
  return node.labels[LABEL_NODEPOOL] !== undefined
    ? `node pool ${JSON.stringify(d)} is not a DNS label`
    : `node ${JSON.stringify(node.name)} has no node pool and its name is not a DNS label`;
}

export type Partition = { units: Map<string, Unit>; unitOfNode: Map<string, string> };

export type Placement = { key: string; name: string; solo: boolean; problem?: string };

/** Which unit one node belongs to, given the Gateways' names and which Gateway lists each endpoint node. */
export function placeNode(
  node: Pick<NodeFacts, "name" | "labels">,
  gatewayNames: ReadonlySet<string>,
  endpointOwner: ReadonlyMap<string, string>,
): Placement {
  const label = node.labels[LABEL_GATEWAY] ?? endpointOwner.get(node.name);
  if (label !== undefined && gatewayNames.has(label)) return { key: gatewayKey(label), name: label, solo: false };
  const placement: Placement = { key: soloKey(node.name), name: node.name, solo: true };
  if (label !== undefined)
    placement.problem = `node ${node.name}: label ${LABEL_GATEWAY}=${label} names no Gateway; the node is its own gateway`;
  return placement;
}

/** Endpoint node -> the Gateway listing it (the last one, if several do). */
export function endpointOwners(
  gateways: readonly { metadata: { name: string }; spec: { endpoints: readonly { nodeName: string }[] } }[],
): Map<string, string> {
  const owner = new Map<string, string>();
  for (const gw of gateways) for (const ep of gw.spec.endpoints) owner.set(ep.nodeName, gw.metadata.name);
  return owner;
}

export function computeUnits(gateways: readonly Gateway[], nodes: readonly NodeFacts[]): Partition {
  const units = new Map<string, Unit>();
  const unitOfNode = new Map<string, string>();
  const names = new Set(gateways.map((g) => g.metadata.name));
  const owner = endpointOwners(gateways);
  const domainsOfGateway = new Map<string, Set<string>>();

  for (const gw of gateways) {
    const key = gatewayKey(gw.metadata.name);
    const candidates = [...new Set(gw.spec.endpoints.map((e) => e.nodeName))];
    units.set(key, { key, name: gw.metadata.name, solo: false, domain: undefined, nodes: [], candidates });
    domainsOfGateway.set(gw.metadata.name, new Set());
  }
  const sorted = [...nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const node of sorted) {
    const place = placeNode(node, names, owner);
    unitOfNode.set(node.name, place.key);
    if (!place.solo) {
      units.get(place.key)!.nodes.push(node.name);
      domainsOfGateway.get(place.name)!.add(domainOf(node));
      continue;
    }
    const unit: Unit = {
      key: place.key,
      name: node.name,
      solo: true,
      domain: domainOf(node),
      nodes: [node.name],
      candidates: [node.name],
    };
    if (place.problem) unit.problem = place.problem;
    units.set(place.key, unit);
  }
  for (const [name, domains] of domainsOfGateway) {
    const unit = units.get(gatewayKey(name))!;
    const list = [...domains].sort();
    unit.domain = list[0];
    if (list.length > 1) unit.problem = `Gateway ${name} spans domains ${list.join(", ")}; it serves ${list[0]}`;
  }
  return { units, unitOfNode };
}
