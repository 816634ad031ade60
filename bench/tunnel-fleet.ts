// The fleet as bench:tunnel sees it: its topology (the e2e test runs the same one), the machine's prerequisites,
// and a Witness on the hub that answers what the benchmark waits for — the active tunnel endpoints, the mesh
// being up, the candidates' health, the SA byte counters of the gw.tunnel reports — plus polling and clock
// helpers.
import { spawnSync } from "node:child_process";
import { ErrorCode, MissingDependencyError, RavenError } from "../shared/errors";
import { pollUntil } from "../shared/poll";
import type { NatsConnection } from "../shared/nats";
import { subjects, tryDecode, type GatewayTunnel } from "../shared/protocol";
import { parseTopology, type Topology } from "../shared/topology";
import type { Fleet } from "../services/fleet/fleet";
import type { NodeHost } from "../services/fleet/netns";
import { FleetObserver } from "../services/fleet/observer";
import { defaultTunnelTimings } from "../services/gateway-actor/tunnel/manager";
import { checkStrongSwanInstalled, kernelHasEsp } from "../lib/vpn";
import { PathError } from "./proxy-lib";

export const DOMAINS = ["cloud", "edge-a", "edge-b"] as const;
/** How long one read of the driver's status (a vici round trip, or a `wg` process) may take. */
const STATUS_READ_MARGIN_MS = 500;

/** Something this benchmark needs from the machine is missing (root, a binary); the message says what to do. */
export class PrerequisiteError extends RavenError {
  constructor(message: string) {
    super(ErrorCode.MissingDependency, message);
    this.name = "PrerequisiteError";
  }
}

export function checkPrerequisites(): void {
  if (process.platform !== "linux") throw new PrerequisiteError("bench:tunnel needs Linux (network namespaces)");
  if (process.getuid?.() !== 0)
    throw new PrerequisiteError(
      "bench:tunnel needs root (network namespaces, IPsec): run it as root; scripts/setup.sh installs what it uses",
    );
  // Each asked for its version only (nats-server's -V would start a server with tracing). bridge, sysctl and
  // swanctl build the hand-built reference datapath (tunnel-handbuilt.ts).
  const bins = [
    ["ip", "-V", "iproute2"],
    ["bridge", "-V", "iproute2"],
    ["sysctl", "-V", "procps"],
    ["ping", "-V", "iputils-ping"],
    ["nats-server", "--version", "nats-server"],
    ["swanctl", "--version", "strongswan-swanctl"],
  ] as const;
  for (const [bin, arg, pkg] of bins) {
    if (spawnSync(bin, [arg], { timeout: 5_000 }).error)
      throw new MissingDependencyError(bin, [pkg], `bench:tunnel runs ${bin}`);
  }
  checkStrongSwanInstalled({ libipsec: !kernelHasEsp() });
}

/** Three domains (cloud, edge-a, edge-b; the edges' node IPs collide) with pod CIDRs; test/integration/tunnel-fleet.test.ts runs it too. */
export function benchTopology(): Topology {
  const node = (name: string, pool: string, ip: string, podCIDR: string, gw: string) => ({
    name,
    labels: { "apps.openyurt.io/nodepool": pool, "raven.openyurt.io/gateway": gw },
    internalIP: ip,
    podCIDR,
  });
  const gateway = (name: string, nodes: string[], exposeType = "") => ({
    metadata: { name },
    spec: {
      exposeType,
      endpoints: nodes.flatMap((n) => [
        // Edges sit behind NAT, all of their endpoints alike (OpenYurt refuses a mix); the cloud's are exposed.
        { nodeName: n, type: "proxy", underNAT: exposeType === "" },
        { nodeName: n, type: "tunnel", underNAT: exposeType === "" },
      ]),
    },
  });
  return parseTopology({
    name: "bench-tunnel",
    nodes: [
      node("c-gw-1", "cloud", "10.0.0.1", "10.244.0.0/24", "gw-c"),
      node("c-node-1", "cloud", "10.0.0.2", "10.244.1.0/24", "gw-c"),
      node("a-gw-1", "edge-a", "192.168.0.1", "10.244.16.0/24", "gw-a"),
      node("a-gw-2", "edge-a", "192.168.0.2", "10.244.17.0/24", "gw-a"),
      node("a-node-1", "edge-a", "192.168.0.3", "10.244.18.0/24", "gw-a"),
      node("b-gw-1", "edge-b", "192.168.0.1", "10.244.32.0/24", "gw-b"),
      node("b-gw-2", "edge-b", "192.168.0.2", "10.244.33.0/24", "gw-b"),
      node("b-node-1", "edge-b", "192.168.0.3", "10.244.34.0/24", "gw-b"),
    ],
    gateways: [
      gateway("gw-c", ["c-gw-1"], "PublicIP"),
      gateway("gw-a", ["a-gw-1", "a-gw-2"]),
      gateway("gw-b", ["b-gw-1", "b-gw-2"]),
    ],
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** shared/poll.ts's pollUntil, its timeout a PathError (what this benchmark reports as a failed path). */
export function waitUntil<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  everyMs = 100,
): Promise<T> {
  return pollUntil(what, timeoutMs, check, everyMs).catch((err: Error) => {
    throw new PathError(err.message, { cause: err });
  });
}

/** Epoch ms minus performance.now(), read right at a millisecond tick of Date.now() (so good to a few µs). */
export function wallOffsetMs(): number {
  const t0 = Date.now();
  let t = t0;
  while (t === t0) t = Date.now();
  return t - performance.now();
}

/**
 * The fleet as the benchmark sees it: status on the hub, every gw.tunnel report, and (observe(), for the
 * kills) every assignment and heartbeat. The observer is not there during the throughput rounds: following
 * every heartbeat costs a process about 1 % of a core, which the hand-built runs beside nothing do not pay.
 */
export class Witness {
  readonly reports = new Map<string, GatewayTunnel>();
  private observer: FleetObserver | null = null;
  private constructor(
    readonly fleet: Fleet,
    readonly nc: NatsConnection,
  ) {}

  /** The assignments and heartbeats seen from now on. */
  async observe(): Promise<FleetObserver> {
    this.observer ??= await FleetObserver.start(this.fleet.hubUrl);
    return this.observer;
  }

  static async attach(fleet: Fleet): Promise<Witness> {
    const nc = await fleet.connect();
    const w = new Witness(fleet, nc);
    // A callback, not an iterator: nothing here awaits, and a malformed message is skipped (tryDecode), not fatal.
    nc.subscribe(subjects.allGatewayTunnel(), {
      callback: (_err, m) => {
        const msg = tryDecode(m.data);
        if (msg?.type === "gw.tunnel") w.reports.set(msg.body.node, msg.body);
      },
    });
    await nc.flush();
    return w;
  }

  host(node: string): NodeHost {
    const h = this.fleet.hostOf(node);
    if (!h) throw new PathError(`the fleet has no host namespace for ${node}`);
    return h;
  }

  /** The active tunnel endpoint of a domain per the coordinator, with its term. */
  async activeTunnel(domain: string): Promise<{ node: string; term: number }> {
    const st = await this.fleet.status(this.nc);
    const d = st?.domains.find((x) => x.domain === domain);
    const node = d?.active.find((a) => a.type === "tunnel")?.nodeName;
    if (!d || !node) throw new PathError(`no active tunnel endpoint in ${domain}`);
    return { node, term: d.term };
  }

  /** Every active gateway reports a tunnel to each other domain, up, fenced to that domain's current active. */
  async meshUp(): Promise<boolean> {
    const actives = await Promise.all(DOMAINS.map(async (d) => ({ domain: d, ...(await this.activeTunnel(d)) })));
    for (const a of actives) {
      const r = this.reports.get(a.node);
      if (!r?.active) return false;
      for (const other of actives.filter((x) => x !== a)) {
        const tun = r.tunnels.find((x) => x.peer === other.domain);
        if (tun?.state !== "up" || tun.peerNode !== other.node || tun.peerTerm !== other.term) return false;
      }
    }
    return true;
  }

  /** Both of a domain's candidates heartbeat as healthy and it has an active tunnel endpoint. */
  async candidatesHealthy(domain: string): Promise<boolean> {
    const d = (await this.fleet.status(this.nc))?.domains.find((x) => x.domain === domain);
    return (
      !!d &&
      d.candidates.length >= 2 &&
      d.candidates.every((c) => c.healthy) &&
      d.active.some((a) => a.type === "tunnel")
    );
  }

  /**
   * The SA counter `node` reports for its tunnel to `peer` (bytes out), counting all traffic up to
   * `afterWallMs`. While every tunnel is up the manager reads charon only every stableStatusMs (a read may
   * start up to statusMs late) and reports its latest read, so a report counts everything before `afterWallMs` only when sent
   * that long after it, plus time for the read itself.
   */
  saBytesOut(node: string, peer: string, afterWallMs: number): Promise<number> {
    const notBeforeWallMs =
      afterWallMs + defaultTunnelTimings.stableStatusMs + defaultTunnelTimings.statusMs + STATUS_READ_MARGIN_MS;
    return waitUntil(
      `a gw.tunnel report of ${node} with its bytes to ${peer}`,
      15_000,
      () => {
        const r = this.reports.get(node);
        const tun = r && r.sentAt >= notBeforeWallMs ? r.tunnels.find((t) => t.peer === peer) : undefined;
        return typeof tun?.bytesOut === "number" ? tun.bytesOut : undefined;
      },
      50,
    );
  }

  async close(): Promise<void> {
    await this.observer?.stop().catch(() => undefined);
    await this.nc.close().catch(() => undefined);
  }
}
