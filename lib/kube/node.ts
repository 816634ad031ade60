// A Node object read as Raven's node facts (labels, first InternalIP, podCIDR plus the extra allowed source
// CIDRs, Ready), and what an agent on that node learns from the cluster at start: its facts, and whether it is
// a gateway candidate (which Gateway lists it as an endpoint, or none: a node with no Gateway is its own).
import { endpointOwners, placeNode } from "../../shared/domains";
import { KubeApiError, type KubeClient } from "./client";
import { isKubeObject, isRecord, type KubeObject } from "./informer";

export type KubeNode = Readonly<{
  name: string;
  labels: Readonly<Record<string, string>>;
  /** The first InternalIP address ("" when the Node reports none). */
  internalIP: string;
  /** spec.podCIDR ("" when unset). */
  podCIDR: string;
  /** spec.podCIDR, then the annotation raven.openyurt.io/extra-allowed-source-cidrs (Gateway status.nodes). */
  subnets: readonly string[];
  /** Condition Ready is True. Informational: the election goes by heartbeats, never by NodeReady. */
  ready: boolean;
}>;

export const EXTRA_CIDRS_ANNOTATION = "raven.openyurt.io/extra-allowed-source-cidrs";
export const NODES_PATH = "/api/v1/nodes";
export const GATEWAYS_PATH = "/apis/raven.openyurt.io/v1beta1/gateways";

export function stringMap(o: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (isRecord(o)) for (const [k, v] of Object.entries(o)) if (typeof v === "string") out[k] = v;
  return out;
}

export function readNode(o: KubeObject): KubeNode {
  const spec = isRecord(o.spec) ? o.spec : {};
  const status = isRecord(o.status) ? o.status : {};
  const addresses = Array.isArray(status.addresses) ? status.addresses.filter(isRecord) : [];
  const internal = addresses.find((a) => a.type === "InternalIP" && typeof a.address === "string")?.address;
  const conditions = Array.isArray(status.conditions) ? status.conditions.filter(isRecord) : [];
  const extra = stringMap(o.metadata.annotations)[EXTRA_CIDRS_ANNOTATION] ?? "";
  const podCIDR = typeof spec.podCIDR === "string" ? spec.podCIDR : "";
  const subnets = [
    ...(podCIDR !== "" ? [podCIDR] : []),
    ...extra
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== ""),
  ];
  return {
    name: o.metadata.name,
    labels: stringMap(o.metadata.labels),
    internalIP: typeof internal === "string" ? internal : "",
    podCIDR,
    subnets,
    ready: conditions.some((c) => c.type === "Ready" && c.status === "True"),
  };
}

/** This node as its Node object says. */
export async function fetchNode(client: KubeClient, name: string): Promise<KubeNode> {
  const path = `${NODES_PATH}/${encodeURIComponent(name)}`;
  const o = await client.request("GET", path);
  if (!isKubeObject(o)) throw new KubeApiError(200, "BadResponse", `GET ${path}: the answer is not a Node object`);
  return readNode(o);
}

/**
 * The Gateway this node is a candidate of, given the cluster's Gateway objects: the one listing it as an
 * endpoint, or its own solo unit when no Gateway serves it. Null when a Gateway serves it without listing it
 * (a member, not a candidate). Gateway objects are read leniently here (names and endpoint node names only):
 * validating them is the coordinator's job.
 */
export function candidacyOf(
  node: Pick<KubeNode, "name" | "labels">,
  gatewayObjects: readonly unknown[],
): { gateway: string; solo: boolean } | null {
  const gateways = gatewayObjects.filter(isRecord).flatMap((g) => {
    const meta = isRecord(g.metadata) ? g.metadata : {};
    const spec = isRecord(g.spec) ? g.spec : {};
    if (typeof meta.name !== "string") return [];
    const endpoints = (Array.isArray(spec.endpoints) ? spec.endpoints : [])
      .filter(isRecord)
      .flatMap((e) => (typeof e.nodeName === "string" ? [{ nodeName: e.nodeName }] : []));
    return [{ metadata: { name: meta.name }, spec: { endpoints } }];
  });
  const owners = endpointOwners(gateways);
  const place = placeNode(node, new Set(gateways.map((g) => g.metadata.name)), owners);
  if (place.solo) return { gateway: node.name, solo: true };
  return owners.get(node.name) === place.name ? { gateway: place.name, solo: false } : null;
}
