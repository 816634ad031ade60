// bench:tunnel's pure part: ping reply lines, the reply that ends a failover, nearest-rank spreads, the last line.
import { describe, expect, it } from "vitest";
import { figure, firstRecovery, lastLine, p99Note, parsePingReply, pingRtts, spread, type PingReply } from "../../../bench/tunnel-lib";

describe("parsePingReply", () => {
  it("reads a reply with and without the -D stamp", () => {
    expect(parsePingReply("[1718000000.123456] 64 bytes from 10.244.34.10: icmp_seq=7 ttl=62 time=0.512 ms")).toEqual({
      seq: 7,
      rttMs: 0.512,
      receivedAtMs: 1718000000123.456,
    });
    expect(parsePingReply("64 bytes from 10.244.34.10: icmp_seq=1 ttl=62 time=12 ms")).toEqual({ seq: 1, rttMs: 12, receivedAtMs: null });
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
    const out = "PING x\n64 bytes from 1.2.3.4: icmp_seq=1 ttl=64 time=0.1 ms\n64 bytes from 1.2.3.4: icmp_seq=2 ttl=64 time=0.3 ms\n\n--- stats ---\n";
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
    expect(lastLine({ tunnelMBps: 25.54, ipsecRawMBps: 30.04, failoverP50Ms: 702.4, failoverP99Ms: 1773.6 })).toBe(
      "tunnel mbps=25.5 ipsec_raw_mbps=30.0 ratio=0.85 l3_failover_p50_ms=702 l3_failover_p99_ms=1774",
    );
    expect(lastLine({ tunnelMBps: 20, ipsecRawMBps: 40, failoverP50Ms: 600, failoverP99Ms: Infinity })).toBe(
      "tunnel mbps=20.0 ipsec_raw_mbps=40.0 ratio=0.50 l3_failover_p50_ms=600 l3_failover_p99_ms=inf",
    );
  });
});
