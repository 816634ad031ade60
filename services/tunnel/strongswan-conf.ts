// The pure half of the strongSwan driver: what to write into strongswan.conf (the daemon) and swanctl.conf
// (connections and the PSK), and how to read `swanctl --list-sas --pretty`. No I/O here; strongswan.ts runs it.
//
// Choices, and why:
// - IKEv2, PSK auth, `encap = yes`: ESP always in UDP 4500 (NAT-T) even without NAT, as Raven upstream's
//   forceencaps, so one firewall rule covers every gateway and the kernel-libipsec path is the same as the
//   NAT path. IKE aes128gcm16-prfsha256-x25519 (OpenSSL provides X25519 here), ESP aes128gcm16: AEAD, no
//   separate integrity algorithm, supported by kernel ESP and by libipsec alike.
// - One connection per peer with all subnets as traffic selectors (upstream makes one conn per subnet pair).
// - The initiator keeps the tunnel up by itself between applies (keyingtries 0 = forever, DPD restart,
//   close_action start); the responder clears dead SAs and waits.
// - The PSK is written as hex (0x…) so that no byte of it can break the file's syntax.
import { RavenError, ErrorCode } from "../../shared/errors";
import { initiates, type VpnPeer } from "./vpn-driver";

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
 * The connection section of one peer (also the unit of change: a peer whose section differs is re-keyed).
 * It is the same whichever side initiates: charon neither retries nor restarts on its own (keyingtries 1,
 * DPD clears, a close stays closed). Keeping the tunnel up is the caller's level-triggered job — apply again
 * and a peer without SA is initiated — so that a standby gateway can preload exactly the section it will
 * run once active, and taking over costs one initiation and no reload.
 */
export function renderConnection(p: VpnPeer): string {
  return [
    `  ${p.name} {`,
    "    version = 2",
    `    local_addrs = ${p.localAddr}`,
    `    remote_addrs = ${p.remoteAddr}`,
    "    encap = yes",
    `    proposals = ${IKE_PROPOSALS}`,
    "    dpd_delay = 10s",
    "    keyingtries = 1",
    "    local {",
    "      auth = psk",
    `      id = ${p.localAddr}`,
    "    }",
    "    remote {",
    "      auth = psk",
    `      id = ${p.remoteAddr}`,
    "    }",
    "    children {",
    `      ${p.name} {`,
    `        local_ts = ${p.localSubnets.join(",")}`,
    `        remote_ts = ${p.remoteSubnets.join(",")}`,
    `        esp_proposals = ${ESP_PROPOSALS}`,
    "        start_action = none",
    "        dpd_action = clear",
    "        close_action = none",
    "      }",
    "    }",
    "  }",
  ].join("\n");
}

export function renderSwanctlConf(peers: readonly VpnPeer[], psk: Buffer): string {
  const secret = `0x${psk.toString("hex")}`;
  const out = ["# Written by Raven's strongSwan driver (contains the PSK: mode 0600).", "connections {"];
  for (const p of peers) out.push(renderConnection(p));
  out.push("}", "secrets {");
  for (const p of peers) {
    out.push(`  ike-${p.name} {`, `    id-local = ${p.localAddr}`, `    id-remote = ${p.remoteAddr}`, `    secret = ${secret}`, "  }");
  }
  out.push("}", "");
  return out.join("\n");
}

// --- swanctl --list-sas --pretty -------------------------------------------------------------------------

export type ViciValue = string | string[] | ViciSection;
export interface ViciSection {
  [key: string]: ViciValue;
}

/**
 * Parses swanctl's `--pretty` dump of vici messages (sections `name {`…`}`, `key = value`, lists
 * `key = [`…`]`) into one section per message, in order. Lines outside any message are ignored.
 */
export function parseViciPretty(text: string): { name: string; body: ViciSection }[] {
  const messages: { name: string; body: ViciSection }[] = [];
  const stack: ViciSection[] = [];
  let list: string[] | null = null;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    if (list) {
      if (line === "]") list = null;
      else list.push(line);
      continue;
    }
    const open = /^(.+?)\s*\{$/.exec(line);
    if (open) {
      const section: ViciSection = {};
      if (stack.length === 0) messages.push({ name: open[1]!, body: section });
      else stack[stack.length - 1]![open[1]!] = section;
      stack.push(section);
      continue;
    }
    if (line === "}") {
      stack.pop();
      continue;
    }
    if (stack.length === 0) continue;
    const kv = /^(\S+)\s*=\s*(.*)$/.exec(line);
    if (!kv) throw new RavenError(ErrorCode.Malformed, `swanctl output: unexpected line ${JSON.stringify(line)}`);
    if (kv[2] === "[") {
      list = [];
      stack[stack.length - 1]![kv[1]!] = list;
    } else {
      stack[stack.length - 1]![kv[1]!] = kv[2]!;
    }
  }
  return messages;
}

export type ChildSaInfo = Readonly<{ name: string; uniqueId: string; state: string; bytesIn: number; bytesOut: number }>;
export type IkeSaInfo = Readonly<{ name: string; uniqueId: string; state: string; children: readonly ChildSaInfo[] }>;

const str = (v: ViciValue | undefined): string => (typeof v === "string" ? v : "");
const num = (v: ViciValue | undefined): number => (typeof v === "string" && /^\d+$/.test(v) ? Number(v) : 0);

/** The IKE SAs (with their CHILD SAs) in `swanctl --list-sas --pretty` output. */
export function parseListSas(text: string): IkeSaInfo[] {
  const out: IkeSaInfo[] = [];
  for (const m of parseViciPretty(text)) {
    if (m.name !== "list-sa event") continue;
    for (const [name, v] of Object.entries(m.body)) {
      if (typeof v !== "object" || Array.isArray(v)) continue;
      const childSas = v["child-sas"];
      const children: ChildSaInfo[] = [];
      if (childSas && typeof childSas === "object" && !Array.isArray(childSas)) {
        for (const c of Object.values(childSas)) {
          if (typeof c !== "object" || Array.isArray(c)) continue;
          children.push({ name: str(c.name), uniqueId: str(c.uniqueid), state: str(c.state), bytesIn: num(c["bytes-in"]), bytesOut: num(c["bytes-out"]) });
        }
      }
      out.push({ name, uniqueId: str(v.uniqueid), state: str(v.state), children });
    }
  }
  return out;
}
