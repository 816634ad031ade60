// The pure half of the WireGuard driver: key derivation, the peer plan a desired state asks for, the UAPI
// messages (wireguard-go's control socket: the reply to `get`, the lines of `set`), and the difference between what runs and what is wanted. No processes, no files.
//
// Keys without key distribution: every gateway's X25519 private key is derived from the tunnel PSK (the same
// secret file strongSwan uses) and its node name,
//   private = clamp(HKDF-SHA256(ikm = psk, salt = "raven-wireguard-v1", info = node name, 32 bytes)),
// so any gateway that holds the PSK computes a peer's public key from the peer's node name alone. The price:
// whoever holds the PSK can impersonate every gateway, exactly as with strongSwan's shared PSK, and rotating
// the PSK rotates every key at once (apply sees a new private key and new peer keys and replaces them).
// On top, every peer gets a WireGuard preshared key (HKDF with its own salt, the same for all pairs): it mixes
// the PSK into each handshake as well, so recorded traffic stays safe even against a future break of X25519.
//
// Diff guarantees: a live peer whose key, preshared key, allowed IPs or keepalive differ from the plan is
// set again (one UAPI `set` for all of them); a live peer not in the plan is removed, after the sets (make before
// break: WireGuard moves an allowed IP to the last peer that claims it). The endpoint is enforced only
// where this side initiates (see VpnPeer.initiate); the other side sets it once, when the peer has none,
// and afterwards leaves it to WireGuard's roaming, so a peer behind NAT keeps its translated address.
//
// One side initiates (VpnPeer.initiate), as the VpnDriver contract asks: only that side gets the persistent
// keepalive, which is what starts a handshake the moment a peer is configured and every keepaliveSec while
// there is no session. With a keepalive on both sides, two gateways that configure each other in the same
// instant (both react to the same record change) send initiations that cross; each answers the other's,
// which discards its own, and each drops the other's answer. Their keepalive timers, started together and
// without jitter, then repeat the collision every 5 s. Measured here on pairs configured at the same instant:
// with a keepalive on both sides, 10 rounds of 10 had no session after 3 s (the collision repeated for 15 s
// and more), and in a fleet a half-made session lost one direction for 13-17 s.
// The other side answers at once. It initiates once itself (uapiNudge) only when no handshake came within
// RESPONDER_NUDGE_MS of adding the peer: the initiator configured first, its initiation found no peer here,
// and WireGuard would retry only 5 s later (11 rounds of 40 without the nudge; with it, 0 of 80, the
// slowest 573 ms with stress-ng --cpu 2 beside).
import { createPrivateKey, createPublicKey, hkdfSync } from "node:crypto";
import { TunnelError } from "../../shared/errors";
import { cidrsOverlap, parseCidr } from "../../shared/cidr";
import { initiates, type VpnPeer } from "./vpn-driver";

export const WIREGUARD_KEY_SALT = "raven-wireguard-v1";
export const WIREGUARD_PSK_SALT = "raven-wireguard-v1-preshared";
/** Keepalive of every peer this side initiates to: keeps NAT mappings open and makes a dead peer visible within seconds. */
export const PERSISTENT_KEEPALIVE_SEC = 5;
/** How long the responding side waits for the initiator's handshake before it initiates once itself. */
export const RESPONDER_NUDGE_MS = 500;
/** WireGuard's Reject-After-Time: a session with no handshake for this long carries no data any more. */
export const HANDSHAKE_FRESH_SEC = 180;
// PKCS#8 header of a raw X25519 private key (RFC 8410): Node 20 cannot import a JWK without its public `x`.
const PKCS8_X25519_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");

export type WireGuardKeyPair = Readonly<{ privateKey: string; publicKey: string }>;

/** The key pair of gateway `node` under `psk` (base64, as `wg` reads and prints keys). Deterministic. */
export function wireguardKeyPair(psk: Buffer, node: string): WireGuardKeyPair {
  if (psk.length === 0) throw new TunnelError("wireguard: the pre-shared key is empty");
  if (node === "") throw new TunnelError("wireguard: node name is empty");
  const k = Buffer.from(hkdfSync("sha256", psk, WIREGUARD_KEY_SALT, node, 32));
  // X25519 clamping (RFC 7748 5): a multiple of the cofactor 8, bit 254 set, bit 255 clear.
  k[0] = k[0]! & 248;
  k[31] = (k[31]! & 127) | 64;
  const privateKey = k.toString("base64");
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

/** The X25519 public key of a private key (both base64). */
export function publicKeyOf(privateKey: string): string {
  const priv = createPrivateKey({
    key: Buffer.concat([PKCS8_X25519_PREFIX, Buffer.from(privateKey, "base64")]),
    format: "der",
    type: "pkcs8",
  });
  const x = createPublicKey(priv).export({ format: "jwk" }).x;
  if (typeof x !== "string") throw new TunnelError("wireguard: could not compute an X25519 public key");
  return Buffer.from(x, "base64url").toString("base64");
}

/** The WireGuard preshared key every peer gets (base64). */
export function wireguardPresharedKey(psk: Buffer): string {
  return Buffer.from(hkdfSync("sha256", psk, WIREGUARD_PSK_SALT, "preshared-key", 32)).toString("base64");
}

export type WgWantedPeer = Readonly<{
  name: string;
  publicKey: string;
  /** `remoteAddr:listenPort`. */
  endpoint: string;
  /** Canonical CIDRs, sorted. */
  allowedIps: readonly string[];
  /** Whether the endpoint is enforced on every apply (this side initiates) or only set when missing. */
  enforceEndpoint: boolean;
  /** The persistent keepalive: PERSISTENT_KEEPALIVE_SEC where this side initiates, else 0 (see the header). */
  keepaliveSec: number;
}>;

/**
 * The WireGuard peers `peers` ask for, sorted by name. Throws a TunnelError naming the peer when it has no
 * remoteNode, names this gateway, shares a remoteNode with another peer, or claims remote subnets another
 * peer claims too (WireGuard routes each address to exactly one peer). `peers` are validated already.
 */
export function planWireGuardPeers(
  peers: readonly VpnPeer[],
  psk: Buffer,
  node: string,
  listenPort: number,
): WgWantedPeer[] {
  const byNode = new Map<string, string>();
  const claimed: { peer: string; cidr: ReturnType<typeof parseCidr> }[] = [];
  const out: WgWantedPeer[] = [];
  for (const p of [...peers].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const where = `vpn peer ${JSON.stringify(p.name)}`;
    if (p.remoteNode === undefined)
      throw new TunnelError(
        `${where}: remoteNode is required by WireGuard (the peer's public key is derived from its node name)`,
      );
    if (p.remoteNode === node) throw new TunnelError(`${where}: remoteNode ${node} is this gateway itself`);
    const other = byNode.get(p.remoteNode);
    if (other !== undefined)
      throw new TunnelError(
        `${where}: remoteNode ${p.remoteNode} is also the remoteNode of peer ${JSON.stringify(other)}`,
      );
    byNode.set(p.remoteNode, p.name);
    const cidrs = p.remoteSubnets.map((c) => parseCidr(c));
    for (const c of cidrs) {
      const clash = claimed.find((x) => x.peer !== p.name && cidrsOverlap(x.cidr, c));
      if (clash)
        throw new TunnelError(
          `${where}: remoteSubnets ${c.text} overlaps ${clash.cidr.text} of peer ${JSON.stringify(clash.peer)}`,
        );
      claimed.push({ peer: p.name, cidr: c });
    }
    out.push({
      name: p.name,
      publicKey: wireguardKeyPair(psk, p.remoteNode).publicKey,
      endpoint: `${p.remoteAddr}:${listenPort}`,
      allowedIps: [...new Set(cidrs.map((c) => c.text))].sort(),
      enforceEndpoint: initiates(p),
      keepaliveSec: initiates(p) ? PERSISTENT_KEEPALIVE_SEC : 0,
    });
  }
  return out;
}

export type WgPeerDump = Readonly<{
  publicKey: string;
  presharedKey: string | null;
  endpoint: string | null;
  allowedIps: readonly string[];
  /** Unix seconds of the latest handshake; 0 = never. */
  latestHandshakeSec: number;
  rxBytes: number;
  txBytes: number;
  persistentKeepaliveSec: number | null;
}>;

export type WgDeviceDump = Readonly<{
  privateKey: string | null;
  publicKey: string | null;
  listenPort: number;
  fwmark: number | null;
  peers: readonly WgPeerDump[];
}>;

/**
 * Parses the reply to a UAPI `get=1` (wireguard-go's control socket, https://www.wireguard.com/xplatform/):
 * `key=value` lines, the device's first, then each peer's from its `public_key` line on, ending `errno=N`.
 * Keys are hex on the wire and base64 here (as `wg` prints them); a zero key is none.
 */
export function parseUapiGet(text: string): WgDeviceDump {
  const device: { privateKey: string | null; listenPort: number; fwmark: number | null } = {
    privateKey: null,
    listenPort: 0,
    fwmark: null,
  };
  const peers: WgPeerDump[] = [];
  let peer: { -readonly [K in keyof WgPeerDump]: WgPeerDump[K] } | null = null;
  let errno: number | null = null;
  const flush = () => {
    if (peer) peers.push({ ...peer, allowedIps: [...peer.allowedIps].sort() });
    peer = null;
  };
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new TunnelError(`wireguard uapi: line ${JSON.stringify(line)} is not key=value`);
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    const n = () => uapiNumber(key, value);
    if (key === "errno") errno = n();
    else if (key === "public_key") {
      flush();
      peer = {
        publicKey: hexKey(key, value)!,
        presharedKey: null,
        endpoint: null,
        allowedIps: [],
        latestHandshakeSec: 0,
        rxBytes: 0,
        txBytes: 0,
        persistentKeepaliveSec: null,
      };
    } else if (!peer) {
      if (key === "private_key") device.privateKey = hexKey(key, value);
      else if (key === "listen_port") device.listenPort = n();
      else if (key === "fwmark") device.fwmark = n() || null;
    } else if (key === "preshared_key") peer.presharedKey = hexKey(key, value);
    else if (key === "endpoint") peer.endpoint = value;
    else if (key === "allowed_ip") (peer.allowedIps as string[]).push(value);
    else if (key === "last_handshake_time_sec") peer.latestHandshakeSec = n();
    else if (key === "rx_bytes") peer.rxBytes = n();
    else if (key === "tx_bytes") peer.txBytes = n();
    else if (key === "persistent_keepalive_interval") peer.persistentKeepaliveSec = n() || null;
  }
  flush();
  if (errno === null) throw new TunnelError("wireguard uapi: the reply has no errno line");
  if (errno !== 0) throw new TunnelError(`wireguard uapi: get failed with errno ${errno}`);
  return { ...device, publicKey: device.privateKey ? publicKeyOf(device.privateKey) : null, peers };
}

/** The UAPI `set=1` request (without the blank line that ends it) for these lines. */
export function uapiSet(lines: readonly string[]): string {
  return `set=1\n${lines.map((l) => `${l}\n`).join("")}\n`;
}

/** The device's own key and port. */
export const uapiDevice = (privateKey: string, listenPort: number): string[] => [
  `private_key=${keyHex(privateKey)}`,
  `listen_port=${listenPort}`,
];

/** A peer added or brought to the plan: key, preshared key, keepalive, exactly `allowedIps`, the endpoint when asked. */
export const uapiPeer = (p: WgWantedPeer, presharedKey: string, setEndpoint: boolean): string[] => [
  `public_key=${keyHex(p.publicKey)}`,
  `preshared_key=${keyHex(presharedKey)}`,
  ...(setEndpoint ? [`endpoint=${p.endpoint}`] : []),
  `persistent_keepalive_interval=${p.keepaliveSec}`,
  "replace_allowed_ips=true",
  ...p.allowedIps.map((a) => `allowed_ip=${a}`),
];

/** Turns the keepalive on and off again: wireguard-go sends one keepalive, so one initiation when there is no session. */
export const uapiNudge = (publicKey: string): string[][] => [
  [`public_key=${keyHex(publicKey)}`, `persistent_keepalive_interval=${PERSISTENT_KEEPALIVE_SEC}`],
  [`public_key=${keyHex(publicKey)}`, "persistent_keepalive_interval=0"],
];

export const uapiRemovePeer = (publicKey: string): string[] => [`public_key=${keyHex(publicKey)}`, "remove=true"];

/** The `errno` of a UAPI reply to `set` (0 = done). */
export function uapiErrno(reply: string): number {
  const m = /^errno=(-?\d+)$/m.exec(reply);
  if (!m) throw new TunnelError(`wireguard uapi: the reply ${JSON.stringify(reply.slice(0, 80))} has no errno line`);
  return Number(m[1]);
}

function keyHex(b64: string): string {
  const k = Buffer.from(b64, "base64");
  if (k.length !== 32) throw new TunnelError(`wireguard: ${JSON.stringify(b64)} is not a 32-byte base64 key`);
  return k.toString("hex");
}

function hexKey(key: string, hex: string): string | null {
  if (!/^[0-9a-f]{64}$/.test(hex))
    throw new TunnelError(`wireguard uapi: ${key} ${JSON.stringify(hex)} is not a 32-byte hex key`);
  return /^0+$/.test(hex) ? null : Buffer.from(hex, "hex").toString("base64");
}

function uapiNumber(key: string, value: string): number {
  const n = Number(value);
  if (value === "" || !Number.isSafeInteger(n) || n < 0)
    throw new TunnelError(`wireguard uapi: ${key} ${JSON.stringify(value)} is not a number`);
  return n;
}

export type WgPeerOp =
  /** `added`: the device has no such peer yet (a new session will start). */
  | Readonly<{ type: "set"; peer: WgWantedPeer; setEndpoint: boolean; added: boolean }>
  | Readonly<{ type: "remove"; publicKey: string }>;

/** What to change so that the live peers match `wanted` (see the header for the rules); empty = nothing. */
export function diffWireGuardPeers(
  live: readonly WgPeerDump[],
  wanted: readonly WgWantedPeer[],
  presharedKey: string,
): WgPeerOp[] {
  const byKey = new Map(live.map((p) => [p.publicKey, p]));
  const ops: WgPeerOp[] = [];
  for (const w of wanted) {
    const l = byKey.get(w.publicKey);
    const setEndpoint = !l || l.endpoint === null || (w.enforceEndpoint && l.endpoint !== w.endpoint);
    const same =
      l !== undefined &&
      l.presharedKey === presharedKey &&
      (l.persistentKeepaliveSec ?? 0) === w.keepaliveSec &&
      l.allowedIps.length === w.allowedIps.length &&
      l.allowedIps.every((a, i) => a === w.allowedIps[i]);
    if (!same || setEndpoint) ops.push({ type: "set", peer: w, setEndpoint, added: l === undefined });
  }
  const wantedKeys = new Set(wanted.map((w) => w.publicKey));
  for (const l of live) if (!wantedKeys.has(l.publicKey)) ops.push({ type: "remove", publicKey: l.publicKey });
  return ops;
}
