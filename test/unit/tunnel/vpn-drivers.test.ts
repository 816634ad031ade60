// The VpnDriver contract on the fake (idempotence, removal, error injection), the strongSwan driver's pure
// parts (its vici messages, list-sas events, PSK checks, install check) and its refusal of bad input.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MissingDependencyError, PkiError, RavenError, TunnelError } from "../../../shared/errors";
import {
  checkStrongSwanInstalled,
  ensurePskFile,
  FakeVpnDriver,
  connectionMessage,
  ikeSasOf,
  initiates,
  readPsk,
  renderStrongswanConf,
  sharedKeyMessage,
  STRONGSWAN_PACKAGES,
  StrongSwanDriver,
  uncoveredSubnets,
  validateVpnDesired,
  type ViciMessage,
  type VpnPeer,
  vpnOverheadFor,
} from "../../../lib/vpn";

const peer = (name: string, remoteAddr = "198.18.0.2"): VpnPeer => ({
  name,
  localAddr: "198.18.0.1",
  remoteAddr,
  localSubnets: ["10.244.0.0/24"],
  remoteSubnets: ["10.245.0.0/24"],
});
const dir = mkdtempSync(join(tmpdir(), "raven-vpn-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("FakeVpnDriver", () => {
  it("brings desired peers up, is a no-op on the same desired state, re-establishes changed peers and drops removed ones", async () => {
    const d = new FakeVpnDriver({ overheadBytes: 65 });
    const s1 = await d.apply({ peers: [peer("b"), peer("c", "198.18.0.3")] });
    expect(s1.peers.map((p) => [p.name, p.state, p.saId])).toEqual([
      ["b", "up", "fake-1"],
      ["c", "up", "fake-2"],
    ]);
    await d.apply({ peers: [peer("b"), peer("c", "198.18.0.3")] });
    expect(d.established).toEqual(["b", "c"]); // no churn
    const s3 = await d.apply({ peers: [{ ...peer("b"), remoteSubnets: ["10.246.0.0/24"] }] });
    expect(s3.peers).toEqual([
      { name: "b", state: "up", saId: "fake-3", bytesIn: null, bytesOut: null, lastError: null },
    ]);
    expect(d.applied).toHaveLength(3);
  });

  it("injects a failed apply (nothing changes) and a failing peer (down with the error until healed)", async () => {
    const d = new FakeVpnDriver();
    await d.apply({ peers: [peer("b")] });
    d.failNextApply(new RavenError("INTERNAL", "boom"));
    await expect(d.apply({ peers: [] })).rejects.toThrow("boom");
    expect((await d.status()).peers.map((p) => p.state)).toEqual(["up"]);
    d.failPeer("b", "no proposal chosen");
    expect((await d.apply({ peers: [peer("b")] })).peers[0]).toMatchObject({
      state: "down",
      saId: null,
      lastError: "no proposal chosen",
    });
    d.healPeer("b");
    expect((await d.apply({ peers: [peer("b")] })).peers[0]).toMatchObject({ state: "up", lastError: null });
    d.dropPeer("b");
    expect((await d.status()).peers[0]).toMatchObject({ state: "down", lastError: "peer went away" });
    expect((await d.apply({ peers: [peer("b")] })).peers[0]!.state).toBe("up");
    await d.cleanup();
    expect((await d.status()).peers).toEqual([]);
  });

  it("validates the desired state like a real driver", async () => {
    const d = new FakeVpnDriver();
    await expect(d.apply({ peers: [peer("b"), peer("b")] })).rejects.toThrow(/listed twice/);
    await expect(d.apply({ peers: [{ ...peer("B") }] })).rejects.toThrow(TunnelError);
    await expect(d.apply({ peers: [{ ...peer("b"), localSubnets: [] }] })).rejects.toThrow(/localSubnets must list/);
    await expect(d.apply({ peers: [{ ...peer("b"), remoteSubnets: ["10.0.0.1/8"] }] })).rejects.toThrow(/host bits/);
    await expect(d.apply({ peers: [{ ...peer("b"), remoteAddr: "198.18.0.1" }] })).rejects.toThrow(/both 198.18.0.1/);
  });
});

describe("initiator choice", () => {
  it("defaults to the lower underlay address, numerically, and can be forced", () => {
    expect(initiates(peer("b", "198.18.0.10"))).toBe(true);
    expect(initiates({ ...peer("b"), localAddr: "198.18.0.9", remoteAddr: "198.18.0.10" })).toBe(true); // not string order
    expect(initiates({ ...peer("b"), localAddr: "198.18.0.10", remoteAddr: "198.18.0.9" })).toBe(false);
    expect(initiates({ ...peer("b"), initiate: false })).toBe(false);
    expect(() => validateVpnDesired({ peers: [{ ...peer("b"), initiate: "yes" as unknown as boolean }] })).toThrow(
      /initiate must be a boolean/,
    );
  });
});

describe("strongSwan configuration", () => {
  it("loads IKEv2 PSK with forced UDP encapsulation, AES-GCM, the subnets as selectors, and the raw key owned by both addresses", () => {
    expect(connectionMessage(peer("gw-b"))).toEqual({
      "gw-b": {
        version: "2",
        local_addrs: ["198.18.0.1"],
        remote_addrs: ["198.18.0.2"],
        encap: "yes",
        proposals: ["aes128gcm16-prfsha256-x25519"],
        dpd_delay: "10s",
        // No retries or restarts inside charon (the caller re-applies), so both sides load the same connection.
        keyingtries: "1",
        local: { auth: "psk", id: "198.18.0.1" },
        remote: { auth: "psk", id: "198.18.0.2" },
        children: {
          "gw-b": {
            local_ts: ["10.244.0.0/24"],
            remote_ts: ["10.245.0.0/24"],
            esp_proposals: ["aes128gcm16"],
            start_action: "none",
            dpd_action: "clear",
            close_action: "none",
          },
        },
      },
    });
    expect(connectionMessage({ ...peer("gw-b"), initiate: false })).toEqual(
      connectionMessage({ ...peer("gw-b"), initiate: true }),
    );
    const key = Buffer.from("s3cret=with}braces and spaces");
    expect(sharedKeyMessage(peer("gw-b"), key)).toEqual({
      id: "ike-gw-b",
      type: "IKE",
      data: key,
      owners: ["198.18.0.1", "198.18.0.2"],
    });
  });

  it("renders a charon that loads kernel-libipsec only when asked, on its own vici socket", () => {
    const c = {
      viciSocket: "/var/lib/x/charon.vici",
      logFile: "/var/lib/x/charon.log",
      libipsec: true,
      ikePort: 500,
      natPort: 4500,
    };
    expect(renderStrongswanConf(c)).toMatch(/load = .* kernel-libipsec kernel-netlink socket-default vici/);
    expect(renderStrongswanConf(c)).toContain("socket = unix:///var/lib/x/charon.vici");
    expect(renderStrongswanConf({ ...c, libipsec: false })).not.toContain("libipsec");
  });

  it("reads vici's list-sa events: states, ids and byte counters", () => {
    const events: ViciMessage[] = [
      {
        "gw-b": {
          uniqueid: "3",
          version: "2",
          state: "ESTABLISHED",
          "local-host": "198.18.200.1",
          "child-sas": {
            "gw-b-7": {
              name: "gw-b",
              uniqueid: "7",
              state: "INSTALLED",
              "bytes-in": "1652",
              "bytes-out": "840",
              "local-ts": ["10.244.0.0/24", "10.244.1.0/24"],
              "remote-ts": "10.245.0.0/24",
            },
          },
        },
      },
      { "gw-c": { uniqueid: "4", state: "CONNECTING" } },
    ];
    expect(ikeSasOf(events)).toEqual([
      {
        name: "gw-b",
        uniqueId: "3",
        state: "ESTABLISHED",
        children: [
          {
            name: "gw-b",
            uniqueId: "7",
            state: "INSTALLED",
            bytesIn: 1652,
            bytesOut: 840,
            localTs: ["10.244.0.0/24", "10.244.1.0/24"],
            remoteTs: ["10.245.0.0/24"],
          },
        ],
      },
      { name: "gw-c", uniqueId: "4", state: "CONNECTING", children: [] },
    ]);
    expect(ikeSasOf([])).toEqual([]);
  });
});

describe("uncoveredSubnets", () => {
  const child = {
    name: "gw-b",
    uniqueId: "7",
    state: "INSTALLED",
    bytesIn: 0,
    bytesOut: 0,
    localTs: ["10.244.0.0/24"],
    remoteTs: ["10.245.0.0/24", "10.245.1.0/24"],
  };
  it("names the configured subnets an SA does not carry, on either side", () => {
    expect(uncoveredSubnets(child, ["10.244.0.0/24"], ["10.245.0.0/24"])).toBe("");
    expect(
      uncoveredSubnets(child, ["10.244.0.0/24", "10.244.2.0/24"], ["10.245.0.0/24", "10.245.1.0/24", "10.245.2.0/24"]),
    ).toBe("local 10.244.2.0/24, remote 10.245.2.0/24");
    expect(uncoveredSubnets(child, ["10.244.0.0/24"], ["10.245.3.0/24"])).toBe("remote 10.245.3.0/24");
  });

  it("does not judge a child listed without selectors", () => {
    expect(uncoveredSubnets({ ...child, localTs: [], remoteTs: [] }, ["10.244.0.0/24"], ["10.245.0.0/24"])).toBe("");
  });
});

describe("the pre-shared key", () => {
  it("is generated once (32 random bytes, mode 0600) and never replaced", () => {
    const f = join(dir, "a", "psk");
    ensurePskFile(f);
    const psk = readPsk(f);
    expect(psk.toString()).toMatch(/^[0-9a-f]{64}$/);
    ensurePskFile(f);
    expect(readPsk(f)).toEqual(psk);
  });

  it("is refused when missing, readable by others or short; there is no default", () => {
    expect(() => readPsk(join(dir, "none"))).toThrow(PkiError);
    expect(() => readPsk(join(dir, "none"))).toThrow(/missing .*no default key/);
    const open = join(dir, "open");
    writeFileSync(open, "0123456789abcdef0123456789abcdef");
    chmodSync(open, 0o644);
    expect(() => readPsk(open)).toThrow(/not be readable by group or others \(mode 644/);
    const short = join(dir, "short");
    writeFileSync(short, "openyurt-raven\n", { mode: 0o600 });
    expect(() => readPsk(short)).toThrow(/14 bytes; at least 16/);
  });
});

describe("StrongSwanDriver guards", () => {
  it("names the Debian packages when strongSwan is missing", () => {
    const call = () => checkStrongSwanInstalled({ charon: "/nonexistent/charon" });
    expect(call).toThrow(MissingDependencyError);
    expect(call).toThrow(`install the Debian packages ${STRONGSWAN_PACKAGES.join(" ")}`);
    expect(() => checkStrongSwanInstalled({ charon: "/bin/true", vici: "/nonexistent/libstrongswan-vici.so" })).toThrow(
      /vici plugin .*not installed/,
    );
    expect(STRONGSWAN_PACKAGES).toEqual([
      "strongswan-charon",
      "strongswan-swanctl",
      "libcharon-extra-plugins",
      "libstrongswan-standard-plugins",
    ]);
  });

  it("refuses a state directory under /run (charon's /run is private) or relative", () => {
    expect(() => new StrongSwanDriver({ stateDir: "/run/raven/gw", pskFile: "/x" })).toThrow(/under \/run/);
    expect(() => new StrongSwanDriver({ stateDir: "gw", pskFile: "/x" })).toThrow(/must be absolute/);
  });

  it("refuses bad desired state and a missing key before starting anything", async () => {
    const d = new StrongSwanDriver({
      stateDir: join(dir, "gw"),
      pskFile: join(dir, "none"),
      charonPath: "/bin/true",
      viciPluginPath: "/bin/true",
      esp: "kernel",
    });
    await expect(d.apply({ peers: [peer("b"), peer("b")] })).rejects.toThrow(TunnelError);
    await expect(d.apply({ peers: [peer("b")] })).rejects.toThrow(PkiError);
    expect(d.pid).toBeUndefined();
    expect(d.overheadBytes).toBe(65);
  });

  it("reports the libipsec TUN's fixed 1400 bytes as overhead on a larger underlay", () => {
    const mk = (underlayMtu: number) =>
      new StrongSwanDriver({ stateDir: join(dir, "gw2"), pskFile: "/x", esp: "libipsec", underlayMtu }).overheadBytes;
    expect(mk(1500)).toBe(100);
    expect(mk(1465)).toBe(65);
    expect(mk(1400)).toBe(65);
  });
});

describe("vpnOverheadFor (what the nodes' routes leave for the gateways' VPN)", () => {
  it("is ESP-in-UDP's 65 bytes with kernel ESP, and kernel-libipsec's fixed 1400-byte TUN caps the path without it", () => {
    expect(vpnOverheadFor("strongswan", 1500, true)).toBe(65);
    expect(vpnOverheadFor("strongswan", 1500, false)).toBe(100); // path MTU 1400, not 1435
    expect(vpnOverheadFor("strongswan", 1465, false)).toBe(65);
    expect(vpnOverheadFor("strongswan", 1400, false)).toBe(65); // a smaller underlay: the TUN is lowered to fit
    expect(vpnOverheadFor("wireguard", 1500)).toBe(80);
  });
});
