// The two-domain topology the VPN driver tests run in (root, iproute2): gateway namespaces gwA and gwB joined by a
// veth underlay (wan0), a node nodeA behind gwA on domain A's LAN (lan0), a pod podA behind nodeA and a pod podB
// on gwB, each wired like a CNI would (a veth into the pod, the host end holding the pod CIDR's first address).
// A test picks the underlay and LAN addresses, the underlay MTU and the VPN driver; the pod addresses and CIDRs
// are the same everywhere (POD, CIDR). `create` builds it all; `destroy` (afterAll) kills the helpers, cleans up
// the VPN and route drivers and removes the namespaces and the work directory, also after a `create` that failed
// halfway.
//
// Everything lives in namespaces named `<prefix>-*` (no root links at all); the prefix has a marker in
// /run/raven-netns so that reapStaleNetns removes it if the run is killed, and `create` reaps those first.
import type { ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_MARKER_DIR, destroyNetns, newNetnsPrefix, reapStaleNetns } from "../../services/fleet/netns";
import { computeRoutes, RouteDriver, type RouteDesired } from "../../lib/vxlan";
import { ensurePskFile, type VpnDriver, type VpnStatus } from "../../lib/vpn";
import { leftovers, run, send, startSink } from "./netns-traffic";

export const POD = { a: "10.244.1.10", b: "10.244.2.10" } as const;
export const CIDR = { gwA: "10.244.0.0/24", nodeA: "10.244.1.0/24", gwB: "10.244.2.0/24" } as const;

/** A VPN driver that can show the tail of its daemon's log (lines joined by " | "). */
export type LoggingVpnDriver = VpnDriver & { logTail(n?: number): string };

/** What a test's VPN driver factory gets for each gateway. */
export type GatewaySide = Readonly<{
  name: "gw-a" | "gw-b";
  netns: string;
  stateDir: string;
  pskFile: string;
  underlayMtu: number;
}>;

export type DriverTopologyOptions = Readonly<{
  underlay: Readonly<{ a: string; b: string }>;
  lanA: Readonly<{ gw: string; node: string }>;
  lanB: Readonly<{ gw: string }>;
  /** The MTU of every underlay and LAN link. */
  underlayMtu: number;
  /** An empty pod bridge cni0 on gwA holding 10.244.0.1 (strongSwan needs a source address inside its local traffic selector). */
  gwAPodBridge?: boolean;
  /** mkdtemp prefix of the work directory (driver state, the PSK). */
  workDirPrefix: string;
}>;

const NAMESPACES = ["gwA", "gwB", "nodeA", "podA", "podB"] as const;
type Namespaces = Record<(typeof NAMESPACES)[number], string>;

export class DriverTopology<D extends VpnDriver> {
  prefix = "";
  workDir = "";
  pskFile = "";
  /** Namespace names, filled in by `create` (this object stays the same). */
  readonly ns: Namespaces = { gwA: "", gwB: "", nodeA: "", podA: "", podB: "" };
  /** The route drivers of gwB, gwA and nodeA, in that order, once `applyRoutes` ran. */
  readonly routeDrivers: RouteDriver[] = [];
  /** Processes the test started (the sink, ...): `destroy` kills those still running. */
  readonly helpers: ChildProcess[] = [];
  private vpn: readonly [D, D] | null = null;

  constructor(readonly o: DriverTopologyOptions) {}

  /** Reaps the namespaces of killed earlier runs, makes gateway A's and B's VPN drivers, builds the namespaces; the drivers. */
  async create(makeDriver: (side: GatewaySide) => D): Promise<readonly [D, D]> {
    await reapStaleNetns(); // their VPN daemons died with them (pdeathsig)
    this.prefix = newNetnsPrefix();
    mkdirSync(DEFAULT_MARKER_DIR, { recursive: true });
    writeFileSync(join(DEFAULT_MARKER_DIR, `${this.prefix}.pid`), `${process.pid}\n`);
    for (const k of NAMESPACES) this.ns[k] = `${this.prefix}-${k.toLowerCase()}`;
    this.workDir = mkdtempSync(join(tmpdir(), this.o.workDirPrefix));
    const pskFile = (this.pskFile = ensurePskFile(join(this.workDir, "secrets", "tunnel.psk")));
    const side = (name: GatewaySide["name"], netns: string): GatewaySide => ({
      name,
      netns,
      stateDir: join(this.workDir, name),
      pskFile,
      underlayMtu: this.o.underlayMtu,
    });
    this.vpn = [makeDriver(side("gw-a", this.ns.gwA)), makeDriver(side("gw-b", this.ns.gwB))];
    await this.build();
    return this.vpn;
  }

  async destroy(): Promise<void> {
    for (const h of this.helpers) if (h.exitCode === null) h.kill("SIGKILL");
    for (const d of this.vpn ?? []) await d.cleanup().catch((err) => console.error(`${d.name} cleanup:`, err));
    for (const r of this.routeDrivers) await r.cleanup().catch(() => undefined); // namespaces go next anyway
    if (this.prefix)
      await destroyNetns(this.prefix).catch((err) => console.error(`netns cleanup of ${this.prefix}:`, err));
    if (this.workDir) rmSync(this.workDir, { recursive: true, force: true });
  }

  private async build(): Promise<void> {
    const { ns, o } = this;
    const cmds: string[][] = [];
    const ipn = (n: string, ...a: string[]) => cmds.push(["ip", "-n", n, ...a]);
    for (const n of Object.values(ns)) {
      cmds.push(["ip", "netns", "add", n]);
      ipn(n, "link", "set", "lo", "up");
    }
    // underlay: gwA wan0 <-> gwB wan0
    cmds.push(["ip", "-n", ns.gwA, "link", "add", "wan0", "type", "veth", "peer", "name", "wan0", "netns", ns.gwB]);
    ipn(ns.gwA, "addr", "add", `${o.underlay.a}/24`, "dev", "wan0");
    ipn(ns.gwB, "addr", "add", `${o.underlay.b}/24`, "dev", "wan0");
    // domain A's LAN: gwA lan0 <-> nodeA lan0
    cmds.push(["ip", "-n", ns.gwA, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0", "netns", ns.nodeA]);
    ipn(ns.gwA, "addr", "add", `${o.lanA.gw}/24`, "dev", "lan0");
    ipn(ns.nodeA, "addr", "add", `${o.lanA.node}/24`, "dev", "lan0");
    // domain B's LAN: only its gateway (an ifb: this kernel has no dummy links)
    ipn(ns.gwB, "link", "add", "lan0", "type", "ifb");
    ipn(ns.gwB, "addr", "add", `${o.lanB.gw}/24`, "dev", "lan0");
    const mtuLinks: [string, string][] = [
      [ns.gwA, "wan0"],
      [ns.gwB, "wan0"],
      [ns.gwA, "lan0"],
      [ns.nodeA, "lan0"],
      [ns.gwB, "lan0"],
    ];
    if (o.gwAPodBridge) {
      ipn(ns.gwA, "link", "add", "cni0", "type", "ifb");
      ipn(ns.gwA, "addr", "add", "10.244.0.1/24", "dev", "cni0");
      mtuLinks.push([ns.gwA, "cni0"]);
    }
    for (const [host, pod, gwIp, podIp] of [
      [ns.nodeA, ns.podA, "10.244.1.1", POD.a],
      [ns.gwB, ns.podB, "10.244.2.1", POD.b],
    ] as const) {
      cmds.push(["ip", "-n", host, "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", pod]);
      ipn(host, "addr", "add", `${gwIp}/24`, "dev", "vpod");
      ipn(pod, "addr", "add", `${podIp}/24`, "dev", "eth0");
      ipn(host, "link", "set", "vpod", "up");
      ipn(pod, "link", "set", "eth0", "up");
      ipn(pod, "route", "add", "default", "via", gwIp);
    }
    for (const [n, dev] of mtuLinks) ipn(n, "link", "set", dev, "mtu", String(o.underlayMtu), "up");
    for (const c of cmds) await run(c);
  }

  private get drivers(): readonly [D, D] {
    if (!this.vpn) throw new Error("DriverTopology: create() first");
    return this.vpn;
  }

  /** Node A's routes toward domain B, through `gatewayIP` (gateway A unless failing over). */
  routesNodeA(gatewayIP = this.o.lanA.gw): RouteDesired {
    const { lanA, underlayMtu } = this.o;
    return computeRoutes({
      role: "node",
      localIP: lanA.node,
      gatewayIP,
      localNodes: [
        { lanIP: lanA.gw, podCidrs: [CIDR.gwA] },
        { lanIP: lanA.node, podCidrs: [CIDR.nodeA] },
      ],
      remotePodCidrs: [CIDR.gwB],
      underlayMtu,
      vpnOverheadBytes: this.drivers[0].overheadBytes,
    });
  }

  routesGwA(): RouteDesired {
    const { lanA, underlayMtu } = this.o;
    const [drvA] = this.drivers;
    return computeRoutes({
      role: "gateway",
      localIP: lanA.gw,
      gatewayIP: lanA.gw,
      localNodes: [
        { lanIP: lanA.gw, podCidrs: [CIDR.gwA] },
        { lanIP: lanA.node, podCidrs: [CIDR.nodeA] },
      ],
      remotePodCidrs: [CIDR.gwB],
      underlayMtu,
      vpnOverheadBytes: drvA.overheadBytes,
      tunnelDev: drvA.tunnelDev,
    });
  }

  routesGwB(): RouteDesired {
    const { lanB, underlayMtu } = this.o;
    const [, drvB] = this.drivers;
    return computeRoutes({
      role: "gateway",
      localIP: lanB.gw,
      gatewayIP: lanB.gw,
      localNodes: [{ lanIP: lanB.gw, podCidrs: [CIDR.gwB] }],
      remotePodCidrs: [CIDR.gwA, CIDR.nodeA],
      underlayMtu,
      vpnOverheadBytes: drvB.overheadBytes,
      tunnelDev: drvB.tunnelDev,
    });
  }

  /** Starts a route driver each in gwB, gwA and nodeA (into routeDrivers, in that order) and applies its routes; the changes each made. */
  async applyRoutes(): Promise<string[][]> {
    const changes: string[][] = [];
    for (const [n, desired] of [
      [this.ns.gwB, this.routesGwB()],
      [this.ns.gwA, this.routesGwA()],
      [this.ns.nodeA, this.routesNodeA()],
    ] as const) {
      const drv = new RouteDriver({ netns: n });
      this.routeDrivers.push(drv);
      changes.push([...(await drv.apply(desired))]);
    }
    return changes;
  }

  /**
   * Starts the TCP sink in pod B and sends to it from pod A: first 1000 bytes, then `total`. What the sink
   * counted each time (the client sends whole 64 KiB chunks), the time of the second, and how far gateway A's
   * bytesOut toward its first peer moved during it.
   */
  async carryTcp(total: number): Promise<{ smallBytes: number; bytes: number; ms: number; bytesOut: number }> {
    await startSink(this.helpers, this.ns.podB, POD.b);
    const small = await send(this.ns.podA, POD.b, 1000);
    const [drvA] = this.drivers;
    const before = (await drvA.status()).peers[0]!;
    const r = await send(this.ns.podA, POD.b, total);
    const after = (await drvA.status()).peers[0]!;
    return { smallBytes: small.bytes, bytes: r.bytes, ms: r.ms, bytesOut: after.bytesOut! - before.bytesOut! };
  }

  /** Namespaces and links of this run still there. */
  leftovers(): Promise<string[]> {
    return leftovers(this.prefix);
  }
}

/** Polls `drv` until every peer is up; after `timeoutMs` an error with its status and log. */
export async function waitUp(drv: LoggingVpnDriver, timeoutMs = 15_000): Promise<VpnStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = await drv.status();
    if (st.peers.length > 0 && st.peers.every((p) => p.state === "up")) return st;
    if (Date.now() > deadline)
      throw new Error(
        `${drv.name} not up after ${timeoutMs} ms: ${JSON.stringify(st)}\nlog:\n${drv.logTail(40).replaceAll(" | ", "\n")}`,
      );
    await new Promise((r) => setTimeout(r, 25));
  }
}
