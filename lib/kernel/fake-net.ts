// FakeNet: a KernelNet kept in memory, for unit tests of the route driver, the anchors and the VPN drivers.
// It models what those rely on: `lo` exists; names and indexes are unique; a device's routes, neighbours, FDB
// entries and addresses go with it; a new MAC flushes the device's neighbours (as the kernel does); deleting
// what is not there is an error (ESRCH / ENOENT / EADDRNOTAVAIL), adding a link twice is EEXIST. Every change
// is recorded by its description; `failOn` refuses the requests it matches, as the kernel would.
import { NetlinkError } from "../../shared/errors";
import type { Addr, KernelNet, LinkChange, Link, Neighbour, Route, RouteSpec, VxlanSpec } from "./kernel-net";
import { MAIN_TABLE, NUD_PERMANENT, AF } from "./rtnetlink";

type MutableLink = { -readonly [K in keyof Link]: Link[K] };

export class FakeNet implements KernelNet {
  readonly linkTable = new Map<number, MutableLink>([
    [1, { index: 1, name: "lo", up: true, mtu: 65536, mac: "00:00:00:00:00:00", kind: null, vxlan: null }],
  ]);
  addrList: Addr[] = [{ index: 1, address: "127.0.0.1", prefixLen: 8, label: "lo" }];
  readonly routeTable = new Map<string, Route>();
  readonly neighTable = new Map<string, Neighbour>();
  readonly fdbTable = new Map<string, Neighbour>();
  ipForward = false;
  /** Every change, described as the real requests are ("replace route 10.0.0.0/24 via …"). */
  readonly changes: string[] = [];
  reads = 0;
  /** Requests whose description matches are refused with this errno. */
  failOn: { match: RegExp; errno: string } | null = null;
  private nextIndex = 2;
  private readonly watchers = new Set<() => void>();

  constructor(readonly netns?: string) {}

  private change(what: string): void {
    if (this.failOn?.match.test(what)) throw new NetlinkError(what, this.failOn.errno, "refused by FakeNet");
    this.changes.push(what);
  }

  private changed(): void {
    for (const w of this.watchers) w();
  }

  private link(index: number, what: string): MutableLink {
    const l = this.linkTable.get(index);
    if (!l) throw new NetlinkError(what, "ENODEV", null);
    return l;
  }

  links(): Link[] {
    this.reads++;
    return [...this.linkTable.values()].map((l) => ({ ...l }));
  }
  addrs(): Addr[] {
    this.reads++;
    return [...this.addrList];
  }
  routes(): Route[] {
    this.reads++;
    return [...this.routeTable.values()];
  }
  neighbours(): Neighbour[] {
    this.reads++;
    return [...this.neighTable.values()];
  }
  fdb(): Neighbour[] {
    this.reads++;
    return [...this.fdbTable.values()];
  }

  addVxlan(v: VxlanSpec): void {
    const what = `add vxlan ${v.name}`;
    if ([...this.linkTable.values()].some((l) => l.name === v.name)) throw new NetlinkError(what, "EEXIST", null);
    this.change(what);
    const index = this.nextIndex++;
    this.linkTable.set(index, {
      index,
      name: v.name,
      up: false,
      mtu: v.mtu,
      mac: v.mac,
      kind: "vxlan",
      vxlan: { id: v.vni, local: v.local, port: v.port, learning: false },
    });
    this.changed();
  }

  /** A plain device (a VPN's TUN, say), as something else in the namespace would create it. */
  addDevice(name: string, mtu = 1500): number {
    const index = this.nextIndex++;
    this.linkTable.set(index, { index, name, up: true, mtu, mac: null, kind: "tun", vxlan: null });
    this.changed();
    return index;
  }

  setLink(index: number, name: string, c: LinkChange): void {
    const what = `set link ${name}${c.mac ? ` address ${c.mac}` : ""}${c.mtu ? ` mtu ${c.mtu}` : ""}${c.up ? " up" : ""}`;
    const l = this.link(index, what);
    this.change(what);
    if (c.mac && c.mac !== l.mac) {
      l.mac = c.mac;
      for (const [k, n] of this.neighTable) if (n.index === index) this.neighTable.delete(k);
    }
    if (c.mtu) l.mtu = c.mtu;
    if (c.up) l.up = true;
    this.changed();
  }

  delLink(index: number, name: string): void {
    const what = `delete link ${name}`;
    this.link(index, what);
    this.change(what);
    this.linkTable.delete(index);
    this.addrList = this.addrList.filter((a) => a.index !== index);
    for (const [k, r] of this.routeTable) if (r.oif === index) this.routeTable.delete(k);
    for (const [k, n] of this.neighTable) if (n.index === index) this.neighTable.delete(k);
    for (const [k, n] of this.fdbTable) if (n.index === index) this.fdbTable.delete(k);
    this.changed();
  }

  replaceAddr(index: number, address: string, prefixLen: number, label?: string): void {
    const what = `replace address ${address}/${prefixLen}`;
    const l = this.link(index, what);
    this.change(what);
    this.addrList = this.addrList.filter(
      (a) => !(a.index === index && a.address === address && a.prefixLen === prefixLen),
    );
    this.addrList.push({ index, address, prefixLen, label: label ?? l.name });
  }

  delAddr(index: number, address: string, prefixLen: number): void {
    const what = `delete address ${address}/${prefixLen}`;
    const before = this.addrList.length;
    const rest = this.addrList.filter(
      (a) => !(a.index === index && a.address === address && a.prefixLen === prefixLen),
    );
    if (rest.length === before) throw new NetlinkError(what, "EADDRNOTAVAIL", null);
    this.change(what);
    this.addrList = rest;
  }

  replaceRoute(r: RouteSpec): void {
    const what = `replace route ${r.dst}${r.via ? ` via ${r.via}` : ""} mtu ${r.mtu}`;
    this.link(r.oif, what);
    this.change(what);
    this.routeTable.set(r.dst, {
      dst: r.dst,
      table: MAIN_TABLE,
      protocol: r.protocol,
      oif: r.oif,
      gateway: r.via,
      mtu: r.mtu,
    });
    this.changed();
  }

  delRoute(dst: string, protocol: number): void {
    const what = `delete route ${dst}`;
    const r = this.routeTable.get(dst);
    if (!r || r.protocol !== protocol) throw new NetlinkError(what, "ESRCH", null);
    this.change(what);
    this.routeTable.delete(dst);
    this.changed();
  }

  replaceNeighbour(index: number, dst: string, mac: string): void {
    const what = `replace neighbour ${dst} ${mac}`;
    this.link(index, what);
    this.change(what);
    this.neighTable.set(`${index} ${dst}`, { family: AF.INET, index, dst, mac, state: NUD_PERMANENT });
  }

  delNeighbour(index: number, dst: string): void {
    const what = `delete neighbour ${dst}`;
    if (!this.neighTable.has(`${index} ${dst}`)) throw new NetlinkError(what, "ENOENT", null);
    this.change(what);
    this.neighTable.delete(`${index} ${dst}`);
  }

  replaceFdb(index: number, mac: string, dst: string): void {
    const what = `replace fdb ${mac} dst ${dst}`;
    this.link(index, what);
    this.change(what);
    this.fdbTable.set(`${index} ${mac}`, { family: AF.BRIDGE, index, mac, dst, state: NUD_PERMANENT });
  }

  delFdb(index: number, mac: string, dst: string): void {
    const what = `delete fdb ${mac} dst ${dst}`;
    const f = this.fdbTable.get(`${index} ${mac}`);
    if (!f || f.dst !== dst) throw new NetlinkError(what, "ENOENT", null);
    this.change(what);
    this.fdbTable.delete(`${index} ${mac}`);
  }

  forwarding(): boolean {
    this.reads++;
    return this.ipForward;
  }
  setForwarding(on: boolean): void {
    this.change(`net.ipv4.ip_forward=${on ? 1 : 0}`);
    this.ipForward = on;
  }

  watch(onChange: () => void): () => void {
    this.watchers.add(onChange);
    return () => this.watchers.delete(onChange);
  }

  close(): void {
    this.watchers.clear();
  }
}
