// bench:tunnel's pure part: ping reply lines, the reply that ends a failover, nearest-rank spreads, the last line,
// and the hand-built datapath's swanctl.conf and iproute2 commands.
import { describe, expect, it } from "vitest";
import { computeRoutes } from "../../../lib/vxlan";
import { connectionMessage, sharedKeyMessage, type VpnPeer } from "../../../lib/vpn";
import {
  figure,
  firstRecovery,
  handbuiltRouteCommands,
  lastLine,
  p99Note,
  parsePingReply,
  pingRtts,
  spread,
  swanctlConf,
  type PingReply,
} from "../../../bench/tunnel-lib";

describe("parsePingReply", () => {
  it("reads a reply with and without the -D stamp", () => {
    expect(parsePingReply("[1718000000.123456] 64 bytes from 10.244.34.10: icmp_seq=7 ttl=62 time=0.512 ms")).toEqual({
      seq: 7,
      rttMs: 0.512,
      receivedAtMs: 1718000000123.456,
    });
    expect(parsePingReply("64 bytes from 10.244.34.10: icmp_seq=1 ttl=62 time=12 ms")).toEqual({
      seq: 1,
      rttMs: 12,
      receivedAtMs: null,
    });
  });

  it("ignores errors, duplicates, other senders, the header and the summary", () => {
    const lines = [
      "PING 10.244.34.10 (10.244.34.10) 56(84) bytes of data.",
      "[1718000000.1] From 10.244.18.1 icmp_seq=3 Destination Host Unreachable",
      "[1718000000.2] no answer yet for icmp_seq=4",
      "[1718000000.3] 64 bytes from 10.244.34.10: icmp_seq=5 ttl=62 time=0.5 ms (DUP!)",
      "rtt min/avg/max/mdev = 0.401/0.512/0.700/0.050 ms",
      "200 packets transmitted, 200 received, 0% packet loss, time 2000ms",
    ];
    for (const l of lines) expect(parsePingReply(l)).toBeNull();
    expect(parsePingReply("64 bytes from 10.244.1.10: icmp_seq=1 ttl=62 time=1 ms", "10.244.34.10")).toBeNull();
  });

  it("collects the round trips of a whole output", () => {
    const out =
      "PING x\n64 bytes from 1.2.3.4: icmp_seq=1 ttl=64 time=0.1 ms\n64 bytes from 1.2.3.4: icmp_seq=2 ttl=64 time=0.3 ms\n\n--- stats ---\n";
    expect(pingRtts(out, "1.2.3.4")).toEqual([0.1, 0.3]);
  });
});

describe("firstRecovery", () => {
  const r = (seq: number, receivedAtMs: number | null, rttMs = 1): PingReply => ({ seq, rttMs, receivedAtMs });

  it("takes the earliest reply sent after the old gateway was gone and received after the new one was named", () => {
    const replies = [r(1, 1000), r(2, 1500, 200), r(3, 1600), r(4, 1550), r(5, 2000)];
    // seq 2 left at 1300 (before 1400): it may have crossed the old path; seq 4 arrived before seq 3.
    expect(firstRecovery(replies, 1400, 1200)?.seq).toBe(4);
    // Named only at 1580: seq 4 arrived too early.
    expect(firstRecovery(replies, 1400, 1580)?.seq).toBe(3);
    expect(firstRecovery(replies, 1400, 2500)).toBeUndefined();
  });

  it("never counts a reply without an arrival stamp", () => {
    expect(firstRecovery([r(1, null), r(2, 5000)], 0, 0)?.seq).toBe(2);
  });
});

describe("spread and figures", () => {
  it("gives nearest-rank p50/p99 and the maximum; a failure (Infinity) is the slowest", () => {
    expect(spread([30, 10, 20])).toEqual({ n: 3, p50: 20, p99: 30, max: 30 });
    const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(spread(hundred)).toMatchObject({ p50: 50, p99: 99, max: 100 });
    expect(spread([500, Infinity, 700])).toMatchObject({ p50: 700, p99: Infinity });
    expect(spread([]).p50).toBeNaN();
  });

  it("notes when p99 is nothing but the slowest kill", () => {
    expect(p99Note(20)).toMatch(/20 kills.*slowest kill/);
    expect(p99Note(1)).toMatch(/1 kill \(/);
    expect(p99Note(100)).toBeNull();
  });

  it("prints inf for failures and nan for what is missing", () => {
    expect(figure(612.4)).toBe("612");
    expect(figure(25.55, 1)).toBe("25.6");
    expect(figure(Infinity)).toBe("inf");
    expect(figure(NaN)).toBe("nan");
  });

  it("formats the last line exactly", () => {
    expect(
      lastLine({
        tunnelMBps: 25.54,
        ipsecRawMBps: 30.04,
        failoverP50Ms: 702.4,
        failoverP99Ms: 1773.6,
        handbuiltMBps: 26.04,
      }),
    ).toBe(
      "tunnel mbps=25.5 ipsec_raw_mbps=30.0 ratio=0.85 l3_failover_p50_ms=702 l3_failover_p99_ms=1774 handbuilt_mbps=26.0 ratio_vs_handbuilt=0.98",
    );
    expect(
      lastLine({ tunnelMBps: 20, ipsecRawMBps: 40, failoverP50Ms: 600, failoverP99Ms: Infinity, handbuiltMBps: NaN }),
    ).toBe(
      "tunnel mbps=20.0 ipsec_raw_mbps=40.0 ratio=0.50 l3_failover_p50_ms=600 l3_failover_p99_ms=inf handbuilt_mbps=nan ratio_vs_handbuilt=nan",
    );
  });
});

describe("the hand-built datapath", () => {
  const peer: VpnPeer = {
    name: "edge-b",
    localAddr: "198.18.7.12",
    remoteAddr: "198.18.7.15",
    localSubnets: ["10.244.16.0/24", "10.244.17.0/24"],
    remoteSubnets: ["10.244.32.0/24"],
    remoteNode: "b-gw-1",
  };

  it("writes the driver's connection and PSK as swanctl.conf", () => {
    const psk = Buffer.from("0123456789abcdef");
    const text = swanctlConf([connectionMessage(peer)], [sharedKeyMessage(peer, psk)]);
    expect(text).toContain("connections {\n  edge-b {\n    version = 2\n    local_addrs = 198.18.7.12\n");
    expect(text).toContain("    proposals = aes128gcm16-prfsha256-x25519\n");
    expect(text).toContain("    local {\n      auth = psk\n      id = 198.18.7.12\n    }\n");
    expect(text).toContain(
      "        local_ts = 10.244.16.0/24,10.244.17.0/24\n        remote_ts = 10.244.32.0/24\n        esp_proposals = aes128gcm16\n",
    );
    expect(text).toContain(
      `secrets {\n  ike-edge-b {\n    secret = 0x${psk.toString("hex")}\n    id-1 = 198.18.7.12\n    id-2 = 198.18.7.15\n  }\n}\n`,
    );
    // Braces balance: every section is closed.
    expect(text.split("{").length).toBe(text.split("}").length);
  });

  it("refuses values that would need quoting and keys that are not IKE secrets", () => {
    expect(() => swanctlConf([{ c: { local_addrs: ["10.0.0.1 # x"] } }], [])).toThrow(/needs quoting/);
    expect(() => swanctlConf([{ "c d": { version: "2" } }], [])).toThrow(/needs quoting/);
    expect(() => swanctlConf([], [{ id: "eap-x", type: "EAP", data: Buffer.from("k"), owners: [] }])).toThrow(
      /IKE pre-shared key/,
    );
  });

  it("builds a node's VXLAN device, pinned peer and routes with iproute2", () => {
    const desired = computeRoutes({
      role: "node",
      localIP: "192.168.0.3",
      gatewayIP: "192.168.0.1",
      localNodes: [],
      remotePodCidrs: ["10.244.32.0/24"],
      underlayMtu: 1500,
      vpnOverheadBytes: 100,
    });
    expect(handbuiltRouteCommands("p.a-node-1", desired).map((a) => a.join(" "))).toEqual([
      "ip -n p.a-node-1 link add raven0 address 0e:52:c0:a8:00:03 mtu 1450 type vxlan id 200 local 192.168.0.3 dstport 4472 nolearning",
      "ip -n p.a-node-1 addr add 240.168.0.3/32 dev raven0",
      "ip -n p.a-node-1 link set raven0 up",
      "bridge -n p.a-node-1 fdb replace 0e:52:c0:a8:00:01 dev raven0 dst 192.168.0.1 self permanent",
      "ip -n p.a-node-1 neigh replace 240.168.0.1 lladdr 0e:52:c0:a8:00:01 dev raven0 nud permanent",
      "ip -n p.a-node-1 route replace 10.244.32.0/24 via 240.168.0.1 onlink dev raven0 mtu 1400 proto 82",
      "ip netns exec p.a-node-1 sysctl -qw net.ipv4.ip_forward=1",
    ]);
  });

  it("gives a gateway its anchors on lo first", () => {
    const desired = computeRoutes({
      role: "gateway",
      localIP: "192.168.0.1",
      gatewayIP: "192.168.0.1",
      localNodes: [{ lanIP: "192.168.0.3", podCidrs: ["10.244.18.0/24"] }],
      remotePodCidrs: ["10.244.32.0/24"],
      underlayMtu: 1500,
      vpnOverheadBytes: 100,
    });
    const cmds = handbuiltRouteCommands("p.a-gw-1", desired, ["10.244.16.0"]).map((a) => a.join(" "));
    expect(cmds[0]).toBe("ip -n p.a-gw-1 addr add 10.244.16.0/32 dev lo label lo:raven");
    // Remote pod CIDRs are charon's to route (kernel-libipsec, table 220): only the local node's goes over VXLAN.
    expect(cmds.filter((c) => c.includes(" route "))).toEqual([
      "ip -n p.a-gw-1 route replace 10.244.18.0/24 via 240.168.0.3 onlink dev raven0 mtu 1450 proto 82",
    ]);
  });
});
