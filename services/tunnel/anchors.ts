// A gateway's anchors: the network address of each local pod CIDR as a /32 on `lo`, labelled `lo:raven`. They
// give the gateway itself an address inside its pod CIDRs (never a pod's: IPAM starts at .1), which
//  - kernel-libipsec requires before it installs a CHILD_SA's route ("error installing route with policy"
//    when the local subnet holds no address of this host, the normal case for a gateway);
//  - the latency probe (services/gateway-actor/tunnel-probe.ts) pings from and to, with either VPN driver, so
//    that the echo crosses exactly the tunnel the pods use and the peer gateway itself answers.
// ensureAnchors is idempotent: it makes the labelled addresses equal the wanted set and touches nothing else.
import { intToIp, parseCidr } from "./cidr";
import { inNs, runOk, type Runner } from "./exec";

export const ANCHOR_LABEL = "lo:raven";

/** The anchor address of a pod CIDR: its network address. */
export const anchorOf = (cidr: string): string => intToIp(parseCidr(cidr).start);

/** Makes the `lo:raven` /32 addresses in `netns` equal the anchors of `subnets` (none: removes them all). */
export async function ensureAnchors(run: Runner, netns: string | undefined, subnets: readonly string[]): Promise<void> {
  const want = new Set(subnets.map((c) => `${anchorOf(c)}/32`));
  const out = await runOk(run, inNs(netns, "ip", "-j", "addr", "show", "dev", "lo"));
  const infos = ((JSON.parse(out || "[]") as { addr_info?: { family?: string; local?: string; prefixlen?: number; label?: string }[] }[])[0]?.addr_info ?? [])
    .filter((a) => a.family === "inet" && a.label === ANCHOR_LABEL);
  const have = new Set(infos.map((a) => `${a.local}/${a.prefixlen}`));
  for (const a of want) if (!have.has(a)) await runOk(run, inNs(netns, "ip", "addr", "add", a, "dev", "lo", "label", ANCHOR_LABEL));
  for (const a of have) if (!want.has(a)) await runOk(run, inNs(netns, "ip", "addr", "del", a, "dev", "lo"));
}
