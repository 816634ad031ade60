// The WireGuard driver's pure parts: key derivation from the PSK and node names (checked against `wg pubkey`
// where wg is installed), the peer plan and its refusals, the UAPI messages (the `get` reply parser, the
// `set` lines), the live/wanted diff,
// and the driver's option and dependency guards. Its real data path is test/integration/wireguard-netns.test.ts.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MissingDependencyError, TunnelError } from "../../../shared/errors";
import { connectionMessage, validateVpnDesired, WIREGUARD_OVERHEAD_BYTES, type VpnPeer } from "../../../lib/vpn";
import { checkWireGuardInstalled, WIREGUARD_PACKAGES, WireGuardDriver } from "../../../lib/vpn/wireguard";
import {
  diffWireGuardPeers,
  parseUapiGet,
  PERSISTENT_KEEPALIVE_SEC,
  planWireGuardPeers,
  wireguardKeyPair,
  uapiDevice,
  uapiErrno,
  uapiPeer,
  uapiRemovePeer,
  uapiSet,
  wireguardPresharedKey,
  type WgPeerDump,
} from "../../../lib/vpn/wireguard-conf";

const PSK = Buffer.from("0123456789abcdef0123");
const peer = (
  name: string,
  remoteNode: string | undefined,
  remoteAddr = "198.18.0.2",
  remoteSubnets = ["10.245.0.0/24"],
): VpnPeer => ({
  name,
  localAddr: "198.18.0.1",
  remoteAddr,
  localSubnets: ["10.244.0.0/24"],
  remoteSubnets,
  ...(remoteNode === undefined ? {} : { remoteNode }),
});
const dir = mkdtempSync(join(tmpdir(), "raven-wg-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const WG = "/usr/bin/wg";
const hasWg = !spawnSync(WG, ["--version"]).error;

describe("WireGuard keys from the PSK and the node name", () => {
  it("are deterministic, differ per node and per PSK, and are clamped X25519 keys", () => {
    const a = wireguardKeyPair(PSK, "gw-a");
    expect(wireguardKeyPair(Buffer.from(PSK), "gw-a")).toEqual(a);
    expect(wireguardKeyPair(PSK, "gw-b").privateKey).not.toBe(a.privateKey);
    expect(wireguardKeyPair(PSK, "gw-b").publicKey).not.toBe(a.publicKey);
    expect(wireguardKeyPair(Buffer.from("0123456789abcdef0124"), "gw-a").publicKey).not.toBe(a.publicKey);
    const raw = Buffer.from(a.privateKey, "base64");
    expect(raw).toHaveLength(32);
    expect(raw[0]! & 7).toBe(0);
    expect(raw[31]! & 0xc0).toBe(0x40);
    expect(Buffer.from(a.publicKey, "base64")).toHaveLength(32);
  });

  it("are pinned: every gateway must derive the same keys, so a change here breaks mixed-version fleets", () => {
    expect(wireguardKeyPair(PSK, "gw-a")).toEqual({
      privateKey: "MDCvSc3OtI6jYvw8pU3J2n7Y8lJGgqD/QbWnWbp9zlc=",
      publicKey: "Ls/5BlQUoh5svS1b00JArMHtb6bPDyrwRCrmLR+iH2o=",
    });
    expect(wireguardPresharedKey(PSK)).toBe(wireguardPresharedKey(Buffer.from(PSK)));
    expect(Buffer.from(wireguardPresharedKey(PSK), "base64")).toHaveLength(32);
  });

  it.skipIf(!hasWg)(
    `give the public key \`wg pubkey\` computes from the private key${hasWg ? "" : " (skipped: wg not installed)"}`,
    () => {
      for (const node of ["gw-a", "gw-b", "edge-1.factory.example"]) {
        const k = wireguardKeyPair(PSK, node);
        const r = spawnSync(WG, ["pubkey"], { input: `${k.privateKey}\n`, encoding: "utf8" });
        expect(r.status).toBe(0);
        expect(r.stdout.trim()).toBe(k.publicKey);
      }
    },
  );
});

describe("the WireGuard peer plan", () => {
  it("derives each peer's key from remoteNode, its endpoint from remoteAddr and the listen port, sorted by name", () => {
    const plan = planWireGuardPeers(
      [peer("c", "gw-c", "198.18.0.3", ["10.247.0.0/24", "10.246.0.0/24"]), peer("b", "gw-b")],
      PSK,
      "gw-a",
      51820,
    );
    expect(plan).toEqual([
      {
        name: "b",
        publicKey: wireguardKeyPair(PSK, "gw-b").publicKey,
        endpoint: "198.18.0.2:51820",
        allowedIps: ["10.245.0.0/24"],
        enforceEndpoint: true,
        keepaliveSec: PERSISTENT_KEEPALIVE_SEC,
      },
      {
        name: "c",
        publicKey: wireguardKeyPair(PSK, "gw-c").publicKey,
        endpoint: "198.18.0.3:51820",
        allowedIps: ["10.246.0.0/24", "10.247.0.0/24"],
        enforceEndpoint: true,
        keepaliveSec: PERSISTENT_KEEPALIVE_SEC,
      },
    ]);
    expect(planWireGuardPeers([{ ...peer("b", "gw-b"), initiate: false }], PSK, "gw-a", 51820)[0]).toMatchObject({
      enforceEndpoint: false,
      keepaliveSec: 0,
    });
  });

  it("gives the persistent keepalive, which starts handshakes on its own, to the initiating side only", () => {
    // Two gateways that configure each other at once must not both initiate (wireguard-conf.ts header).
    const a = planWireGuardPeers(
      [{ ...peer("b", "gw-b", "198.18.0.2"), localAddr: "198.18.0.1" }],
      PSK,
      "gw-a",
      51820,
    )[0]!;
    const b = planWireGuardPeers(
      [{ ...peer("a", "gw-a", "198.18.0.1"), localAddr: "198.18.0.2" }],
      PSK,
      "gw-b",
      51820,
    )[0]!;
    expect([a.keepaliveSec, b.keepaliveSec]).toEqual([PERSISTENT_KEEPALIVE_SEC, 0]);
    expect(uapiPeer(b, wireguardPresharedKey(PSK), true)).toContain("persistent_keepalive_interval=0");
  });

  it("refuses a peer without remoteNode, naming it; one naming this gateway; shared nodes; overlapping remote subnets", () => {
    expect(() => planWireGuardPeers([peer("b", undefined)], PSK, "gw-a", 51820)).toThrow(TunnelError);
    expect(() => planWireGuardPeers([peer("b", undefined)], PSK, "gw-a", 51820)).toThrow(
      /vpn peer "b": remoteNode is required/,
    );
    expect(() => planWireGuardPeers([peer("b", "gw-a")], PSK, "gw-a", 51820)).toThrow(
      /"b": remoteNode gw-a is this gateway/,
    );
    expect(() =>
      planWireGuardPeers([peer("b", "gw-b"), peer("c", "gw-b", "198.18.0.3", ["10.246.0.0/24"])], PSK, "gw-a", 51820),
    ).toThrow(/"c": remoteNode gw-b is also .* "b"/);
    expect(() =>
      planWireGuardPeers(
        [peer("b", "gw-b", "198.18.0.2", ["10.0.0.0/8"]), peer("c", "gw-c", "198.18.0.3", ["10.1.0.0/16"])],
        PSK,
        "gw-a",
        51820,
      ),
    ).toThrow(/"c": remoteSubnets 10.1.0.0\/16 overlaps 10.0.0.0\/8 of peer "b"/);
  });

  it("validates remoteNode as a node name in the shared contract, and strongSwan ignores it", () => {
    expect(() => validateVpnDesired({ peers: [peer("b", "Gw_B")] })).toThrow(
      /vpn peer "b": remoteNode "Gw_B" must be a node name/,
    );
    expect(() => validateVpnDesired({ peers: [peer("b", "")] })).toThrow(/remoteNode/);
    expect(() => validateVpnDesired({ peers: [peer("b", "gw-b.factory")] })).not.toThrow();
    expect(connectionMessage(peer("b", "gw-b"))).toEqual(connectionMessage(peer("b", undefined)));
  });
});

const KEY = wireguardKeyPair(PSK, "gw-a");
const B = wireguardKeyPair(PSK, "gw-b").publicKey;
const C = wireguardKeyPair(PSK, "gw-c").publicKey;
const hex = (b64: string) => Buffer.from(b64, "base64").toString("hex");
const GET = [
  `private_key=${hex(KEY.privateKey)}`,
  "listen_port=51820",
  `public_key=${hex(B)}`,
  `preshared_key=${hex(wireguardPresharedKey(PSK))}`,
  "protocol_version=1",
  "endpoint=198.18.0.2:51820",
  "last_handshake_time_sec=1700000000",
  "last_handshake_time_nsec=12",
  "tx_bytes=840",
  "rx_bytes=1652",
  "persistent_keepalive_interval=5",
  "allowed_ip=10.245.0.0/24",
  `public_key=${hex(C)}`,
  `preshared_key=${"0".repeat(64)}`,
  "last_handshake_time_sec=0",
  "tx_bytes=0",
  "rx_bytes=0",
  "persistent_keepalive_interval=0",
  "allowed_ip=10.247.0.0/24",
  "allowed_ip=10.246.0.0/24",
  "errno=0",
  "",
  "",
].join("\n");

describe("wireguard-go's UAPI", () => {
  it("parses the reply to get: the device, then each peer, keys in base64, zero keys as none", () => {
    expect(parseUapiGet(GET)).toEqual({
      privateKey: KEY.privateKey,
      publicKey: KEY.publicKey,
      listenPort: 51820,
      fwmark: null,
      peers: [
        {
          publicKey: B,
          presharedKey: wireguardPresharedKey(PSK),
          endpoint: "198.18.0.2:51820",
          allowedIps: ["10.245.0.0/24"],
          latestHandshakeSec: 1700000000,
          rxBytes: 1652,
          txBytes: 840,
          persistentKeepaliveSec: 5,
        },
        {
          publicKey: C,
          presharedKey: null,
          endpoint: null,
          allowedIps: ["10.246.0.0/24", "10.247.0.0/24"],
          latestHandshakeSec: 0,
          rxBytes: 0,
          txBytes: 0,
          persistentKeepaliveSec: null,
        },
      ],
    });
    expect(parseUapiGet(`private_key=${"0".repeat(64)}\nlisten_port=40123\nfwmark=1\nerrno=0\n\n`)).toMatchObject({
      privateKey: null,
      publicKey: null,
      listenPort: 40123,
      fwmark: 1,
      peers: [],
    });
  });

  it("refuses a malformed or failed reply, naming the field", () => {
    expect(() => parseUapiGet("listen_port=1\n\n")).toThrow(/no errno line/);
    expect(() => parseUapiGet("errno=5\n\n")).toThrow(/get failed with errno 5/);
    expect(() => parseUapiGet("listen_port=x\nerrno=0\n")).toThrow(/listen_port "x" is not a number/);
    expect(() => parseUapiGet("public_key=abc\nerrno=0\n")).toThrow(/public_key "abc" is not a 32-byte hex key/);
    expect(() => parseUapiGet("garbage\nerrno=0\n")).toThrow(/"garbage" is not key=value/);
  });

  it("writes set requests in hex, with exactly the wanted allowed IPs, and reads their errno", () => {
    const [b] = planWireGuardPeers([peer("b", "gw-b")], PSK, "gw-a", 51820);
    expect(
      uapiSet([
        ...uapiDevice(KEY.privateKey, 51820),
        ...uapiPeer(b!, wireguardPresharedKey(PSK), true),
        ...uapiRemovePeer(C),
      ]),
    ).toBe(
      [
        "set=1",
        `private_key=${hex(KEY.privateKey)}`,
        "listen_port=51820",
        `public_key=${hex(B)}`,
        `preshared_key=${hex(wireguardPresharedKey(PSK))}`,
        "endpoint=198.18.0.2:51820",
        `persistent_keepalive_interval=${PERSISTENT_KEEPALIVE_SEC}`,
        "replace_allowed_ips=true",
        "allowed_ip=10.245.0.0/24",
        `public_key=${hex(C)}`,
        "remove=true",
        "",
        "",
      ].join("\n"),
    );
    expect(uapiPeer(b!, wireguardPresharedKey(PSK), false).some((l) => l.startsWith("endpoint="))).toBe(false);
    expect(uapiErrno("errno=0\n\n")).toBe(0);
    expect(uapiErrno("errno=22\n\n")).toBe(22);
    expect(() => uapiErrno("\n")).toThrow(/no errno line/);
  });
});

describe("the live/wanted diff", () => {
  const psk = wireguardPresharedKey(PSK);
  const [b, c] = planWireGuardPeers(
    [peer("b", "gw-b"), { ...peer("c", "gw-c", "198.18.0.3", ["10.246.0.0/24"]), initiate: false }],
    PSK,
    "gw-a",
    51820,
  ) as [ReturnType<typeof planWireGuardPeers>[number], ReturnType<typeof planWireGuardPeers>[number]];
  const live = (w: typeof b, over: Partial<WgPeerDump> = {}): WgPeerDump => ({
    publicKey: w.publicKey,
    presharedKey: psk,
    endpoint: w.endpoint,
    allowedIps: w.allowedIps,
    latestHandshakeSec: 1,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepaliveSec: w.keepaliveSec || null,
    ...over,
  });

  it("is empty when the device matches, whatever the handshake and counters", () => {
    expect(diffWireGuardPeers([live(b, { rxBytes: 9, latestHandshakeSec: 99 }), live(c)], [b, c], psk)).toEqual([]);
  });

  it("adds missing peers with their endpoint, sets changed ones, and removes unwanted ones last", () => {
    const stranger = live(b, { publicKey: "ZZZZ=" });
    expect(diffWireGuardPeers([stranger, live(c, { allowedIps: ["10.9.0.0/16"] })], [b, c], psk)).toEqual([
      { type: "set", peer: b, setEndpoint: true, added: true },
      { type: "set", peer: c, setEndpoint: false, added: false },
      { type: "remove", publicKey: "ZZZZ=" },
    ]);
    expect(
      diffWireGuardPeers(
        [live(b, { presharedKey: null }), live(c, { persistentKeepaliveSec: PERSISTENT_KEEPALIVE_SEC })],
        [b, c],
        psk,
      ),
    ).toHaveLength(2);
  });

  it("enforces the endpoint where this side initiates, and leaves a roamed endpoint alone where it responds", () => {
    expect(diffWireGuardPeers([live(b, { endpoint: "203.0.113.9:40000" })], [b], psk)).toEqual([
      { type: "set", peer: b, setEndpoint: true, added: false },
    ]);
    expect(diffWireGuardPeers([live(c, { endpoint: "203.0.113.9:40000" })], [c], psk)).toEqual([]);
    expect(diffWireGuardPeers([live(c, { endpoint: null })], [c], psk)).toEqual([
      { type: "set", peer: c, setEndpoint: true, added: false },
    ]);
  });
});

describe("WireGuardDriver guards", () => {
  const base = { stateDir: join(dir, "gw"), pskFile: join(dir, "psk"), node: "gw-a" };

  it("names the option at fault", () => {
    expect(() => new WireGuardDriver({ ...base, stateDir: "gw" })).toThrow(/wireguard: stateDir "gw" must be absolute/);
    expect(() => new WireGuardDriver({ ...base, stateDir: "/run/raven/wg" })).toThrow(/stateDir .* under \/run/);
    expect(() => new WireGuardDriver({ ...base, node: "GW A" })).toThrow(/wireguard: node "GW A" must be a node name/);
    expect(() => new WireGuardDriver({ ...base, device: "raven-wireguard0" })).toThrow(
      /wireguard: device "raven-wireguard0" must be an interface name/,
    );
    expect(() => new WireGuardDriver({ ...base, listenPort: 0 })).toThrow(/wireguard: listenPort 0/);
    expect(() => new WireGuardDriver({ ...base, underlayMtu: 600 })).toThrow(/wireguard: underlayMtu 600/);
  });

  it("reports its overhead and device, and the device MTU from the underlay", () => {
    const d = new WireGuardDriver({ ...base, underlayMtu: 1450 });
    expect([d.name, d.overheadBytes, d.tunnelDev, d.deviceMtu]).toEqual([
      "wireguard",
      WIREGUARD_OVERHEAD_BYTES,
      "raven-wg0",
      1370,
    ]);
  });

  it("refuses a peer without remoteNode and names the Debian packages when a binary is missing, before starting anything", async () => {
    writeFileSync(base.pskFile, "0123456789abcdef0123456789abcdef\n", { mode: 0o600 });
    const d = new WireGuardDriver({ ...base, wireguardGoPath: "/nonexistent/wireguard-go" });
    await expect(d.apply({ peers: [peer("b", undefined)] })).rejects.toThrow(/vpn peer "b": remoteNode is required/);
    await expect(d.apply({ peers: [peer("b", "gw-b")] })).rejects.toThrow(MissingDependencyError);
    await expect(d.apply({ peers: [peer("b", "gw-b")] })).rejects.toThrow(
      `install the Debian packages ${WIREGUARD_PACKAGES.join(" ")}`,
    );
    expect(() => checkWireGuardInstalled({ wireguardGo: "/nonexistent/wireguard-go" })).toThrow(
      /daemon is not installed: \/nonexistent\/wireguard-go not found/,
    );
    expect(d.pid).toBeUndefined();
    expect(await d.status()).toEqual({ driver: "wireguard", peers: [] });
    await d.cleanup();
  });
});
