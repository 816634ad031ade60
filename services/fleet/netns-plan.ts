// The pure half of the per-domain network namespaces: from a fleet's domains, which namespaces, links and
// addresses to create (`planNetns`), the exact `ip` commands that build them (`netnsCommands`), and which
// names belong to a prefix (so teardown and reaping never touch anything else). No I/O here; netns.ts runs it.
//
// Layout, for prefix P and subnet index I:
//   root namespace: bridge `Pbr` with 198.18.I.1/24 (RFC 2544 benchmarking range, never routed anywhere)
//   per domain k (sorted by name): namespace `P-<domain>`, veth `Phk` (root end, bridge port) <-> `wan0`
//     inside; `lo` up; `lan0` carrying every node's internalIP/32 (so internal IPs may repeat across
//     domains); on wan0 one 198.18.I.n/24 per gateway candidate (or one for a domain with none), n from 10
//     upward, unique across the plan; default route via 198.18.I.1.
//   tunnel mode adds a namespace per node and per pod (netns-hosts.ts), with more addresses from the counter.
// The plan is deterministic: the same input (in any order) yields the same names and addresses.
import { createHash } from "node:crypto";
import { NetnsError } from "../../shared/errors";
import { isIPv4 } from "../../shared/topology";
import { hostCommands, planHosts, type NodeHost } from "./netns-hosts";

export type NetnsNodeInput = Readonly<{ name: string; internalIP: string; candidate: boolean; podCIDR?: string }>;
export type NetnsInput = Readonly<{
  prefix: string;
  subnetIndex: number;
  /** Tunnel mode: a host-network namespace per node and a pod namespace behind it (netns-hosts.ts). */
  tunnel?: boolean;
  domains: readonly Readonly<{ domain: string; nodes: readonly NetnsNodeInput[] }>[];
}>;

export type DomainNetns = Readonly<{
  domain: string;
  /** Network namespace name (`ip netns`), `<prefix>-<domain>` or a hashed form when the domain is unusual. */
  ns: string;
  /** Root-namespace end of the veth pair, a port of the bridge. The other end is `wan0` in `ns`. */
  hostVeth: string;
  /** Gateway-candidate node -> its underlay address (no prefix length) on wan0. */
  underlayIPs: Readonly<Record<string, string>>;
  /** Where the domain is reached on the underlay: its first candidate's address, or its own when it has none. */
  domainIP: string;
  /** Every underlay address on wan0 in the order added (the first one is the primary/source address). */
  wanIPs: readonly string[];
  /** Node -> internal IP (no prefix length) on lan0. */
  lanIPs: Readonly<Record<string, string>>;
  /** Tunnel mode only (else empty): each node's own namespaces, sorted by node name. */
  hosts: readonly NodeHost[];
}>;

export type NetnsPlan = Readonly<{
  prefix: string;
  subnetIndex: number;
  bridge: string;
  /** The bridge's address: the domains' default gateway and how the root namespace reaches them. */
  hostIP: string;
  subnet: string;
  domains: readonly DomainNetns[];
}>;

/** One `ip` invocation; `fallback` is tried when the kernel lacks the link type (see netns.ts). */
export type IpCommand = Readonly<{ argv: readonly string[]; fallback?: readonly string[] }>;

export const IFNAMSIZ_MAX = 15;
export const UNDERLAY_FIRST_HOST = 10;
export const UNDERLAY_LAST_HOST = 250;
export const WAN_IF = "wan0";
export const LAN_IF = "lan0";

const PREFIX = /^[a-z][a-z0-9]{1,10}$/;
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/;

export function isNetnsPrefix(prefix: unknown): prefix is string {
  return typeof prefix === "string" && PREFIX.test(prefix);
}

export function assertNetnsPrefix(prefix: unknown): asserts prefix is string {
  if (!isNetnsPrefix(prefix)) {
    throw new NetnsError(
      `prefix ${JSON.stringify(prefix)}: must be a lowercase letter then 1-10 of [a-z0-9] (interface names stay within ${IFNAMSIZ_MAX} chars)`,
    );
  }
}

export const bridgeName = (prefix: string): string => `${prefix}br`;
export const hostVethName = (prefix: string, index: number): string => `${prefix}h${index}`;

/** `<prefix>-<domain>` for a DNS-label domain; otherwise a sanitized, truncated form plus a hash of the name. */
export function nsName(prefix: string, domain: string): string {
  if (DNS_LABEL.test(domain)) return `${prefix}-${domain}`;
  const safe = domain.replace(/[^a-zA-Z0-9_.-]/g, "_").slice(0, 24);
  const hash = createHash("sha256").update(domain).digest("hex").slice(0, 8);
  return `${prefix}-${safe}-${hash}`;
}

/** True for a namespace this prefix created: a domain's `P-…`, a node's `P.…` or a pod's `P:…`. */
export function ownsNs(prefix: string, ns: string): boolean {
  return ns.startsWith(`${prefix}-`) || ns.startsWith(`${prefix}.`) || ns.startsWith(`${prefix}:`);
}

/** True for a root-namespace link this prefix created (the bridge and the host veth ends, nothing else). */
export function ownsLink(prefix: string, ifname: string): boolean {
  if (!ifname.startsWith(prefix)) return false;
  return /^(br|h\d+|t\d+)$/.test(ifname.slice(prefix.length));
}

function ipToInt(ip: string): number {
  return ip.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
}

/** Why an internal IP cannot go on lan0, or undefined. */
function lanIPProblem(ip: string, subnetIndex: number): string | undefined {
  if (!isIPv4(ip)) return "is not an IPv4 address";
  const first = Number(ip.split(".")[0]);
  if (first === 0 || first === 127 || first >= 224)
    return "is not a unicast host address (0/8, 127/8 and 224/3 are reserved)";
  if (ip.startsWith(`198.18.${subnetIndex}.`)) return `lies in the underlay subnet 198.18.${subnetIndex}.0/24`;
  return undefined;
}

export function planNetns(input: NetnsInput): NetnsPlan {
  const { prefix, subnetIndex } = input;
  assertNetnsPrefix(prefix);
  if (!Number.isInteger(subnetIndex) || subnetIndex < 0 || subnetIndex > 255) {
    throw new NetnsError(`subnetIndex ${JSON.stringify(subnetIndex)}: must be an integer 0..255`);
  }
  const base = `198.18.${subnetIndex}`;
  const seenDomains = new Set<string>();
  const seenNs = new Map<string, string>();
  for (const d of input.domains) {
    if (typeof d.domain !== "string" || d.domain === "")
      throw new NetnsError(`domain ${JSON.stringify(d.domain)}: must be a non-empty name`);
    if (seenDomains.has(d.domain)) throw new NetnsError(`domain ${d.domain}: listed twice`);
    seenDomains.add(d.domain);
    const ns = nsName(prefix, d.domain);
    const clash = seenNs.get(ns);
    if (clash !== undefined) throw new NetnsError(`domains ${clash} and ${d.domain}: both map to namespace ${ns}`);
    seenNs.set(ns, d.domain);
  }
  const sorted = [...input.domains].sort((a, b) => (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : 0));
  const candidates = (d: (typeof sorted)[number]) => d.nodes.filter((n) => n.candidate).length;
  const needed = sorted.reduce((sum, d) => sum + Math.max(1, candidates(d)) + (input.tunnel ? candidates(d) : 0), 0);
  const capacity = UNDERLAY_LAST_HOST - UNDERLAY_FIRST_HOST + 1;
  if (needed > capacity) {
    throw new NetnsError(
      `too many underlay addresses: the domains need ${needed} (one per gateway candidate${input.tunnel ? " and another for its tunnel" : ""}, one per domain without), ${base}.0/24 holds ${capacity} (.${UNDERLAY_FIRST_HOST}-.${UNDERLAY_LAST_HOST})`,
    );
  }
  let next = UNDERLAY_FIRST_HOST;
  let nextVeth = 0;
  const domains = sorted.map((d, index): DomainNetns => {
    const nodes = [...d.nodes].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const lanIPs: Record<string, string> = {};
    const ipOwner = new Map<string, string>();
    for (const n of nodes) {
      if (typeof n.name !== "string" || n.name === "")
        throw new NetnsError(`domain ${d.domain}: node name ${JSON.stringify(n.name)} must be non-empty`);
      if (Object.hasOwn(lanIPs, n.name)) throw new NetnsError(`domain ${d.domain}: node ${n.name} listed twice`);
      const problem = lanIPProblem(n.internalIP, subnetIndex);
      if (problem)
        throw new NetnsError(
          `domain ${d.domain}: node ${n.name} internalIP ${JSON.stringify(n.internalIP)} ${problem}`,
        );
      const other = ipOwner.get(n.internalIP);
      if (other !== undefined)
        throw new NetnsError(
          `domain ${d.domain}: nodes ${other} and ${n.name} share internalIP ${n.internalIP} (IPs may repeat only across domains)`,
        );
      ipOwner.set(n.internalIP, n.name);
      lanIPs[n.name] = n.internalIP;
    }
    const underlayIPs: Record<string, string> = {};
    const wanIPs: string[] = [];
    for (const n of nodes.filter((x) => x.candidate)) {
      underlayIPs[n.name] = `${base}.${next++}`;
      wanIPs.push(underlayIPs[n.name]!);
    }
    if (wanIPs.length === 0) wanIPs.push(`${base}.${next++}`);
    const hosts = input.tunnel
      ? planHosts(
          prefix,
          d.domain,
          nodes,
          () => `${base}.${next++}`,
          () => nextVeth++,
        )
      : [];
    return {
      domain: d.domain,
      ns: nsName(prefix, d.domain),
      hostVeth: hostVethName(prefix, index),
      underlayIPs,
      domainIP: wanIPs[0]!,
      wanIPs,
      lanIPs,
      hosts,
    };
  });
  const bridge = bridgeName(prefix);
  for (const name of [bridge, ...domains.flatMap((d) => [d.hostVeth, ...d.hosts.flatMap((h) => h.hostVeth ?? [])])]) {
    if (name.length > IFNAMSIZ_MAX)
      throw new NetnsError(
        `interface name ${name} is longer than ${IFNAMSIZ_MAX} chars; use a shorter prefix than ${prefix}`,
      );
  }
  return { prefix, subnetIndex, bridge, hostIP: `${base}.1`, subnet: `${base}.0/24`, domains };
}

/** The `ip` commands that build `plan`, in order. Each is safe to undo with destroyNetns(plan.prefix). */
export function netnsCommands(plan: NetnsPlan): IpCommand[] {
  const { bridge, hostIP } = plan;
  const cmds: IpCommand[] = [
    { argv: ["link", "add", bridge, "type", "bridge"] },
    { argv: ["addr", "add", `${hostIP}/24`, "dev", bridge] },
    { argv: ["link", "set", bridge, "up"] },
  ];
  for (const d of plan.domains) {
    const inNs = (...argv: string[]): IpCommand => ({ argv: ["-n", d.ns, ...argv] });
    cmds.push(
      { argv: ["netns", "add", d.ns] },
      inNs("link", "set", "lo", "up"),
      // The peer is created directly in the namespace under its final name: nothing transient in the root.
      { argv: ["link", "add", d.hostVeth, "type", "veth", "peer", "name", WAN_IF, "netns", d.ns] },
      { argv: ["link", "set", d.hostVeth, "master", bridge] },
      { argv: ["link", "set", d.hostVeth, "up"] },
      {
        argv: ["-n", d.ns, "link", "add", LAN_IF, "type", "dummy"],
        fallback: ["-n", d.ns, "link", "add", LAN_IF, "type", "ifb"],
      },
      inNs("link", "set", LAN_IF, "up"),
      ...Object.values(d.lanIPs).map((ip) => inNs("addr", "add", `${ip}/32`, "dev", LAN_IF)),
      ...d.wanIPs.map((ip) => inNs("addr", "add", `${ip}/24`, "dev", WAN_IF)),
      inNs("link", "set", WAN_IF, "up"),
      inNs("route", "add", "default", "via", hostIP, "dev", WAN_IF),
    );
    if (d.hosts.length > 0) cmds.push(...hostCommands(d.ns, d.hosts, bridge, hostIP));
  }
  return cmds;
}

/** Subnet indexes i whose 198.18.i.0/24 overlaps an IPv4 address/prefix in `ip -j addr` output. */
export function usedSubnetIndexes(ipAddrJson: unknown): Set<number> {
  const used = new Set<number>();
  if (!Array.isArray(ipAddrJson)) return used;
  const lo = ipToInt("198.18.0.0");
  const hi = ipToInt("198.18.255.255");
  for (const link of ipAddrJson) {
    const infos = (link as { addr_info?: unknown })?.addr_info;
    if (!Array.isArray(infos)) continue;
    for (const a of infos as { family?: unknown; local?: unknown; prefixlen?: unknown }[]) {
      if (a.family !== "inet" || !isIPv4(a.local) || typeof a.prefixlen !== "number") continue;
      const size = 2 ** (32 - a.prefixlen);
      const start = Math.floor(ipToInt(a.local) / size) * size;
      const end = start + size - 1;
      if (end < lo || start > hi) continue;
      const from = (Math.max(start, lo) - lo) >>> 8;
      const to = (Math.min(end, hi) - lo) >>> 8;
      for (let i = from; i <= to; i++) used.add(i);
    }
  }
  return used;
}

/** The first free index at or after `start`, wrapping around; undefined when all 256 are taken. */
export function pickSubnetIndex(used: ReadonlySet<number>, start: number): number | undefined {
  for (let k = 0; k < 256; k++) {
    const i = (start + k) % 256;
    if (!used.has(i)) return i;
  }
  return undefined;
}
