// A node's facts as the coordinator stores them in the hub's `raven_nodes` bucket (JSON, key = node name):
// what the node registered plus the domain it was placed in. Read by the coordinator and by gateways, which
// resolve node names to InternalIPs inside their own domain.
import type { NodeFacts } from "./domains";
import { isObjectName } from "./protocol";

export type NodeRecord = NodeFacts & { domain: string; registeredAt: number };

export function parseNodeRecord(raw: unknown, key: string): NodeRecord {
  const r = raw as Partial<NodeRecord> | null;
  if (!r || typeof r !== "object" || !isObjectName(r.name) || r.name !== key || typeof r.domain !== "string") {
    throw new Error(`node record ${key} is malformed`);
  }
  return {
    name: r.name,
    labels: (r.labels ?? {}) as Record<string, string>,
    internalIP: String(r.internalIP ?? ""),
    ...(r.podCIDR ? { podCIDR: String(r.podCIDR) } : {}),
    domain: r.domain,
    registeredAt: Number(r.registeredAt ?? 0),
  };
}
