// KernelNet: what tunnel mode reads and changes in one network namespace — links (VXLAN included), IPv4
// addresses, main-table IPv4 routes, IPv4 neighbours, VXLAN FDB entries and the IPv4 forwarding switch — as
// typed calls. NetlinkNet does it over rtnetlink (netlink.ts), with no process per read or
// change; FakeNet (fake-net.ts) keeps the same state in memory for unit tests, with error injection.
//
// Every call is synchronous and complete when it returns; a refusal is a NetlinkError naming the request.
// The namespace's socket and sysctl file are opened on first use and kept.
import { NetlinkSocket, NetnsFile, watchNetlink } from "./netlink";
import {
  AF,
  MAIN_TABLE,
  RTMGRP,
  parseAddr,
  parseLink,
  parseNeighbour,
  parseRoute,
  requests,
  type Addr,
  type Link,
  type Neighbour,
  type Request,
  type Route,
} from "./rtnetlink";

export type { Addr, Link, Neighbour, Route };
export type VxlanSpec = Readonly<{ name: string; mac: string; mtu: number; vni: number; port: number; local: string }>;
export type LinkChange = Readonly<{ mac?: string; mtu?: number; up?: boolean }>;
export type RouteSpec = Readonly<{ dst: string; via: string | null; oif: number; mtu: number; protocol: number }>;

export interface KernelNet {
  /** The namespace acted in (`ip netns` name); the process's own when undefined. */
  readonly netns?: string;
  links(): Link[];
  addrs(): Addr[];
  /** IPv4 routes of the main table. */
  routes(): Route[];
  /** IPv4 neighbours. */
  neighbours(): Neighbour[];
  /** FDB entries (AF_BRIDGE neighbours; a VXLAN device's carry `dst`). */
  fdb(): Neighbour[];
  addVxlan(v: VxlanSpec): void;
  setLink(index: number, name: string, change: LinkChange): void;
  delLink(index: number, name: string): void;
  /** Idempotent (`ip addr replace`). */
  replaceAddr(index: number, address: string, prefixLen: number, label?: string): void;
  delAddr(index: number, address: string, prefixLen: number): void;
  replaceRoute(r: RouteSpec): void;
  delRoute(dst: string, protocol: number): void;
  /** A permanent neighbour. */
  replaceNeighbour(index: number, dst: string, mac: string): void;
  delNeighbour(index: number, dst: string): void;
  /** A permanent FDB entry of a VXLAN device. */
  replaceFdb(index: number, mac: string, dst: string): void;
  delFdb(index: number, mac: string, dst: string): void;
  /** net.ipv4.ip_forward. */
  forwarding(): boolean;
  setForwarding(on: boolean): void;
  /** Calls onChange after link or route changes in the namespace, until the returned function is called. */
  watch(onChange: () => void): () => void;
  close(): void;
}

/** A link by name, or undefined. */
export const linkNamed = (net: KernelNet, name: string): Link | undefined => net.links().find((l) => l.name === name);

export class NetlinkNet implements KernelNet {
  private socket: NetlinkSocket | null = null;
  private forwardFile: NetnsFile | null = null;
  /** Requests sent (reads and changes): a steady state that changes nothing shows only reads. */
  requests = 0;
  changes = 0;

  constructor(readonly netns?: string) {}

  private run(req: Request) {
    this.requests++;
    if (!req.dump) this.changes++;
    this.socket ??= new NetlinkSocket(this.netns);
    return this.socket.run(req);
  }

  links(): Link[] {
    return this.run(requests.links()).map(parseLink);
  }

  addrs(): Addr[] {
    return this.run(requests.addrs()).flatMap((m) => parseAddr(m) ?? []);
  }

  routes(): Route[] {
    return this.run(requests.routes()).flatMap((m) => {
      const r = parseRoute(m);
      return r && r.table === MAIN_TABLE ? [r] : [];
    });
  }

  neighbours(): Neighbour[] {
    return this.run(requests.neighbours())
      .map(parseNeighbour)
      .filter((n) => n.family === AF.INET);
  }

  fdb(): Neighbour[] {
    return this.run(requests.fdb())
      .map(parseNeighbour)
      .filter((n) => n.family === AF.BRIDGE);
  }

  addVxlan(v: VxlanSpec): void {
    this.run(requests.addVxlan(v));
  }
  setLink(index: number, name: string, change: LinkChange): void {
    this.run(requests.setLink(index, name, change));
  }
  delLink(index: number, name: string): void {
    this.run(requests.delLink(index, name));
  }
  replaceAddr(index: number, address: string, prefixLen: number, label?: string): void {
    this.run(requests.replaceAddr(index, address, prefixLen, label));
  }
  delAddr(index: number, address: string, prefixLen: number): void {
    this.run(requests.delAddr(index, address, prefixLen));
  }
  replaceRoute(r: RouteSpec): void {
    this.run(requests.replaceRoute(r));
  }
  delRoute(dst: string, protocol: number): void {
    this.run(requests.delRoute(dst, protocol));
  }
  replaceNeighbour(index: number, dst: string, mac: string): void {
    this.run(requests.replaceNeighbour(index, dst, mac));
  }
  delNeighbour(index: number, dst: string): void {
    this.run(requests.delNeighbour(index, dst));
  }
  replaceFdb(index: number, mac: string, dst: string): void {
    this.run(requests.replaceFdb(index, mac, dst));
  }
  delFdb(index: number, mac: string, dst: string): void {
    this.run(requests.delFdb(index, mac, dst));
  }

  private forwardSysctl(): NetnsFile {
    this.forwardFile ??= new NetnsFile(this.netns, "/proc/sys/net/ipv4/ip_forward");
    return this.forwardFile;
  }
  forwarding(): boolean {
    return this.forwardSysctl().read() === "1";
  }
  setForwarding(on: boolean): void {
    this.forwardSysctl().write(on ? "1" : "0");
  }

  watch(onChange: () => void): () => void {
    return watchNetlink(this.netns, RTMGRP.LINK | RTMGRP.IPV4_ROUTE, onChange);
  }

  close(): void {
    this.socket?.close();
    this.socket = null;
    this.forwardFile?.close();
    this.forwardFile = null;
  }
}
