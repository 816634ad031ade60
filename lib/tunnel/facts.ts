// Tunnel mode's view of the fleet, as a pure function of the Gateway records and node records (the hub's KV,
// via shared/directory.ts): per domain, its active tunnel endpoint with the term that fences it, its nodes
// with their LAN IPs and pod CIDRs, and whether tunnel mode refuses it (overlapping pod CIDRs). From that
// view, `vpnPeersOf` gives an active gateway its VPN peers and `routeInputOf` gives any node its RouteInput.
// No I/O; the gateway's TunnelManager and the node's RouteAgent apply the results.
//
// Rules:
// - A domain's address on the underlay is its active tunnel endpoint's publicIP, else its node's InternalIP.
// - A domain whose record carries `tunnelProblem` gets no tunnels, and no one routes its pod CIDRs: the CIDRs
//   are ambiguous. Proxy mode keeps serving its nodes (it routes by name).
// - Who initiates: the side behind NAT when only one is (the other cannot reach it), else the lower address
//   (vpn-driver.ts `initiates`), so both sides decide alike without talking.
import type { Endpoint, Gateway } from "../../shared/gateway";
import type { NodeRecord } from "../../shared/node-record";
import { parseCidr } from "../../shared/cidr";
import type { RouteInput } from "../vxlan";
import type { VpnPeer } from "../vpn";

export type TunnelNode = Readonly<{ name: string; lanIP: string; podCidrs: readonly string[] }>;
export type TunnelEndpoint = Readonly<{ node: string; addr: string; underNAT: boolean; lanIP: string | null }>;
export type TunnelDomain = Readonly<{
  domain: string;
  /** The Gateway record's name (the node's own name for a solo node). */
  gateway: string;
  term: number;
  active: TunnelEndpoint | null;
  /** Every tunnel endpoint of the spec (the active one included), in spec order. */
  candidates: readonly TunnelEndpoint[];
  nodes: readonly TunnelNode[];
  problem: string | null;
}>;

/** One entry per domain that some record serves, sorted by domain name. */
export function tunnelDomains(records: Iterable<Gateway>, nodes: ReadonlyMap<string, NodeRecord>): TunnelDomain[] {
  const out = new Map<string, TunnelDomain>();
  for (const gw of records) {
    const members = gw.status.nodes.map((n) => nodes.get(n.nodeName)).filter((n): n is NodeRecord => n !== undefined);
    const domain = members[0]?.domain;
    if (domain === undefined || out.has(domain)) continue;
    const endpoint = (ep: Endpoint | undefined): TunnelEndpoint | null => {
      const n = ep ? nodes.get(ep.nodeName) : undefined;
      const addr = ep?.publicIP ?? n?.internalIP;
      return ep && addr ? { node: ep.nodeName, addr, underNAT: ep.underNAT, lanIP: n?.internalIP ?? null } : null;
    };
    out.set(domain, {
      domain,
      gateway: gw.metadata.name,
      term: gw.status.term,
      active: endpoint(gw.status.activeEndpoints.find((e) => e.type === "tunnel")),
      candidates: gw.spec.endpoints
        .filter((e) => e.type === "tunnel")
        .map(endpoint)
        .filter((e): e is TunnelEndpoint => e !== null),
      nodes: members
        .filter((n) => n.domain === domain)
        .map((n) => ({ name: n.name, lanIP: n.internalIP, podCidrs: n.podCIDR ? [n.podCIDR] : [] }))
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
      problem: gw.status.tunnelProblem ?? null,
    });
  }
  return [...out.values()].sort((a, b) => (a.domain < b.domain ? -1 : 1));
}

/** A domain's pod CIDRs (only well-formed ones: a malformed CIDR is the inventory check's to report). */
export function podCidrsOf(d: TunnelDomain): string[] {
  const out: string[] = [];
  for (const n of d.nodes) {
    for (const c of n.podCidrs) {
      try {
        out.push(parseCidr(c).text);
      } catch {
        // reported as the record's tunnelProblem
      }
    }
  }
  return [...new Set(out)];
}

/** VPN peer names are connection, file and device names: [a-z0-9-], at most 32. A domain is a DNS label. */
export function peerNameOf(domain: string): string {
  return domain.length <= 32 ? domain : domain.slice(0, 32).replace(/-+$/, "");
}

export type PeerPlan = Readonly<{ peer: VpnPeer; domain: string; node: string; term: number }>;

/**
 * The VPN peers of `self` when it is its domain's active tunnel endpoint: every other domain with an active
 * endpoint, pod CIDRs and no tunnel problem. Empty when `self` is not that endpoint or its own domain is
 * refused. `localAddr` is self's underlay address (what the peers know it by: the endpoint's address).
 * With `standby`, a candidate that is not active gets the peers it would have if it were, none of them to
 * initiate: what it preloads so that taking over costs one initiation (strongswan-conf.ts connectionMessage).
 */
export function vpnPeersOf(
  domains: readonly TunnelDomain[],
  self: Readonly<{ domain: string; node: string }>,
  opts: Readonly<{ standby?: boolean }> = {},
): PeerPlan[] {
  const mine = domains.find((d) => d.domain === self.domain);
  if (!mine || mine.problem !== null) return [];
  const me =
    mine.active?.node === self.node
      ? mine.active
      : opts.standby
        ? mine.candidates.find((c) => c.node === self.node)
        : undefined;
  if (!me) return [];
  const standby = me !== mine.active;
  const localSubnets = podCidrsOf(mine);
  if (localSubnets.length === 0) return [];
  const plans: PeerPlan[] = [];
  for (const d of domains) {
    if (d === mine || d.problem !== null || d.active === null) continue;
    const remoteSubnets = podCidrsOf(d);
    if (remoteSubnets.length === 0 || d.active.addr === me.addr) continue;
    const natOnlyOne = me.underNAT !== d.active.underNAT;
    plans.push({
      domain: d.domain,
      node: d.active.node,
      term: d.term,
      peer: {
        name: peerNameOf(d.domain),
        localAddr: me.addr,
        remoteAddr: d.active.addr,
        localSubnets,
        remoteSubnets,
        remoteNode: d.active.node,
        ...(standby ? { initiate: false } : natOnlyOne ? { initiate: me.underNAT } : {}),
      },
    });
  }
  return plans;
}

/**
 * The RouteInput of node `self` (null when its domain has no active tunnel endpoint on its LAN yet, or the
 * node has no LAN IP in the view): role gateway on the active endpoint's node, node elsewhere.
 */
export function routeInputOf(
  domains: readonly TunnelDomain[],
  self: Readonly<{ domain: string; node: string }>,
  link: Readonly<{ underlayMtu: number; vpnOverheadBytes: number; tunnelDev?: string | null }>,
): RouteInput | null {
  const mine = domains.find((d) => d.domain === self.domain);
  const me = mine?.nodes.find((n) => n.name === self.node);
  if (!mine || !me || !mine.active?.lanIP) return null;
  const isGateway = mine.active.node === self.node;
  const remote =
    mine.problem !== null
      ? []
      : domains.filter((d) => d !== mine && d.problem === null && d.active !== null).flatMap(podCidrsOf);
  return {
    role: isGateway ? "gateway" : "node",
    localIP: me.lanIP,
    gatewayIP: mine.active.lanIP,
    localNodes: mine.nodes.map((n) => ({ lanIP: n.lanIP, podCidrs: podCidrsOf({ ...mine, nodes: [n] }) })),
    remotePodCidrs: remote,
    underlayMtu: link.underlayMtu,
    vpnOverheadBytes: link.vpnOverheadBytes,
    ...(isGateway && link.tunnelDev ? { tunnelDev: link.tunnelDev } : {}),
  };
}
