// A gateway's anchors: the network address of each local pod CIDR as a /32 on `lo`, labelled `lo:raven`. They
// give the gateway itself an address inside its pod CIDRs (never a pod's: IPAM starts at .1), which
//  - kernel-libipsec requires before it installs a CHILD_SA's route ("error installing route with policy"
//    when the local subnet holds no address of this host, the normal case for a gateway);
//  - the latency probe (services/gateway-actor/tunnel/probe.ts) pings from and to, with either VPN driver, so
//    that the echo crosses exactly the tunnel the pods use and the peer gateway itself answers.
// ensureAnchors is idempotent (an address already there, whatever its label, is replaced, not refused) and
// costs one netlink dump when nothing is to change: it makes the labelled addresses equal the wanted set and
// touches nothing else.
import { TunnelError } from "../../shared/errors";
import { intToIp, parseCidr } from "../../shared/cidr";
import { linkNamed, type KernelNet } from "../kernel";

export const ANCHOR_LABEL = "lo:raven";

/** The anchor address of a pod CIDR: its network address. */
export const anchorOf = (cidr: string): string => intToIp(parseCidr(cidr).start);

/** Makes the `lo:raven` /32 addresses of `net` equal the anchors of `subnets` (none: removes them all). */
export function ensureAnchors(net: KernelNet, subnets: readonly string[]): void {
  const lo = linkNamed(net, "lo");
  if (!lo) throw new TunnelError(`anchors: no loopback device in ${net.netns ?? "this namespace"}`);
  const want = new Set(subnets.map(anchorOf));
  const have = net.addrs().filter((a) => a.index === lo.index && a.prefixLen === 32 && a.label === ANCHOR_LABEL);
  for (const a of want) if (!have.some((h) => h.address === a)) net.replaceAddr(lo.index, a, 32, ANCHOR_LABEL);
  for (const h of have) if (!want.has(h.address)) net.delAddr(lo.index, h.address, 32);
}
