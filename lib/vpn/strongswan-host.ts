// What this host offers strongSwan, apart from any driver: the Debian packages and plugin paths the driver
// needs (checked before charon starts, with a message naming the packages), whether the kernel has ESP, and
// the per-packet cost of the tunnel either way (kernel ESP, or kernel-libipsec's fixed-size TUN).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MissingDependencyError } from "../../shared/errors";
import { IPSEC_OVERHEAD_BYTES } from "./overhead";

export const STRONGSWAN_PACKAGES = [
  "strongswan-charon",
  "strongswan-swanctl",
  "libcharon-extra-plugins",
  "libstrongswan-standard-plugins",
] as const;
export const DEFAULT_CHARON = "/usr/lib/ipsec/charon";
/** charon's vici plugin (Debian ships it with strongswan-swanctl). */
export const VICI_PLUGIN = "/usr/lib/ipsec/plugins/libstrongswan-vici.so";
export const LIBIPSEC_PLUGIN = "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so";
/** strongSwan 5.9's kernel-libipsec TUN MTU (TUN_DEFAULT_MTU), not configurable. */
export const LIBIPSEC_TUN_MTU = 1400;
/** kernel-libipsec's TUN device. */
export const LIBIPSEC_TUN = "ipsec0";

/**
 * The per-packet cost of strongSwan's tunnel on an underlay of `underlayMtu`: the ESP-in-UDP overhead with
 * kernel ESP; without it, kernel-libipsec's TUN (fixed at 1400) caps the path, whatever the underlay allows.
 */
export function strongSwanOverheadBytes(underlayMtu: number, kernelEsp: boolean): number {
  return kernelEsp
    ? IPSEC_OVERHEAD_BYTES
    : underlayMtu - Math.min(LIBIPSEC_TUN_MTU, underlayMtu - IPSEC_OVERHEAD_BYTES);
}

/** Whether this kernel has XFRM ESP for IPv4 (module loaded, built in, or installed). */
export function kernelHasEsp(): boolean {
  if (existsSync("/sys/module/esp4")) return true;
  try {
    const release = readFileSync("/proc/sys/kernel/osrelease", "utf8").trim();
    for (const f of ["modules.builtin", "modules.dep"]) {
      const p = join("/lib/modules", release, f);
      if (existsSync(p) && /(^|\/)esp4\.ko/m.test(readFileSync(p, "utf8"))) return true;
    }
  } catch {
    // no module information: assume no kernel ESP
  }
  return false;
}

/** Throws MissingDependencyError naming the Debian packages when charon, its vici plugin or (if needed) libipsec are missing. */
export function checkStrongSwanInstalled(
  paths: Readonly<{ charon?: string; vici?: string; libipsec?: boolean }> = {},
): void {
  const charon = paths.charon ?? DEFAULT_CHARON;
  const vici = paths.vici ?? VICI_PLUGIN;
  if (!existsSync(charon))
    throw new MissingDependencyError(charon, STRONGSWAN_PACKAGES, "strongSwan's IKE daemon is not installed");
  if (!existsSync(vici))
    throw new MissingDependencyError(
      vici,
      STRONGSWAN_PACKAGES,
      "strongSwan's vici plugin (the driver's control socket) is not installed",
    );
  if (paths.libipsec && !existsSync(LIBIPSEC_PLUGIN)) {
    throw new MissingDependencyError(
      LIBIPSEC_PLUGIN,
      STRONGSWAN_PACKAGES,
      "this kernel has no ESP, and strongSwan's kernel-libipsec plugin is not installed",
    );
  }
}
