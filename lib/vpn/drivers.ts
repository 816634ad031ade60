// The VPN drivers a deployment can choose between (`--tunnel-driver`), and what the routes need to know of
// each without constructing one: the per-packet overhead (path MTU) and the device remote pod CIDRs are
// routed into on the gateway (null: strongSwan's charon routes them itself, in table 220, with
// kernel-libipsec; the kernel's XFRM policies catch them otherwise).
import { ConfigError } from "../../shared/errors";
import { WIREGUARD_OVERHEAD_BYTES } from "./overhead";
import { kernelHasEsp, strongSwanOverheadBytes } from "./strongswan-host";

export const TunnelDriverName = { StrongSwan: "strongswan", WireGuard: "wireguard" } as const;
export type TunnelDriverName = (typeof TunnelDriverName)[keyof typeof TunnelDriverName];

export const WIREGUARD_DEVICE = "raven-wg0";

/** The device each driver's gateways route remote pod CIDRs into (the per-packet overhead: vpnOverheadFor). */
export const TUNNEL_DRIVERS: Readonly<Record<TunnelDriverName, Readonly<{ tunnelDev: string | null }>>> = {
  strongswan: { tunnelDev: null },
  wireguard: { tunnelDev: WIREGUARD_DEVICE },
};

/** Parses `--tunnel-driver`; a ConfigError names the flag and the choices. */
export function tunnelDriverFlag(value: unknown): TunnelDriverName {
  if (value === TunnelDriverName.StrongSwan || value === TunnelDriverName.WireGuard) return value;
  throw new ConfigError("--tunnel-driver", `must be "strongswan" or "wireguard", got ${JSON.stringify(value)}`);
}

/** Parses `--tunnel-underlay-mtu` (the node and the gateway actor both take it); a ConfigError names the flag. */
export function underlayMtuFlag(value: unknown): number {
  const mtu = Number(value);
  if (!Number.isInteger(mtu) || mtu < 1280 || mtu > 65535) {
    throw new ConfigError("--tunnel-underlay-mtu", `${JSON.stringify(value)} must be an integer 1280..65535`);
  }
  return mtu;
}

/**
 * What the routes must leave for the VPN on an underlay of `underlayMtu`, as a gateway of this kind will
 * have it. strongSwan without kernel ESP runs kernel-libipsec, whose TUN has a fixed MTU of 1400: the path
 * can carry no more than that whatever the underlay allows. (Nodes ask this of their own kernel, assuming
 * their gateways' kernels are alike, which holds for one machine image.)
 */
export function vpnOverheadFor(
  driver: TunnelDriverName,
  underlayMtu: number,
  kernelEsp: boolean = kernelHasEsp(),
): number {
  if (driver === TunnelDriverName.WireGuard) return WIREGUARD_OVERHEAD_BYTES;
  return strongSwanOverheadBytes(underlayMtu, kernelEsp);
}
