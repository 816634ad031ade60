// The latency probe of tunnel mode: one ICMP echo through the tunnel, between the network addresses of the
// first local and first remote pod CIDR. Those addresses are the gateways' anchors on `lo` (both VPN drivers
// keep them, see services/tunnel/anchors.ts), so the echo crosses exactly the tunnel the pods use, and is
// answered by the peer gateway itself.
import { execFile } from "node:child_process";
import { execInNs } from "../tunnel/exec";
import { anchorOf } from "../tunnel/anchors";
import type { VpnPeer } from "../tunnel";

const RTT = /time[=<]([\d.]+) ms/;

export function pingProbe(netns: string | undefined, timeoutSec = 1): (peer: VpnPeer) => Promise<number | null> {
  return (peer) => {
    const src = anchorOf(peer.localSubnets[0]!);
    const dst = anchorOf(peer.remoteSubnets[0]!);
    const [cmd, ...args] = execInNs(netns, ["ping", "-n", "-q", "-c", "1", "-W", String(timeoutSec), "-I", src, dst]);
    return new Promise((resolve) => {
      execFile(cmd!, args, { timeout: (timeoutSec + 2) * 1000 }, (err, stdout) => {
        if (err) return resolve(null);
        // -q prints "rtt min/avg/max/mdev = 0.512/0.512/0.512/0.000 ms"
        const m = /= ([\d.]+)\//.exec(stdout) ?? RTT.exec(stdout);
        resolve(m ? Number(m[1]) : null);
      });
    });
  };
}
