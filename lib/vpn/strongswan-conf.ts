// The pure half of the strongSwan driver: what to write into strongswan.conf (the daemon), the vici messages
// that load a peer's connection and PSK, and how to read vici's list-sas events. No I/O here; strongswan.ts
// runs it.
//
// Choices, and why:
// - IKEv2, PSK auth, `encap = yes`: ESP always in UDP 4500 (NAT-T) even without NAT, as Raven upstream's
//   forceencaps, so one firewall rule covers every gateway and the kernel-libipsec path is the same as the
//   NAT path. IKE aes128gcm16-prfsha256-x25519 (OpenSSL provides X25519 here), ESP aes128gcm16: AEAD, no
//   separate integrity algorithm, supported by kernel ESP and by libipsec alike.
// - One connection per peer with all subnets as traffic selectors (upstream makes one conn per subnet pair).
// - charon keeps nothing up on its own (keyingtries 1, DPD clears, a close stays closed): the caller applies
//   again and the initiating side initiates a peer without SA (see connectionMessage).
// - The PSK travels as raw bytes in a vici value and is never written to a file by the driver.
import type { ViciMessage, ViciSection } from "./vici";
import type { VpnPeer } from "./vpn-driver";

export const IKE_PROPOSALS = "aes128gcm16-prfsha256-x25519";
export const ESP_PROPOSALS = "aes128gcm16";

export type CharonConfInput = Readonly<{
  /** Unix socket path of this charon's vici. */
  viciSocket: string;
  logFile: string;
  /** Userspace ESP on a TUN device (kernel-libipsec) instead of the kernel's XFRM ESP. */
  libipsec: boolean;
  ikePort: number;
  natPort: number;
}>;

const PLUGINS = "random nonce openssl aes sha1 sha2 hmac gcm kdf pem pkcs1 x509 pubkey";

export function renderStrongswanConf(c: CharonConfInput): string {
  // kernel-libipsec before kernel-netlink: the first registered IPsec backend wins, kernel-netlink still
  // provides routes and addresses.
  const kernel = c.libipsec ? "kernel-libipsec kernel-netlink" : "kernel-netlink";
  return [
    "# Written by Raven's strongSwan driver; regenerated on every start.",
    "charon {",
    `  load = ${PLUGINS} ${kernel} socket-default vici`,
    `  port = ${c.ikePort}`,
    `  port_nat_t = ${c.natPort}`,
    "  install_virtual_ip = no",
    "  plugins {",
    "    vici {",
    `      socket = unix://${c.viciSocket}`,
    "    }",
    "  }",
    "  filelog {",
    "    raven {",
    `      path = ${c.logFile}`,
    "      time_format = %Y-%m-%dT%H:%M:%S",
    "      default = 1",
    "      ike = 1",
    "    }",
    "  }",
    "}",
    "",
  ].join("\n");
}

/**
 * The load-conn message of one peer (also the unit of change: a peer whose message differs is re-keyed).
 * It is the same whichever side initiates: charon neither retries nor restarts on its own (keyingtries 1,
 * DPD clears, a close stays closed). Keeping the tunnel up is the caller's level-triggered job — apply again
 * and a peer without SA is initiated — so that a standby gateway can preload exactly the connection it will
 * run once active, and taking over costs one initiation and no reload. (swanctl.conf(5) names every key.)
 */
export function connectionMessage(p: VpnPeer): ViciSection {
  return {
    [p.name]: {
      version: "2",
      local_addrs: [p.localAddr],
      remote_addrs: [p.remoteAddr],
      encap: "yes",
      proposals: [IKE_PROPOSALS],
      dpd_delay: "10s",
      keyingtries: "1",
      local: { auth: "psk", id: p.localAddr },
      remote: { auth: "psk", id: p.remoteAddr },
      children: {
        [p.name]: {
          local_ts: [...p.localSubnets],
          remote_ts: [...p.remoteSubnets],
          esp_proposals: [ESP_PROPOSALS],
          start_action: "none",
          dpd_action: "clear",
          close_action: "none",
        },
      },
    },
  };
}

/** The id under which a peer's PSK is loaded (load-shared / unload-shared). */
export const sharedKeyId = (peerName: string) => `ike-${peerName}`;

/** The load-shared message of one peer's PSK: the raw key, owned by both gateways' identities. */
export function sharedKeyMessage(p: VpnPeer, psk: Buffer): ViciSection {
  return { id: sharedKeyId(p.name), type: "IKE", data: psk, owners: [p.localAddr, p.remoteAddr] };
}

// --- list-sas -----------------------------------------------------------------------------------------

export type ChildSaInfo = Readonly<{
  name: string;
  uniqueId: string;
  state: string;
  bytesIn: number;
  bytesOut: number;
  /** The traffic selectors the SA was negotiated with (the intersection of both sides' configurations). */
  localTs: readonly string[];
  remoteTs: readonly string[];
}>;
export type IkeSaInfo = Readonly<{ name: string; uniqueId: string; state: string; children: readonly ChildSaInfo[] }>;

const str = (v: ViciMessage[string] | undefined): string => (typeof v === "string" ? v : "");
const num = (v: ViciMessage[string] | undefined): number => (typeof v === "string" && /^\d+$/.test(v) ? Number(v) : 0);
const isSection = (v: ViciMessage[string] | undefined): v is ViciMessage => typeof v === "object" && !Array.isArray(v);
const list = (v: ViciMessage[string] | undefined): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : typeof v === "string" ? [v] : [];

/** The IKE SAs (with their CHILD SAs) in the list-sa events that vici's list-sas streams. */
export function ikeSasOf(events: readonly ViciMessage[]): IkeSaInfo[] {
  const out: IkeSaInfo[] = [];
  for (const e of events) {
    for (const [name, v] of Object.entries(e)) {
      if (!isSection(v)) continue;
      const childSas = v["child-sas"];
      const children: ChildSaInfo[] = [];
      if (isSection(childSas)) {
        for (const c of Object.values(childSas)) {
          if (!isSection(c)) continue;
          children.push({
            name: str(c.name),
            uniqueId: str(c.uniqueid),
            state: str(c.state),
            bytesIn: num(c["bytes-in"]),
            bytesOut: num(c["bytes-out"]),
            localTs: list(c["local-ts"]),
            remoteTs: list(c["remote-ts"]),
          });
        }
      }
      out.push({ name, uniqueId: str(v.uniqueid), state: str(v.state), children });
    }
  }
  return out;
}

/**
 * The configured subnets an installed CHILD SA does not cover, as "local a, remote b" (empty when it covers
 * them all). An SA is negotiated with the intersection of both sides' selectors: one set up while the other
 * gateway still had an older view of a domain's pod CIDRs (a node that joined a moment before) carries less
 * than either side now wants, and charon keeps it so. Compared as charon prints them (canonical CIDRs). A
 * child listed with no selectors at all (a charon that does not report them) counts as covering: unknown is
 * no reason to tear an SA down.
 */
export function uncoveredSubnets(
  child: ChildSaInfo,
  localSubnets: readonly string[],
  remoteSubnets: readonly string[],
): string {
  if (child.localTs.length === 0 && child.remoteTs.length === 0) return "";
  const missing = (want: readonly string[], have: readonly string[]) => want.filter((c) => !have.includes(c));
  const local = missing(localSubnets, child.localTs);
  const remote = missing(remoteSubnets, child.remoteTs);
  return [
    ...(local.length ? [`local ${local.join(" ")}`] : []),
    ...(remote.length ? [`remote ${remote.join(" ")}`] : []),
  ].join(", ");
}
