// The edge-tunnel-nodes hosts map (OpenYurt's gateway-dns ConfigMap, DNS mode): which address the cloud
// dials for each node name. One home for its format: the coordinator writes it to Kubernetes, `raven hosts`
// prints it from the KV records.

/** A node as the hosts map needs it. */
export type HostsNode = Readonly<{ name: string; internalIP: string }>;

/**
 * The edge-tunnel-nodes hosts map, as OpenYurt's gateway-dns controller writes it: a line `<ip>\t<name>` for
 * every node, the lines sorted, joined by newlines; with the proxy on (`modes.l7`), edge nodes map to the proxy's address
 * (the cloud reaches them through it, by name), cloud nodes to their InternalIP. Null while the proxy is on
 * but its address is not known yet: OpenYurt then writes InternalIPs, which for edge nodes are addresses in
 * other networks (and may collide); keeping the last map written is the safer choice.
 */
export function hostsMap<N extends HostsNode>(
  nodes: readonly N[],
  /** Is this node in the cloud (its pool a Cloud NodePool, or its Gateway exposed): reached at its own address. */
  isCloud: (node: N) => boolean,
  modes: Readonly<{ l7: boolean }>,
  proxyAddress: string | undefined,
): string | null {
  if (modes.l7 && !proxyAddress && nodes.some((n) => !isCloud(n))) return null;
  const lines: string[] = [];
  for (const n of nodes) {
    const ip = modes.l7 && !isCloud(n) ? proxyAddress! : n.internalIP;
    if (ip) lines.push(`${ip}\t${n.name}`);
  }
  return lines.sort().join("\n");
}
