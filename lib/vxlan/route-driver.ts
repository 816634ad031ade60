// The route driver: makes one network namespace's VXLAN device, its pinned peers and Raven's routes match a
// RouteDesired (routes.ts), over rtnetlink (a KernelNet: no process is spawned, for reads or for changes).
//
// Guarantees:
// - apply is idempotent and level-triggered: it reads the live state, changes only what differs and returns
//   the list of changes (empty = nothing touched). A resync that finds nothing to change costs a handful of
//   netlink dumps (tens of microseconds each) and nothing else. It owns exactly: the VXLAN device
//   `desired.vxlan.name` (with its addresses, neighbours and FDB entries) and the routes of protocol
//   RAVEN_ROUTE_PROTO in the main table; anything else in the namespace is left alone.
// - Failover (the gateway moved) is make-before-break: the new gateway's FDB entry and neighbour are added,
//   the routes are replaced in place (no window without a route), then the old gateway's entries go.
// - The first refused change ends the apply with its NetlinkError (what came before it is done); the next
//   apply finishes the job.
// - A VXLAN device whose VNI, port or local address differ is recreated (the kernel cannot change those).
// - IPv4 forwarding is switched on when desired; cleanup() restores the value found before the first apply.
// - cleanup() removes the device and the owned routes; idempotent.
// - watch() reports every link and route change in the namespace (an rtnetlink monitor socket), so that a
//   caller can repair drift at once: a VPN device that was recreated (wireguard-go restarted) has lost the
//   routes into it.
import { TunnelError } from "../../shared/errors";
import { linkNamed, NetlinkNet, NUD_PERMANENT, type KernelNet, type Link, type Route } from "../kernel";
import { RAVEN_ROUTE_PROTO, type RouteDesired, type RouteEntry, type VxlanDesired } from "./routes";

export type RouteDriverOptions = Readonly<{
  /** Network namespace to act in (`ip netns` name); the current one when left out. */
  netns?: string;
  /** The namespace's kernel state (default: rtnetlink in `netns`); tests pass a FakeNet. */
  net?: KernelNet;
}>;

export class RouteDriver {
  readonly net: KernelNet;
  private deviceName: string | null = null;
  private forwardingBefore: boolean | null = null;

  constructor(options: RouteDriverOptions = {}) {
    this.net = options.net ?? new NetlinkNet(options.netns);
  }

  get netns(): string | undefined {
    return this.net.netns;
  }

  /** Makes the namespace match `desired`; returns what was changed (empty when it already matched). */
  async apply(desired: RouteDesired): Promise<string[]> {
    const { net } = this;
    const changes: string[] = [];
    const v = desired.vxlan;
    if (this.deviceName !== null && this.deviceName !== v.name) this.removeDevice(this.deviceName, changes);
    this.deviceName = v.name;
    if (desired.forwarding) this.ensureForwarding(changes);
    const links = this.ensureDevice(v, changes);
    const dev = links.find((l) => l.name === v.name)!;
    const neigh = net.neighbours().filter((n) => n.index === dev.index);
    const fdb = net.fdb().filter((f) => f.index === dev.index);
    const actual = net.routes().filter((r) => r.protocol === RAVEN_ROUTE_PROTO);
    const indexOf = (name: string) => {
      const l = links.find((x) => x.name === name);
      if (!l)
        throw new TunnelError(
          `route driver: device ${name} does not exist in ${net.netns ?? "this namespace"} (routes into it wait for it)`,
        );
      return l.index;
    };
    const nameOf = (index: number | null) => links.find((l) => l.index === index)?.name;

    // Make: the peers' FDB entries and neighbours, then the routes; break: the stale routes and peers.
    for (const p of v.peers) {
      if (!fdb.some((f) => f.mac === p.mac && f.dst === p.lanIP)) {
        net.replaceFdb(dev.index, p.mac, p.lanIP);
        changes.push(`fdb ${p.mac} -> ${p.lanIP}`);
      }
    }
    for (const p of v.peers) {
      const n = neigh.find((x) => x.dst === p.address);
      if (!n || n.mac !== p.mac || !(n.state & NUD_PERMANENT)) {
        net.replaceNeighbour(dev.index, p.address, p.mac);
        changes.push(`neigh ${p.address} ${p.mac}`);
      }
    }
    for (const r of desired.routes) {
      const a = actual.find((x) => x.dst === r.dst);
      if (a && sameRoute(a, nameOf(a.oif), r)) continue;
      net.replaceRoute({ dst: r.dst, via: r.via, oif: indexOf(r.dev), mtu: r.mtu, protocol: RAVEN_ROUTE_PROTO });
      changes.push(`route ${r.dst}${r.via ? ` via ${r.via}` : ""} dev ${r.dev} mtu ${r.mtu}`);
    }
    const wanted = new Set(desired.routes.map((r) => r.dst));
    for (const a of actual) {
      if (wanted.has(a.dst)) continue;
      net.delRoute(a.dst, RAVEN_ROUTE_PROTO);
      changes.push(`route ${a.dst} removed`);
    }
    const peerAddrs = new Set(v.peers.map((p) => p.address));
    for (const n of neigh) {
      if (n.dst === null || peerAddrs.has(n.dst) || !(n.state & NUD_PERMANENT)) continue;
      net.delNeighbour(dev.index, n.dst);
      changes.push(`neigh ${n.dst} removed`);
    }
    const peerMacs = new Set(v.peers.map((p) => `${p.mac} ${p.lanIP}`));
    for (const f of fdb) {
      if (f.mac === null || f.dst === null || peerMacs.has(`${f.mac} ${f.dst}`)) continue;
      net.delFdb(dev.index, f.mac, f.dst);
      changes.push(`fdb ${f.mac} -> ${f.dst} removed`);
    }
    return changes;
  }

  private ensureForwarding(changes: string[]): void {
    const on = this.net.forwarding();
    this.forwardingBefore ??= on;
    if (on) return;
    this.net.setForwarding(true);
    changes.push("net.ipv4.ip_forward=1");
  }

  /** Makes the VXLAN device match; returns the namespace's links as they are afterwards. */
  private ensureDevice(v: VxlanDesired, changes: string[]): Link[] {
    const { net } = this;
    let links = net.links();
    let link = links.find((l) => l.name === v.name);
    const x = link?.vxlan;
    if (
      link &&
      (link.kind !== "vxlan" ||
        x?.id !== v.vni ||
        x?.port !== v.port ||
        x?.local !== v.localIP ||
        x?.learning !== false)
    ) {
      net.delLink(link.index, v.name);
      changes.push(`link ${v.name} removed (kind/vni/port/local changed)`);
      link = undefined;
    }
    if (!link) {
      net.addVxlan({ name: v.name, mac: v.mac, mtu: v.mtu, vni: v.vni, port: v.port, local: v.localIP });
      changes.push(`link ${v.name} vxlan vni ${v.vni} port ${v.port} local ${v.localIP}`);
      links = net.links();
      link = links.find((l) => l.name === v.name);
      if (!link)
        throw new TunnelError(
          `route driver: ${v.name} was created but is not listed in ${net.netns ?? "this namespace"}`,
        );
    }
    if (link.mac !== v.mac) {
      net.setLink(link.index, v.name, { mac: v.mac });
      changes.push(`link ${v.name} address ${v.mac}`);
    }
    if (link.mtu !== v.mtu) {
      net.setLink(link.index, v.name, { mtu: v.mtu });
      changes.push(`link ${v.name} mtu ${v.mtu}`);
    }
    if (!link.up) {
      net.setLink(link.index, v.name, { up: true });
      changes.push(`link ${v.name} up`);
    }
    const v4 = net.addrs().filter((a) => a.index === link!.index);
    if (!v4.some((a) => a.address === v.address && a.prefixLen === 32)) {
      net.replaceAddr(link.index, v.address, 32);
      changes.push(`addr ${v.address}/32`);
    }
    for (const a of v4) {
      if (a.address === v.address && a.prefixLen === 32) continue;
      net.delAddr(link.index, a.address, a.prefixLen);
      changes.push(`addr ${a.address}/${a.prefixLen} removed`);
    }
    return links;
  }

  private removeDevice(name: string, changes: string[]): void {
    const link = linkNamed(this.net, name);
    if (!link) return;
    this.net.delLink(link.index, name);
    changes.push(`link ${name} removed`);
  }

  /**
   * Calls `onChange` for every link or route change in the namespace (own changes included: a caller that
   * applies on each call converges, since an apply that finds nothing to do changes nothing), until the
   * returned function is called.
   */
  watch(onChange: () => void): () => void {
    return this.net.watch(onChange);
  }

  /** Removes the device (with its routes, neighbours, FDB) and any other owned route; restores forwarding. */
  async cleanup(): Promise<void> {
    const changes: string[] = [];
    if (this.deviceName !== null) this.removeDevice(this.deviceName, changes);
    for (const a of this.net.routes())
      if (a.protocol === RAVEN_ROUTE_PROTO) this.net.delRoute(a.dst, RAVEN_ROUTE_PROTO);
    if (this.forwardingBefore === false) this.net.setForwarding(false);
    this.forwardingBefore = null;
    this.deviceName = null;
  }

  /** Releases the namespace's socket (the kernel state stays). */
  close(): void {
    this.net.close();
  }
}

function sameRoute(a: Route, dev: string | undefined, r: RouteEntry): boolean {
  return dev === r.dev && a.gateway === r.via && a.mtu === r.mtu;
}
