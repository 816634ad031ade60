// The contract every VPN driver of tunnel mode keeps (strongSwan, WireGuard, the fake): a gateway says which
// peer gateways it wants tunnels to, and the driver makes it so.
//
// Guarantees a driver gives:
// - `apply(desired)` is idempotent and level-triggered: the same desired state twice changes nothing (no
//   reload, no re-keying); peers missing from `desired` are torn down; a peer that is down is (re)initiated.
//   It returns the status after applying; a peer that could not be brought up is reported, not thrown.
//   It throws only when the driver as a whole cannot work (invalid desired state, missing binaries, a daemon
//   that does not start) — then nothing about the peers is known.
// - `status()` reads the live state (never a cached copy of what was applied).
// - `cleanup()` removes everything the driver made (daemons, devices, files); idempotent.
// Drivers are constructed by the caller and passed in explicitly; nothing registers itself on import.
import { TunnelError } from "../../shared/errors";
import { isObjectName } from "../../shared/protocol/subjects";
import { isIPv4 } from "../../shared/topology";
import { ipToInt, parseCidr } from "../../shared/cidr";

export type VpnPeer = Readonly<{
  /** Unique among the peers; [a-z0-9-], 1-32 chars (it names connections, files and devices). */
  name: string;
  /** This gateway's underlay address the tunnel uses. */
  localAddr: string;
  /** The peer gateway's underlay address (its public IP when it is behind NAT). */
  remoteAddr: string;
  /** Pod CIDRs reached through this gateway (its own domain's). */
  localSubnets: readonly string[];
  /** Pod CIDRs of the peer's domain. */
  remoteSubnets: readonly string[];
  /**
   * Whether this side starts the exchange. Exactly one side should: the one behind NAT must. Default: the side
   * with the numerically lower underlay address, so two gateways given mirrored peers agree without talking.
   */
  initiate?: boolean;
  /**
   * The peer gateway's node name: its identity, from which WireGuard derives its public key (see
   * wireguard-conf.ts); strongSwan ignores it. A DNS subdomain name, like every node name.
   */
  remoteNode?: string;
}>;

export type VpnDesired = Readonly<{ peers: readonly VpnPeer[] }>;

export const PeerState = { Up: "up", Connecting: "connecting", Down: "down" } as const;
export type PeerState = (typeof PeerState)[keyof typeof PeerState];

export type VpnPeerStatus = Readonly<{
  name: string;
  state: PeerState;
  /** An opaque id of the current security association; a new one means the tunnel was re-established. */
  saId: string | null;
  /** Payload bytes through the tunnel's current SAs, when the driver can count them. */
  bytesIn: number | null;
  bytesOut: number | null;
  lastError: string | null;
}>;

export type VpnStatus = Readonly<{ driver: string; peers: readonly VpnPeerStatus[] }>;

export interface VpnDriver {
  readonly name: string;
  /** Bytes the tunnel adds to every packet, worst case (see routes.ts for the arithmetic). */
  readonly overheadBytes: number;
  /**
   * The device remote pod CIDRs must be routed into (kernel-libipsec's TUN, WireGuard's interface), or null
   * when the driver catches the traffic itself (kernel XFRM policies). The route driver installs the routes.
   */
  readonly tunnelDev: string | null;
  apply(desired: VpnDesired): Promise<VpnStatus>;
  status(): Promise<VpnStatus>;
  cleanup(): Promise<void>;
}

const PEER_NAME = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;

/** Whether this side initiates for `peer` (see VpnPeer.initiate). */
export function initiates(peer: VpnPeer): boolean {
  return peer.initiate ?? ipToInt(peer.localAddr) < ipToInt(peer.remoteAddr);
}

/** Throws a TunnelError naming the peer and field when `desired` is not a valid desired state. */
export function validateVpnDesired(desired: VpnDesired): void {
  if (!desired || !Array.isArray(desired.peers)) throw new TunnelError("vpn desired state: peers must be an array");
  const seen = new Set<string>();
  for (const p of desired.peers) {
    const where = `vpn peer ${JSON.stringify(p?.name)}`;
    if (typeof p?.name !== "string" || !PEER_NAME.test(p.name))
      throw new TunnelError(`${where}: name must be 1-32 of [a-z0-9-], not starting or ending with '-'`);
    if (seen.has(p.name)) throw new TunnelError(`${where}: listed twice`);
    seen.add(p.name);
    if (!isIPv4(p.localAddr))
      throw new TunnelError(`${where}: localAddr ${JSON.stringify(p.localAddr)} is not an IPv4 address`);
    if (!isIPv4(p.remoteAddr))
      throw new TunnelError(`${where}: remoteAddr ${JSON.stringify(p.remoteAddr)} is not an IPv4 address`);
    if (p.localAddr === p.remoteAddr)
      throw new TunnelError(`${where}: localAddr and remoteAddr are both ${p.localAddr}`);
    for (const key of ["localSubnets", "remoteSubnets"] as const) {
      const list = p[key];
      if (!Array.isArray(list) || list.length === 0)
        throw new TunnelError(`${where}: ${key} must list at least one CIDR`);
      for (const c of list) {
        try {
          parseCidr(c);
        } catch (err) {
          throw new TunnelError(`${where}: ${key}: ${(err as Error).message}`);
        }
      }
    }
    if (p.initiate !== undefined && typeof p.initiate !== "boolean")
      throw new TunnelError(`${where}: initiate must be a boolean`);
    if (p.remoteNode !== undefined && !isObjectName(p.remoteNode)) {
      throw new TunnelError(
        `${where}: remoteNode ${JSON.stringify(p.remoteNode)} must be a node name (a DNS subdomain name)`,
      );
    }
  }
}
