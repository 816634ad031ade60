// The VPN drivers a deployment can choose between (`--tunnel-driver`), and what the routes need to know of
// each without constructing one: the per-packet overhead (path MTU) and the device remote pod CIDRs are
// routed into on the gateway (null: strongSwan's charon routes them itself, in table 220, with
// kernel-libipsec; the kernel's XFRM policies catch them otherwise).
import { ConfigError } from "../../shared/errors";
import { IPSEC_OVERHEAD_BYTES, WIREGUARD_OVERHEAD_BYTES } from "./routes";
import { kernelHasEsp, strongSwanOverheadBytes } from "./strongswan";

export const TunnelDriverName = { StrongSwan: "strongswan", WireGuard: "wireguard" } as const;
export type TunnelDriverName = (typeof TunnelDriverName)[keyof typeof TunnelDriverName];

export const WIREGUARD_DEVICE = "raven-wg0";

export const TUNNEL_DRIVERS: Readonly<Record<TunnelDriverName, Readonly<{ overheadBytes: number; tunnelDev: string | null }>>> = {
  strongswan: { overheadBytes: IPSEC_OVERHEAD_BYTES, tunnelDev: null },
  wireguard: { overheadBytes: WIREGUARD_OVERHEAD_BYTES, tunnelDev: WIREGUARD_DEVICE },
};

/** Parses `--tunnel-driver`; a ConfigError names the flag and the choices. */
export function tunnelDriverFlag(value: unknown): TunnelDriverName {
  if (value === TunnelDriverName.StrongSwan || value === TunnelDriverName.WireGuard) return value;
  throw new ConfigError("--tunnel-driver", `must be "strongswan" or "wireguard", got ${JSON.stringify(value)}`);
}

/**
 * What the routes must leave for the VPN on an underlay of `underlayMtu`, as a gateway of this kind will
 * have it. strongSwan without kernel ESP runs kernel-libipsec, whose TUN has a fixed MTU of 1400: the path
 * can carry no more than that whatever the underlay allows. (Nodes ask this of their own kernel, assuming
 * their gateways' kernels are alike, which holds for one machine image.)
 */
export function vpnOverheadFor(driver: TunnelDriverName, underlayMtu: number, kernelEsp: boolean = kernelHasEsp()): number {
  if (driver === TunnelDriverName.WireGuard) return WIREGUARD_OVERHEAD_BYTES;
  return strongSwanOverheadBytes(underlayMtu, kernelEsp);
}
