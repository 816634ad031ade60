// Tunnel mode's routing, as a pure function of facts: for one node (or the domain's active gateway), the
// VXLAN device toward the gateway, the routes for the other domains' pod CIDRs, and the MTUs. No I/O here;
// route-driver.ts applies the result. Also the inventory check that refuses overlapping pod CIDRs.
//
// Path of a packet from a pod behind node N (domain A) to a pod in domain B:
//   N --VXLAN over A's LAN--> gateway GA --IPsec/WireGuard over the underlay--> gateway GB --> pod
// VXLAN is terminated on GA before the VPN wraps the packet, so the two overheads never stack:
//   VXLAN device MTU  = underlay - 50                     (every VXLAN leg inside a domain)
//   cross-domain MTU  = min(underlay - 50, underlay - vpn) (the routes for remote pod CIDRs)
//
// Overheads (IPv4 underlay; the worst case, so the inner packet always fits one outer packet):
//   VXLAN     50 = outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
//   the VPN's: ../vpn/overhead.ts (ESP in UDP 65, WireGuard 80)
//
// Addresses on the VXLAN segment: each member gets 240.b.c.d/32 (from its LAN IP a.b.c.d; 240/4 is reserved
// and never routed) and a MAC 0e:52:<LAN IP in hex>; the driver pins both per peer (a permanent neighbour and
// a unicast FDB entry), so the segment never floods or ARPs (cf. openyurt#1893). Routes are installed with
// protocol RAVEN_ROUTE_PROTO so that the driver can find, replace and remove exactly its own routes.
import { TunnelError } from "../../shared/errors";
import { isIPv4 } from "../../shared/topology";
import { cidrsOverlap, parseCidr } from "../../shared/cidr";
import { MIN_IPV4_MTU } from "../vpn";

export const VXLAN_OVERHEAD_BYTES = 50;
/** Raven upstream's VXLAN device, kept for familiarity: raven0, VNI 200, UDP 4472. */
export const DEFAULT_VXLAN = Object.freeze({ name: "raven0", vni: 200, port: 4472 });
/** `ip route ... proto 82` marks the routes the route driver owns (82 = 'R'; unused by iproute2's table). */
export const RAVEN_ROUTE_PROTO = 82;

export const RouteRole = { Node: "node", Gateway: "gateway" } as const;
export type RouteRole = (typeof RouteRole)[keyof typeof RouteRole];

export type DomainNodeFacts = Readonly<{ lanIP: string; podCidrs: readonly string[] }>;

export type RouteInput = Readonly<{
  role: RouteRole;
  /** This node's IP on the domain LAN (the VXLAN endpoint). */
  localIP: string;
  /** The active gateway's LAN IP; equals localIP on the gateway. */
  gatewayIP: string;
  /** The domain's nodes with their pod CIDRs (this node included or not). The gateway routes them back. */
  localNodes: readonly DomainNodeFacts[];
  /** Pod CIDRs of every other domain. */
  remotePodCidrs: readonly string[];
  /** MTU of the underlay links (LAN and WAN). */
  underlayMtu: number;
  /** VpnDriver.overheadBytes of the tunnel between gateways. */
  vpnOverheadBytes: number;
  /**
   * Gateway only: VpnDriver.tunnelDev, the device remote pod CIDRs are routed into (kernel-libipsec's TUN,
   * WireGuard's interface). Null or left out when the VPN catches the traffic by itself (kernel XFRM policies).
   */
  tunnelDev?: string | null;
  vxlan?: Readonly<{ name?: string; vni?: number; port?: number }>;
}>;

export type VxlanPeer = Readonly<{ lanIP: string; mac: string; address: string }>;
export type VxlanDesired = Readonly<{
  name: string;
  vni: number;
  port: number;
  localIP: string;
  mac: string;
  /** This member's address on the segment (/32). */
  address: string;
  mtu: number;
  /** Node: the active gateway (the "remote"). Gateway: every other node of the domain. */
  peers: readonly VxlanPeer[];
}>;
export type RouteEntry = Readonly<{ dst: string; dev: string; via: string | null; mtu: number }>;
export type RouteDesired = Readonly<{
  vxlan: VxlanDesired;
  routes: readonly RouteEntry[];
  /** Nodes forward pod traffic into VXLAN, gateways between VXLAN and the tunnel. */
  forwarding: boolean;
  /** The MTU of the cross-domain path (for the CNI / pods). */
  pathMtu: number;
}>;

/** 240.b.c.d for LAN IP a.b.c.d. */
export function vxlanAddress(lanIP: string): string {
  return `240.${lanIP.split(".").slice(1).join(".")}`;
}

/** 0e:52:xx:xx:xx:xx (locally administered, unicast) from the LAN IP. */
export function vxlanMac(lanIP: string): string {
  return ["0e", "52", ...lanIP.split(".").map((o) => Number(o).toString(16).padStart(2, "0"))].join(":");
}

function member(lanIP: string): VxlanPeer {
  return { lanIP, mac: vxlanMac(lanIP), address: vxlanAddress(lanIP) };
}

const IFNAME = /^[a-zA-Z0-9_.-]{1,15}$/;

export function computeRoutes(input: RouteInput): RouteDesired {
  const { role, localIP, gatewayIP, underlayMtu, vpnOverheadBytes } = input;
  if (role !== RouteRole.Node && role !== RouteRole.Gateway)
    throw new TunnelError(`routes: role ${JSON.stringify(role)} must be node or gateway`);
  if (!isIPv4(localIP)) throw new TunnelError(`routes: localIP ${JSON.stringify(localIP)} is not an IPv4 address`);
  if (!isIPv4(gatewayIP))
    throw new TunnelError(`routes: gatewayIP ${JSON.stringify(gatewayIP)} is not an IPv4 address`);
  if (role === RouteRole.Node && localIP === gatewayIP)
    throw new TunnelError(`routes: node ${localIP} is the active gateway; compute its routes with role gateway`);
  if (role === RouteRole.Gateway && localIP !== gatewayIP)
    throw new TunnelError(`routes: gateway role, but localIP ${localIP} is not the active gateway ${gatewayIP}`);
  if (!Number.isInteger(underlayMtu) || underlayMtu < MIN_IPV4_MTU + VXLAN_OVERHEAD_BYTES || underlayMtu > 65535) {
    throw new TunnelError(
      `routes: underlayMtu ${JSON.stringify(underlayMtu)} must be an integer ${MIN_IPV4_MTU + VXLAN_OVERHEAD_BYTES}..65535`,
    );
  }
  if (!Number.isInteger(vpnOverheadBytes) || vpnOverheadBytes < 0 || underlayMtu - vpnOverheadBytes < MIN_IPV4_MTU) {
    throw new TunnelError(
      `routes: vpnOverheadBytes ${JSON.stringify(vpnOverheadBytes)} must be an integer >= 0 leaving at least ${MIN_IPV4_MTU} bytes of the ${underlayMtu}-byte underlay`,
    );
  }
  const name = input.vxlan?.name ?? DEFAULT_VXLAN.name;
  const vni = input.vxlan?.vni ?? DEFAULT_VXLAN.vni;
  const port = input.vxlan?.port ?? DEFAULT_VXLAN.port;
  if (!IFNAME.test(name)) throw new TunnelError(`routes: vxlan name ${JSON.stringify(name)} is not an interface name`);
  if (!Number.isInteger(vni) || vni < 1 || vni > 0xffffff)
    throw new TunnelError(`routes: vxlan vni ${vni} must be 1..16777215`);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new TunnelError(`routes: vxlan port ${port} must be 1..65535`);
  const tunnelDev = input.tunnelDev ?? undefined;
  if (tunnelDev !== undefined && (role !== RouteRole.Gateway || !IFNAME.test(tunnelDev))) {
    throw new TunnelError(
      `routes: tunnelDev ${JSON.stringify(input.tunnelDev)} is only for a gateway and must be an interface name`,
    );
  }

  const remote = normalizeCidrs(input.remotePodCidrs, "remotePodCidrs");
  const nodes = new Map<string, string[]>();
  for (const n of input.localNodes) {
    if (!isIPv4(n.lanIP))
      throw new TunnelError(`routes: localNodes: lanIP ${JSON.stringify(n.lanIP)} is not an IPv4 address`);
    if (nodes.has(n.lanIP)) throw new TunnelError(`routes: localNodes: ${n.lanIP} listed twice`);
    nodes.set(n.lanIP, normalizeCidrs(n.podCidrs, `localNodes ${n.lanIP} podCidrs`));
  }
  for (const [ip, cidrs] of nodes) {
    for (const c of cidrs) {
      const clash = remote.find((r) => cidrsOverlap(parseCidr(r), parseCidr(c)));
      if (clash) throw new TunnelError(`routes: local node ${ip} pod CIDR ${c} overlaps remote pod CIDR ${clash}`);
    }
  }

  const vxlanMtu = underlayMtu - VXLAN_OVERHEAD_BYTES;
  const pathMtu = Math.min(vxlanMtu, underlayMtu - vpnOverheadBytes);
  const self = member(localIP);
  const routes: RouteEntry[] = [];
  let peers: VxlanPeer[];
  if (role === RouteRole.Node) {
    const gw = member(gatewayIP);
    peers = [gw];
    for (const dst of remote) routes.push({ dst, dev: name, via: gw.address, mtu: pathMtu });
  } else {
    peers = [...nodes.keys()]
      .filter((ip) => ip !== localIP)
      .sort(byIp)
      .map(member);
    for (const p of peers)
      for (const dst of nodes.get(p.lanIP)!) routes.push({ dst, dev: name, via: p.address, mtu: vxlanMtu });
    if (tunnelDev !== undefined)
      for (const dst of remote) routes.push({ dst, dev: tunnelDev, via: null, mtu: pathMtu });
  }
  const byAddress = new Map<string, string>([[self.address, localIP]]);
  for (const p of peers) {
    const other = byAddress.get(p.address);
    if (other !== undefined)
      throw new TunnelError(`routes: LAN IPs ${other} and ${p.lanIP} map to the same VXLAN address ${p.address}`);
    byAddress.set(p.address, p.lanIP);
  }
  routes.sort((a, b) => byIp(a.dst.split("/")[0]!, b.dst.split("/")[0]!) || a.dst.localeCompare(b.dst));
  return {
    vxlan: { name, vni, port, localIP, mac: self.mac, address: self.address, mtu: vxlanMtu, peers },
    routes,
    forwarding: true,
    pathMtu,
  };
}

function byIp(a: string, b: string): number {
  const x = a.split(".").map(Number);
  const y = b.split(".").map(Number);
  for (let i = 0; i < 4; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return 0;
}

function normalizeCidrs(list: readonly string[], what: string): string[] {
  if (!Array.isArray(list)) throw new TunnelError(`routes: ${what} must be an array of CIDRs`);
  const out = new Set<string>();
  for (const c of list) {
    try {
      out.add(parseCidr(c).text);
    } catch (err) {
      throw new TunnelError(`routes: ${what}: ${(err as Error).message}`);
    }
  }
  return [...out];
}

export type { DomainPodCidrs } from "../../shared/pod-cidrs";
import type { DomainPodCidrs } from "../../shared/pod-cidrs";

/**
 * Undefined when no two domains' pod CIDRs overlap; otherwise one sentence per overlapping pair naming both
 * domains and CIDRs (joined with "; "), e.g. `pod CIDR 10.244.1.0/24 of domain factory overlaps 10.244.0.0/16
 * of domain shop`. Tunnel mode cannot route overlapping CIDRs (that would need NAT, cf. Submariner's
 * Globalnet), so the coordinator refuses them with this text as the status. Overlap inside one domain is the
 * CNI's business and not reported. A malformed CIDR is reported too.
 */
export function checkPodCidrOverlap(domains: readonly DomainPodCidrs[]): string | undefined {
  const problems: string[] = [];
  const parsed: { domain: string; text: string; start: number; end: number }[] = [];
  for (const d of domains) {
    for (const c of d.podCidrs) {
      try {
        parsed.push({ domain: d.domain, ...parseCidr(c) });
      } catch (err) {
        problems.push(`domain ${d.domain}: ${(err as Error).message}`);
      }
    }
  }
  for (let i = 0; i < parsed.length; i++) {
    for (let j = i + 1; j < parsed.length; j++) {
      const a = parsed[i]!;
      const b = parsed[j]!;
      if (a.domain !== b.domain && a.start <= b.end && b.start <= a.end) {
        problems.push(`pod CIDR ${a.text} of domain ${a.domain} overlaps ${b.text} of domain ${b.domain}`);
      }
    }
  }
  return problems.length > 0 ? problems.join("; ") : undefined;
}
