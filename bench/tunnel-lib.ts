// The pure part of bench:tunnel: iputils ping's reply lines, the reply that ends a failover, the summary of
// the kills (nearest-rank percentiles) and the figures as printed, the exact last line included; and the
// hand-built reference datapath as text (the swanctl.conf and the iproute2 commands that tunnel-handbuilt.ts
// runs). No I/O, no clock: times come in as numbers (epoch ms, as `ping -D` stamps its lines).
import { TunnelError } from "../shared/errors";
import { RAVEN_ROUTE_PROTO, type RouteDesired } from "../lib/vxlan";
import { type ViciSection, type ViciValue } from "../lib/vpn";
import { percentile } from "./proc-stats";
import { ratio } from "./proxy-lib";

/** One echo reply: its sequence number, round trip, and (with `ping -D`) when it arrived, epoch ms. */
export type PingReply = Readonly<{ seq: number; rttMs: number; receivedAtMs: number | null }>;

// `[1718000000.123456] 64 bytes from 10.244.34.10: icmp_seq=7 ttl=62 time=0.512 ms` (the stamp only with -D).
const REPLY = /^(?:\[(\d+(?:\.\d+)?)\]\s+)?\d+ bytes from ([0-9.]+): icmp_seq=(\d+) ttl=\d+ time=(\d+(?:\.\d+)?) ms/;

/**
 * The echo reply reported by one line of `ping -n` output (optionally `-D`), or null for every other line:
 * errors ("Destination Host Unreachable"), "no answer yet", DUP! lines, the header and the summary. With
 * `from`, a reply from another address is null too.
 */
export function parsePingReply(line: string, from?: string): PingReply | null {
  const m = REPLY.exec(line.trim());
  if (!m || /\bDUP!/.test(line) || (from !== undefined && m[2] !== from)) return null;
  return { seq: Number(m[3]), rttMs: Number(m[4]), receivedAtMs: m[1] === undefined ? null : Number(m[1]) * 1000 };
}

/** The round trips of every reply in a whole `ping -n` output. */
export function pingRtts(output: string, from?: string): number[] {
  return output
    .split("\n")
    .map((l) => parsePingReply(l, from))
    .filter((r): r is PingReply => r !== null)
    .map((r) => r.rttMs);
}

/**
 * The first reply, in order of arrival, that shows traffic flowing after a failover: its request left at or
 * after `sentAfterMs` (when the old gateway was gone, so it cannot have crossed the old path) and it arrived at
 * or after `receivedAfterMs` (when the coordinator had named the new active). The request's departure is its
 * arrival minus its round trip. Replies without a -D stamp never count.
 */
export function firstRecovery(
  replies: readonly PingReply[],
  sentAfterMs: number,
  receivedAfterMs: number,
): PingReply | undefined {
  let best: PingReply | undefined;
  for (const r of replies) {
    if (r.receivedAtMs === null || r.receivedAtMs < receivedAfterMs || r.receivedAtMs - r.rttMs < sentAfterMs) continue;
    if (!best || r.receivedAtMs < best.receivedAtMs!) best = r;
  }
  return best;
}

export type Spread = Readonly<{ n: number; p50: number; p99: number; max: number }>;

/** Nearest-rank p50/p99 and the maximum of `samples` (any order; Infinity counts as the slowest). */
export function spread(samples: readonly number[]): Spread {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted[sorted.length - 1] ?? NaN,
  };
}

/** Nearest-rank p99 of fewer than 100 samples is their maximum: say so, since one slow kill then is the p99. */
export function p99Note(n: number): string | null {
  if (n >= 100) return null;
  return `with ${n} kill${n === 1 ? "" : "s"} (< 100) the nearest-rank p99 is the slowest kill, not a tail estimate`;
}

/** A figure as printed: fixed digits, "inf" for a failure counted as infinitely slow, "nan" for none. */
export function figure(v: number, digits = 0): string {
  if (Number.isFinite(v)) return v.toFixed(digits);
  return v === Infinity ? "inf" : "nan";
}

export type TunnelFigures = Readonly<{
  tunnelMBps: number;
  ipsecRawMBps: number;
  failoverP50Ms: number;
  failoverP99Ms: number;
  handbuiltMBps: number;
}>;

/**
 * `tunnel mbps=X ipsec_raw_mbps=Y ratio=R l3_failover_p50_ms=P l3_failover_p99_ms=Q handbuilt_mbps=H
 * ratio_vs_handbuilt=S`, the benchmark's last line. Every throughput is in MB/s (1e6 bytes), the names
 * notwithstanding; S = tunnel / handbuilt.
 */
export function lastLine(f: TunnelFigures): string {
  const r = ratio(f.tunnelMBps, f.ipsecRawMBps);
  return (
    `tunnel mbps=${figure(f.tunnelMBps, 1)} ipsec_raw_mbps=${figure(f.ipsecRawMBps, 1)} ratio=${figure(r, 2)}` +
    ` l3_failover_p50_ms=${figure(f.failoverP50Ms)} l3_failover_p99_ms=${figure(f.failoverP99Ms)}` +
    ` handbuilt_mbps=${figure(f.handbuiltMBps, 1)} ratio_vs_handbuilt=${figure(ratio(f.tunnelMBps, f.handbuiltMBps), 2)}`
  );
}

// --- the hand-built datapath ----------------------------------------------------------------------------

const CONF_KEY = /^[A-Za-z0-9_-]+$/;
const CONF_VALUE = /^[A-Za-z0-9._:/-]+$/;

function confLines(section: ViciSection, indent: string): string[] {
  const lines: string[] = [];
  for (const [key, v] of Object.entries(section)) {
    if (!CONF_KEY.test(key))
      throw new TunnelError(`swanctl.conf: key ${JSON.stringify(key)} needs quoting, which this renderer does not do`);
    if (isNestedSection(v)) {
      lines.push(`${indent}${key} {`, ...confLines(v, `${indent}  `), `${indent}}`);
      continue;
    }
    const items = Buffer.isBuffer(v) ? [`0x${v.toString("hex")}`] : typeof v === "string" ? [v] : [...v];
    for (const item of items)
      if (!CONF_VALUE.test(item))
        throw new TunnelError(
          `swanctl.conf: ${key} value ${JSON.stringify(item)} needs quoting, which this renderer does not do`,
        );
    lines.push(`${indent}${key} = ${items.join(",")}`);
  }
  return lines;
}

const isNestedSection = (v: ViciValue): v is ViciSection =>
  typeof v === "object" && !Array.isArray(v) && !Buffer.isBuffer(v);

/**
 * swanctl.conf holding vici load-conn messages (strongswan-conf.ts connectionMessage: swanctl.conf(5) has the
 * same keys, lists comma-separated) and load-shared messages (sharedKeyMessage: `{ id, type: "IKE", data,
 * owners }`, which swanctl.conf spells `<id> { secret = 0x<data>, id-1 = <owner>, … }`, its id beginning
 * with "ike"). Values that would need quoting are refused rather than escaped.
 */
export function swanctlConf(connections: readonly ViciSection[], sharedKeys: readonly ViciSection[]): string {
  const secrets = sharedKeys.map((k): ViciSection => {
    const { id, type, data, owners } = k;
    if (
      type !== "IKE" ||
      typeof id !== "string" ||
      !id.startsWith("ike") ||
      !Buffer.isBuffer(data) ||
      !Array.isArray(owners)
    ) {
      throw new TunnelError(
        `swanctl.conf: ${JSON.stringify(id)} is not an IKE pre-shared key message with an "ike…" id`,
      );
    }
    return {
      [id]: { secret: data, ...Object.fromEntries((owners as readonly string[]).map((o, i) => [`id-${i + 1}`, o])) },
    };
  });
  const block = (name: string, sections: readonly ViciSection[]) => [
    `${name} {`,
    ...sections.flatMap((s) => confLines(s, "  ")),
    "}",
  ];
  return [...block("connections", connections), ...block("secrets", secrets), ""].join("\n");
}

/**
 * The commands (argv) that give node namespace `ns` what the route driver (lib/vxlan/route-driver.ts)
 * would make of `desired` over netlink — the VXLAN device with its /32, pinned FDB entries and neighbours, the
 * routes (protocol RAVEN_ROUTE_PROTO, on-link via the peers' VXLAN addresses), IPv4 forwarding — plus the
 * `lo:raven` anchors of a gateway's pod CIDRs (lib/vpn/anchors.ts), in a fresh namespace.
 */
export function handbuiltRouteCommands(ns: string, desired: RouteDesired, anchors: readonly string[] = []): string[][] {
  const v = desired.vxlan;
  const ip = (...argv: string[]) => ["ip", "-n", ns, ...argv];
  return [
    ...anchors.map((a) => ip("addr", "add", `${a}/32`, "dev", "lo", "label", "lo:raven")),
    ip(
      "link",
      "add",
      v.name,
      "address",
      v.mac,
      "mtu",
      String(v.mtu),
      "type",
      "vxlan",
      "id",
      String(v.vni),
      "local",
      v.localIP,
      "dstport",
      String(v.port),
      "nolearning",
    ),
    ip("addr", "add", `${v.address}/32`, "dev", v.name),
    ip("link", "set", v.name, "up"),
    ...v.peers.flatMap((p) => [
      ["bridge", "-n", ns, "fdb", "replace", p.mac, "dev", v.name, "dst", p.lanIP, "self", "permanent"],
      ip("neigh", "replace", p.address, "lladdr", p.mac, "dev", v.name, "nud", "permanent"),
    ]),
    ...desired.routes.map((r) =>
      ip(
        "route",
        "replace",
        r.dst,
        ...(r.via ? ["via", r.via, "onlink"] : []),
        "dev",
        r.dev,
        "mtu",
        String(r.mtu),
        "proto",
        String(RAVEN_ROUTE_PROTO),
      ),
    ),
    ...(desired.forwarding ? [["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"]] : []),
  ];
}
