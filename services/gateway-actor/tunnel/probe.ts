// The latency probe of tunnel mode: one ICMP echo through the tunnel, between the network addresses of the
// first local and first remote pod CIDR. Those addresses are the gateways' anchors on `lo` (both VPN drivers
// keep them, see lib/vpn/anchors.ts), so the echo crosses exactly the tunnel the pods use, and is
// answered by the peer gateway's kernel. The echo leaves a raw socket opened inside the gateway's namespace
// (lib/kernel/netlink.ts Pinger): no process per probe.
import { Pinger } from "../../../lib/kernel";
import { anchorOf, type VpnPeer } from "../../../lib/vpn";

export type TunnelProbe = ((peer: VpnPeer) => Promise<number | null>) & { close(): void };

export function pingProbe(netns: string | undefined, timeoutMs = 1_000): TunnelProbe {
  const pinger = new Pinger(netns);
  const probe = (peer: VpnPeer) =>
    pinger.ping(anchorOf(peer.localSubnets[0]!), anchorOf(peer.remoteSubnets[0]!), timeoutMs).catch(() => null);
  return Object.assign(probe, { close: () => pinger.close() });
}
