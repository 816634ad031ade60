// Tunnel mode's half of the network-namespace plan (pure, like netns-plan.ts): every node gets a namespace of
// its own — its host network — and a "pod" namespace behind it, so that VXLAN, routes and the IPsec tunnel
// are built per node exactly as on real machines. The control-plane processes stay where netns-plan.ts puts
// them; the node and gateway actors act on their node's namespace through `ip netns exec`.
//
// Layout, for a domain with namespace D (netns-plan.ts) and prefix P:
//   D: bridge `tlan` — the domain's LAN. Node k (sorted by name) plugs in with veth `n<k>` <-> `eth0`.
//   node namespace `P.<node>`: eth0 with the node's InternalIP/32 and a /32 route to every other node of the
//     domain (an L2 segment with no assumed subnet); a gateway candidate also has `wan0` (veth `P t<g>` in
//     the root namespace, a port of the underlay bridge) with an underlay address of its own (the tunnel
//     endpoint, apart from the proxy listeners' addresses on D's wan0) and the default route.
//   pod namespace `P:<node>` (when the node has a podCIDR): eth0 with the CIDR's .10 (or .2 in a tiny one),
//     default route via the CIDR's .1 on the node's `pod0`.
// `.` and `:` never occur in a domain namespace's name (`P-<label>`), so the three kinds never collide.
import { createHash } from "node:crypto";
import { NetnsError } from "../../shared/errors";

export type HostInput = Readonly<{ name: string; internalIP: string; candidate: boolean; podCIDR?: string }>;

export type NodeHost = Readonly<{
  node: string;
  /** The node's host-network namespace. */
  ns: string;
  lanIP: string;
  /** Gateway candidates: the tunnel endpoint's underlay address (on wan0) and its root veth end. */
  underlayIP?: string;
  hostVeth?: string;
  /** Nodes with a podCIDR: the pod namespace, the pod's address and its default gateway (on pod0). */
  podNs?: string;
  podCidr?: string;
  podIP?: string;
  podGatewayIP?: string;
}>;

export const NODE_LAN_IF = "eth0";
export const NODE_WAN_IF = "wan0";
export const NODE_POD_IF = "pod0";
export const DOMAIN_LAN_BRIDGE = "tlan";
/** Namespace names are file names in /run/netns; long node names are cut and made unique with a hash. */
const MAX_NS_NAME = 200;

function nsFor(prefix: string, sep: "." | ":", node: string): string {
  const name = `${prefix}${sep}${node}`;
  if (name.length <= MAX_NS_NAME) return name;
  const hash = createHash("sha256").update(node).digest("hex").slice(0, 8);
  return `${name.slice(0, MAX_NS_NAME - 9)}-${hash}`;
}

export const nodeNsName = (prefix: string, node: string): string => nsFor(prefix, ".", node);
export const podNsName = (prefix: string, node: string): string => nsFor(prefix, ":", node);
export const tunnelVethName = (prefix: string, index: number): string => `${prefix}t${index}`;

const toInt = (ip: string) => ip.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
const toIp = (n: number) => [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join(".");

function podAddresses(cidr: string, where: string): { podIP: string; podGatewayIP: string; prefixLen: number } {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d+)$/.exec(cidr);
  const prefixLen = Number(m?.[2]);
  if (!m || prefixLen > 30)
    throw new NetnsError(
      `${where}: podCIDR ${JSON.stringify(cidr)} must be an IPv4 CIDR of /30 or wider (a pod and its gateway)`,
    );
  const size = 2 ** (32 - prefixLen);
  const base = Math.floor(toInt(m[1]!) / size) * size;
  return { podGatewayIP: toIp(base + 1), podIP: toIp(base + (size > 16 ? 10 : 2)), prefixLen };
}

/**
 * The hosts of one domain. `nextUnderlay` hands out underlay addresses (netns-plan.ts's counter) and
 * `nextVeth` root veth indexes, both unique across the plan.
 */
export function planHosts(
  prefix: string,
  domain: string,
  nodes: readonly HostInput[],
  nextUnderlay: () => string,
  nextVeth: () => number,
): NodeHost[] {
  return [...nodes]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((n) => {
      const where = `domain ${domain}: node ${n.name}`;
      const pod = n.podCIDR ? podAddresses(n.podCIDR, where) : undefined;
      return {
        node: n.name,
        ns: nodeNsName(prefix, n.name),
        lanIP: n.internalIP,
        ...(n.candidate ? { underlayIP: nextUnderlay(), hostVeth: tunnelVethName(prefix, nextVeth()) } : {}),
        ...(pod
          ? { podNs: podNsName(prefix, n.name), podCidr: n.podCIDR!, podIP: pod.podIP, podGatewayIP: pod.podGatewayIP }
          : {}),
      };
    });
}

/** The `ip` commands that build a domain's hosts (after its namespace D and the underlay bridge exist). */
export function hostCommands(
  domainNs: string,
  hosts: readonly NodeHost[],
  bridge: string,
  hostIP: string,
): { argv: string[] }[] {
  const cmds: { argv: string[] }[] = [];
  const inNs = (ns: string, ...argv: string[]) => cmds.push({ argv: ["-n", ns, ...argv] });
  const root = (...argv: string[]) => cmds.push({ argv });
  inNs(domainNs, "link", "add", DOMAIN_LAN_BRIDGE, "type", "bridge");
  inNs(domainNs, "link", "set", DOMAIN_LAN_BRIDGE, "up");
  hosts.forEach((h, k) => {
    root("netns", "add", h.ns);
    inNs(h.ns, "link", "set", "lo", "up");
    inNs(domainNs, "link", "add", `n${k}`, "type", "veth", "peer", "name", NODE_LAN_IF, "netns", h.ns);
    inNs(domainNs, "link", "set", `n${k}`, "master", DOMAIN_LAN_BRIDGE);
    inNs(domainNs, "link", "set", `n${k}`, "up");
    inNs(h.ns, "addr", "add", `${h.lanIP}/32`, "dev", NODE_LAN_IF);
    inNs(h.ns, "link", "set", NODE_LAN_IF, "up");
    for (const other of hosts) if (other !== h) inNs(h.ns, "route", "add", `${other.lanIP}/32`, "dev", NODE_LAN_IF);
    if (h.underlayIP && h.hostVeth) {
      root("link", "add", h.hostVeth, "type", "veth", "peer", "name", NODE_WAN_IF, "netns", h.ns);
      root("link", "set", h.hostVeth, "master", bridge);
      root("link", "set", h.hostVeth, "up");
      inNs(h.ns, "addr", "add", `${h.underlayIP}/24`, "dev", NODE_WAN_IF);
      inNs(h.ns, "link", "set", NODE_WAN_IF, "up");
      inNs(h.ns, "route", "add", "default", "via", hostIP, "dev", NODE_WAN_IF);
    }
    if (h.podNs && h.podCidr && h.podIP && h.podGatewayIP) {
      const len = h.podCidr.split("/")[1]!;
      root("netns", "add", h.podNs);
      inNs(h.podNs, "link", "set", "lo", "up");
      inNs(h.ns, "link", "add", NODE_POD_IF, "type", "veth", "peer", "name", "eth0", "netns", h.podNs);
      inNs(h.ns, "addr", "add", `${h.podGatewayIP}/${len}`, "dev", NODE_POD_IF);
      inNs(h.ns, "link", "set", NODE_POD_IF, "up");
      inNs(h.podNs, "addr", "add", `${h.podIP}/${len}`, "dev", "eth0");
      inNs(h.podNs, "link", "set", "eth0", "up");
      inNs(h.podNs, "route", "add", "default", "via", h.podGatewayIP);
    }
  });
  return cmds;
}
