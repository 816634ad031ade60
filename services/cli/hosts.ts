// `raven hosts`: the hosts file of Raven's DNS mode, from the KV records: the same map the coordinator writes
// to ConfigMap edge-tunnel-nodes with Kubernetes (shared/hosts-map.ts): every node of every Gateway record,
// edge ones at the address of the proxy's name-routed listeners (so the kube-apiserver, or anything in the
// cloud, reaching `nodeName:10250` lands on the cloud gateway, which routes by SNI/Host), cloud ones (of
// exposed Gateways) at their own address. Solo nodes are edge nodes.
import { type Gateway } from "../../shared/gateway";
import { hostsMap, type HostsNode } from "../../shared/hosts-map";

export function hostsFile(records: readonly Gateway[], address: string): string {
  const nodes = new Map<string, HostsNode>();
  const cloud = new Set<string>();
  for (const gw of records)
    for (const n of gw.status.nodes) {
      nodes.set(n.nodeName, { name: n.nodeName, internalIP: n.privateIP });
      if (gw.spec.exposeType !== "") cloud.add(n.nodeName);
    }
  const map = hostsMap([...nodes.values()], (n) => cloud.has(n.name), { l7: true }, address) ?? "";
  const edge = nodes.size - cloud.size;
  return `# Raven: ${edge} edge nodes -> proxy ${address}, ${cloud.size} cloud nodes at their own address (raven hosts)\n${map}\n`;
}
