// The rtnetlink messages tunnel mode speaks to the kernel (rtnetlink(7)), built and parsed here, pure: no
// socket, no I/O. Covers what the route driver, the anchors and the VPN drivers need and nothing more: links
// (with VXLAN's link info), IPv4 addresses, IPv4 routes of the main table, IPv4 neighbours and VXLAN FDB
// entries (AF_BRIDGE neighbours), plus the ICMP echo of the tunnel probe.
//
// Layouts (host byte order unless noted; every attribute is padded to 4 bytes):
//   nlmsghdr  u32 len | u16 type | u16 flags | u32 seq | u32 pid                      (16 bytes)
//   ifinfomsg u8 family | u8 pad | u16 type | i32 index | u32 flags | u32 change       (16 bytes)
//   ifaddrmsg u8 family | u8 prefixlen | u8 flags | u8 scope | u32 index                (8 bytes)
//   rtmsg     u8 family | u8 dst_len | u8 src_len | u8 tos | u8 table | u8 protocol | u8 scope | u8 type | u32 flags
//   ndmsg     u8 family | u8 pad | u16 pad | i32 ifindex | u16 state | u8 flags | u8 type (12 bytes)
//   rtattr    u16 len | u16 type | payload
//   nlmsgerr  i32 error (negative errno, 0 = ack) | nlmsghdr of the request | TLVs when NLM_F_ACK_TLVS
// Addresses inside attributes are network byte order, and so is IFLA_VXLAN_PORT.
// One file on purpose (it passes 400 lines): one wire format, every builder beside its parser and the TLV code
// they share, so a layout fact lives in one place; split by message type, each part would repeat the TLVs.
import { endianness } from "node:os";
import { getSystemErrorName } from "node:util";
import { NetlinkError, TunnelError } from "../../shared/errors";

if (endianness() !== "LE")
  throw new Error("rtnetlink.ts assumes a little-endian host (netlink headers are in host order)");

export const NLM_F = {
  REQUEST: 0x1,
  MULTI: 0x2,
  ACK: 0x4,
  DUMP_INTR: 0x10,
  REPLACE: 0x100,
  EXCL: 0x200,
  CREATE: 0x400,
  DUMP: 0x300,
  ACK_TLVS: 0x200,
} as const;
export const NLMSG = { ERROR: 2, DONE: 3 } as const;
export const RTM = {
  NEWLINK: 16,
  DELLINK: 17,
  GETLINK: 18,
  NEWADDR: 20,
  DELADDR: 21,
  GETADDR: 22,
  NEWROUTE: 24,
  DELROUTE: 25,
  GETROUTE: 26,
  NEWNEIGH: 28,
  DELNEIGH: 29,
  GETNEIGH: 30,
} as const;
/** Multicast groups (bind(2) bitmask) for a monitor. */
export const RTMGRP = { LINK: 0x1, IPV4_IFADDR: 0x10, IPV4_ROUTE: 0x40 } as const;

export const AF = { UNSPEC: 0, INET: 2, BRIDGE: 7 } as const;
const IFF_UP = 0x1;
const IFLA = { ADDRESS: 1, IFNAME: 3, MTU: 4, LINKINFO: 18 } as const;
const IFLA_INFO = { KIND: 1, DATA: 2 } as const;
const IFLA_VXLAN = { ID: 1, LOCAL: 4, LEARNING: 7, PORT: 15 } as const;
const IFA = { ADDRESS: 1, LOCAL: 2, LABEL: 3 } as const;
const RTA = { DST: 1, OIF: 4, GATEWAY: 5, METRICS: 8, TABLE: 15 } as const;
const RTAX_MTU = 2;
const RTNH_F_ONLINK = 0x4;
const NDA = { DST: 1, LLADDR: 2 } as const;
export const NUD_PERMANENT = 0x80;
const NTF_SELF = 0x2;
const RT_TABLE_MAIN = 254;
const RT_SCOPE = { UNIVERSE: 0, LINK: 253, HOST: 254, NOWHERE: 255 } as const;
const RTN_UNICAST = 1;
const NLMSGERR_ATTR_MSG = 1;

const HDR = 16;
const align4 = (n: number) => (n + 3) & ~3;

// --- what the kernel reports --------------------------------------------------------------------------------

export type Link = Readonly<{
  index: number;
  name: string;
  up: boolean;
  mtu: number;
  mac: string | null;
  kind: string | null;
  vxlan: Readonly<{ id: number | null; local: string | null; port: number | null; learning: boolean | null }> | null;
}>;
export type Addr = Readonly<{ index: number; address: string; prefixLen: number; label: string | null }>;
export type Route = Readonly<{
  dst: string;
  table: number;
  protocol: number;
  oif: number | null;
  gateway: string | null;
  mtu: number | null;
}>;
export type Neighbour = Readonly<{
  index: number;
  dst: string | null;
  mac: string | null;
  state: number;
  family: number;
}>;

export function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-Math.abs(errno));
  } catch {
    return `errno ${errno}`;
  }
}

// --- building ---------------------------------------------------------------------------------------------

type Attr = Readonly<{ type: number; data: Buffer | readonly Attr[] }>;

const u8 = (n: number) => Buffer.from([n & 0xff]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};
const be16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
};
const cstr = (s: string) => Buffer.concat([Buffer.from(s, "utf8"), Buffer.alloc(1)]);

export function ipv4Bytes(ip: string): Buffer {
  const parts = ip.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255))
    throw new TunnelError(`${JSON.stringify(ip)} is not an IPv4 address`);
  return Buffer.from(parts);
}

export function macBytes(mac: string): Buffer {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac))
    throw new TunnelError(`${JSON.stringify(mac)} is not a MAC address`);
  return Buffer.from(mac.split(":").map((h) => parseInt(h, 16)));
}

function encodeAttrs(attrs: readonly Attr[]): Buffer {
  const parts: Buffer[] = [];
  for (const a of attrs) {
    const payload = Buffer.isBuffer(a.data) ? a.data : encodeAttrs(a.data as readonly Attr[]);
    const head = Buffer.alloc(4);
    head.writeUInt16LE(4 + payload.length, 0);
    head.writeUInt16LE(a.type | (Buffer.isBuffer(a.data) ? 0 : 0x8000), 2); // NLA_F_NESTED on nests
    parts.push(head, payload, Buffer.alloc(align4(payload.length) - payload.length));
  }
  return Buffer.concat(parts);
}

/** A whole request: header (length and sequence filled in), fixed part, attributes. */
export function message(type: number, flags: number, seq: number, fixed: Buffer, attrs: readonly Attr[] = []): Buffer {
  const body = Buffer.concat([fixed, Buffer.alloc(align4(fixed.length) - fixed.length), encodeAttrs(attrs)]);
  const head = Buffer.alloc(HDR);
  head.writeUInt32LE(HDR + body.length, 0);
  head.writeUInt16LE(type, 4);
  head.writeUInt16LE(flags | NLM_F.REQUEST, 6);
  head.writeUInt32LE(seq >>> 0, 8);
  head.writeUInt32LE(0, 12);
  return Buffer.concat([head, body]);
}

function ifinfo(index = 0, flags = 0, change = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(AF.UNSPEC, 0);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags, 8);
  b.writeUInt32LE(change, 12);
  return b;
}

function ifaddr(prefixLen: number, index: number, scope: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(AF.INET, 0);
  b.writeUInt8(prefixLen, 1);
  b.writeUInt8(scope, 3);
  b.writeUInt32LE(index, 4);
  return b;
}

function rtmsg(dstLen: number, protocol: number, scope: number, type: number, flags = 0): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(AF.INET, 0);
  b.writeUInt8(dstLen, 1);
  b.writeUInt8(RT_TABLE_MAIN, 4);
  b.writeUInt8(protocol, 5);
  b.writeUInt8(scope, 6);
  b.writeUInt8(type, 7);
  b.writeUInt32LE(flags, 8);
  return b;
}

function ndmsg(family: number, index: number, state: number, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(family, 0);
  b.writeInt32LE(index, 4);
  b.writeUInt16LE(state, 8);
  b.writeUInt8(flags, 10);
  return b;
}

/** A request without its sequence number yet: the socket numbers it. `what` names it in errors. */
export type Request = Readonly<{ what: string; build: (seq: number) => Buffer; dump: boolean }>;

const change = (what: string, type: number, flags: number, fixed: Buffer, attrs: readonly Attr[] = []): Request => ({
  what,
  dump: false,
  build: (seq) => message(type, flags | NLM_F.ACK, seq, fixed, attrs),
});
const dump = (what: string, type: number, fixed: Buffer): Request => ({
  what,
  dump: true,
  build: (seq) => message(type, NLM_F.DUMP, seq, fixed),
});

export const requests = {
  links: () => dump("dump links", RTM.GETLINK, ifinfo()),
  addrs: () => dump("dump addresses", RTM.GETADDR, ifaddr(0, 0, 0)),
  routes: () => dump("dump routes", RTM.GETROUTE, rtmsg(0, 0, 0, 0)),
  neighbours: () => dump("dump neighbours", RTM.GETNEIGH, ndmsg(AF.INET, 0, 0, 0)),
  fdb: () => dump("dump fdb", RTM.GETNEIGH, ndmsg(AF.BRIDGE, 0, 0, 0)),

  addVxlan: (v: Readonly<{ name: string; mac: string; mtu: number; vni: number; port: number; local: string }>) =>
    change(`add vxlan ${v.name}`, RTM.NEWLINK, NLM_F.CREATE | NLM_F.EXCL, ifinfo(), [
      { type: IFLA.IFNAME, data: cstr(v.name) },
      { type: IFLA.ADDRESS, data: macBytes(v.mac) },
      { type: IFLA.MTU, data: u32(v.mtu) },
      {
        type: IFLA.LINKINFO,
        data: [
          { type: IFLA_INFO.KIND, data: cstr("vxlan") },
          {
            type: IFLA_INFO.DATA,
            data: [
              { type: IFLA_VXLAN.ID, data: u32(v.vni) },
              { type: IFLA_VXLAN.LOCAL, data: ipv4Bytes(v.local) },
              { type: IFLA_VXLAN.LEARNING, data: u8(0) },
              { type: IFLA_VXLAN.PORT, data: be16(v.port) },
            ],
          },
        ],
      },
    ]),
  /** Sets what is given of a link: MAC, MTU, up. */
  setLink: (index: number, name: string, s: Readonly<{ mac?: string; mtu?: number; up?: boolean }>) =>
    change(
      `set link ${name}${s.mac ? ` address ${s.mac}` : ""}${s.mtu ? ` mtu ${s.mtu}` : ""}${s.up ? " up" : ""}`,
      RTM.NEWLINK,
      0,
      ifinfo(index, s.up ? IFF_UP : 0, s.up ? IFF_UP : 0),
      [
        ...(s.mac ? [{ type: IFLA.ADDRESS, data: macBytes(s.mac) }] : []),
        ...(s.mtu ? [{ type: IFLA.MTU, data: u32(s.mtu) }] : []),
      ],
    ),
  delLink: (index: number, name: string) => change(`delete link ${name}`, RTM.DELLINK, 0, ifinfo(index)),

  /** `ip addr replace`: idempotent. */
  replaceAddr: (index: number, address: string, prefixLen: number, label?: string) =>
    change(
      `replace address ${address}/${prefixLen}`,
      RTM.NEWADDR,
      NLM_F.CREATE | NLM_F.REPLACE,
      ifaddr(prefixLen, index, address.startsWith("127.") ? RT_SCOPE.HOST : RT_SCOPE.UNIVERSE),
      [
        { type: IFA.LOCAL, data: ipv4Bytes(address) },
        { type: IFA.ADDRESS, data: ipv4Bytes(address) },
        ...(label ? [{ type: IFA.LABEL, data: cstr(label) }] : []),
      ],
    ),
  delAddr: (index: number, address: string, prefixLen: number) =>
    change(`delete address ${address}/${prefixLen}`, RTM.DELADDR, 0, ifaddr(prefixLen, index, 0), [
      { type: IFA.LOCAL, data: ipv4Bytes(address) },
    ]),

  /** `ip route replace DST [via GW onlink] dev OIF mtu MTU proto PROTO` in the main table. */
  replaceRoute: (r: Readonly<{ dst: string; via: string | null; oif: number; mtu: number; protocol: number }>) => {
    const [net, len] = splitCidr(r.dst);
    return change(
      `replace route ${r.dst}${r.via ? ` via ${r.via}` : ""} mtu ${r.mtu}`,
      RTM.NEWROUTE,
      NLM_F.CREATE | NLM_F.REPLACE,
      rtmsg(len, r.protocol, r.via ? RT_SCOPE.UNIVERSE : RT_SCOPE.LINK, RTN_UNICAST, r.via ? RTNH_F_ONLINK : 0),
      [
        { type: RTA.DST, data: ipv4Bytes(net) },
        { type: RTA.OIF, data: u32(r.oif) },
        ...(r.via ? [{ type: RTA.GATEWAY, data: ipv4Bytes(r.via) }] : []),
        { type: RTA.METRICS, data: [{ type: RTAX_MTU, data: u32(r.mtu) }] },
      ],
    );
  },
  delRoute: (dst: string, protocol: number) => {
    const [net, len] = splitCidr(dst);
    return change(`delete route ${dst}`, RTM.DELROUTE, 0, rtmsg(len, protocol, RT_SCOPE.NOWHERE, 0), [
      { type: RTA.DST, data: ipv4Bytes(net) },
    ]);
  },

  /** A permanent IPv4 neighbour (`ip neigh replace … nud permanent`). */
  replaceNeighbour: (index: number, dst: string, mac: string) =>
    change(
      `replace neighbour ${dst} ${mac}`,
      RTM.NEWNEIGH,
      NLM_F.CREATE | NLM_F.REPLACE,
      ndmsg(AF.INET, index, NUD_PERMANENT, 0),
      [
        { type: NDA.DST, data: ipv4Bytes(dst) },
        { type: NDA.LLADDR, data: macBytes(mac) },
      ],
    ),
  delNeighbour: (index: number, dst: string) =>
    change(`delete neighbour ${dst}`, RTM.DELNEIGH, 0, ndmsg(AF.INET, index, 0, 0), [
      { type: NDA.DST, data: ipv4Bytes(dst) },
    ]),

  /** A permanent VXLAN FDB entry (`bridge fdb replace MAC dev D dst IP self permanent`). */
  replaceFdb: (index: number, mac: string, dst: string) =>
    change(
      `replace fdb ${mac} dst ${dst}`,
      RTM.NEWNEIGH,
      NLM_F.CREATE | NLM_F.REPLACE,
      ndmsg(AF.BRIDGE, index, NUD_PERMANENT, NTF_SELF),
      [
        { type: NDA.LLADDR, data: macBytes(mac) },
        { type: NDA.DST, data: ipv4Bytes(dst) },
      ],
    ),
  delFdb: (index: number, mac: string, dst: string) =>
    change(`delete fdb ${mac} dst ${dst}`, RTM.DELNEIGH, 0, ndmsg(AF.BRIDGE, index, 0, NTF_SELF), [
      { type: NDA.LLADDR, data: macBytes(mac) },
      { type: NDA.DST, data: ipv4Bytes(dst) },
    ]),
} as const;

function splitCidr(cidr: string): [string, number] {
  const [net, len] = cidr.split("/");
  const n = Number(len);
  if (net === undefined || !Number.isInteger(n) || n < 0 || n > 32)
    throw new TunnelError(`${JSON.stringify(cidr)} is not an IPv4 CIDR`);
  return [net, n];
}

// --- parsing ----------------------------------------------------------------------------------------------

export type NlMessage = Readonly<{ type: number; flags: number; seq: number; body: Buffer }>;

/** Splits a buffer of netlink messages; a truncated tail is an error (the kernel never sends one). */
export function splitMessages(buf: Buffer): NlMessage[] {
  const out: NlMessage[] = [];
  let off = 0;
  while (off + HDR <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < HDR || off + len > buf.length)
      throw new TunnelError(
        `netlink: a message of ${len} bytes at offset ${off} overruns the ${buf.length}-byte reply`,
      );
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      body: buf.subarray(off + HDR, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** The replies of one request: the data messages, after checking the closing NLMSG_ERROR / NLMSG_DONE. */
export function repliesOf(what: string, buf: Buffer): NlMessage[] {
  const data: NlMessage[] = [];
  for (const m of splitMessages(buf)) {
    if (m.type === NLMSG.DONE) break;
    if (m.type === NLMSG.ERROR) {
      const errno = m.body.readInt32LE(0);
      if (errno === 0) break;
      throw new NetlinkError(what, errnoName(-errno), extAckMessage(m));
    }
    if (m.flags & NLM_F.DUMP_INTR)
      throw new NetlinkError(what, "EINTR", "the dump was interrupted by a concurrent change");
    data.push(m);
  }
  return data;
}

function extAckMessage(m: NlMessage): string | null {
  if (!(m.flags & NLM_F.ACK_TLVS)) return null;
  // With NETLINK_CAP_ACK the failed request comes back as its header only.
  for (const a of attrs(m.body, 4 + HDR))
    if (a.type === NLMSGERR_ATTR_MSG) return a.data.toString("utf8").replace(/\0.*$/s, "");
  return null;
}

type RawAttr = { type: number; data: Buffer };

function attrs(buf: Buffer, start: number): RawAttr[] {
  const out: RawAttr[] = [];
  let off = start;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > buf.length) break;
    out.push({ type: buf.readUInt16LE(off + 2) & 0x3fff, data: buf.subarray(off + 4, off + len) });
    off += align4(len);
  }
  return out;
}

const attrMap = (buf: Buffer, start: number) => new Map(attrs(buf, start).map((a) => [a.type, a.data]));
const ipv4Of = (b: Buffer | undefined) => (b && b.length === 4 ? `${b[0]}.${b[1]}.${b[2]}.${b[3]}` : null);
const macOf = (b: Buffer | undefined) =>
  b && b.length === 6 ? [...b].map((x) => x.toString(16).padStart(2, "0")).join(":") : null;
const cstrOf = (b: Buffer | undefined) => (b ? b.toString("utf8").replace(/\0.*$/s, "") : null);

export function parseLink(m: NlMessage): Link {
  const b = m.body;
  const a = attrMap(b, 16);
  const info = a.get(IFLA.LINKINFO);
  const infoAttrs = info ? attrMap(info, 0) : new Map<number, Buffer>();
  const kind = cstrOf(infoAttrs.get(IFLA_INFO.KIND));
  let vxlan: Link["vxlan"] = null;
  const data = infoAttrs.get(IFLA_INFO.DATA);
  if (kind === "vxlan" && data) {
    const v = attrMap(data, 0);
    vxlan = {
      id: v.get(IFLA_VXLAN.ID)?.readUInt32LE(0) ?? null,
      local: ipv4Of(v.get(IFLA_VXLAN.LOCAL)),
      port: v.get(IFLA_VXLAN.PORT)?.readUInt16BE(0) ?? null,
      learning: v.has(IFLA_VXLAN.LEARNING) ? v.get(IFLA_VXLAN.LEARNING)![0] !== 0 : null,
    };
  }
  return {
    index: b.readInt32LE(4),
    name: cstrOf(a.get(IFLA.IFNAME)) ?? "",
    up: (b.readUInt32LE(8) & IFF_UP) !== 0,
    mtu: a.get(IFLA.MTU)?.readUInt32LE(0) ?? 0,
    mac: macOf(a.get(IFLA.ADDRESS)),
    kind,
    vxlan,
  };
}

export function parseAddr(m: NlMessage): Addr | null {
  const b = m.body;
  if (b.readUInt8(0) !== AF.INET) return null;
  const a = attrMap(b, 8);
  const address = ipv4Of(a.get(IFA.LOCAL)) ?? ipv4Of(a.get(IFA.ADDRESS));
  if (!address) return null;
  return { index: b.readUInt32LE(4), address, prefixLen: b.readUInt8(1), label: cstrOf(a.get(IFA.LABEL)) };
}

export function parseRoute(m: NlMessage): Route | null {
  const b = m.body;
  if (b.readUInt8(0) !== AF.INET) return null;
  const a = attrMap(b, 12);
  const metrics = a.get(RTA.METRICS);
  const mtu = metrics ? (attrMap(metrics, 0).get(RTAX_MTU)?.readUInt32LE(0) ?? null) : null;
  const net = ipv4Of(a.get(RTA.DST)) ?? "0.0.0.0";
  return {
    dst: `${net}/${b.readUInt8(1)}`,
    table: a.get(RTA.TABLE)?.readUInt32LE(0) ?? b.readUInt8(4),
    protocol: b.readUInt8(5),
    oif: a.get(RTA.OIF)?.readUInt32LE(0) ?? null,
    gateway: ipv4Of(a.get(RTA.GATEWAY)),
    mtu,
  };
}

export function parseNeighbour(m: NlMessage): Neighbour {
  const b = m.body;
  const a = attrMap(b, 12);
  return {
    family: b.readUInt8(0),
    index: b.readInt32LE(4),
    state: b.readUInt16LE(8),
    dst: ipv4Of(a.get(NDA.DST)),
    mac: macOf(a.get(NDA.LLADDR)),
  };
}

export const MAIN_TABLE = RT_TABLE_MAIN;

// --- ICMP echo (the tunnel probe) ---------------------------------------------------------------------------

function checksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
  if (b.length % 2) sum += b[b.length - 1]! << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

/** An ICMP echo request (type 8) with `id` and `seq` and 16 bytes of payload. */
export function echoRequest(id: number, seq: number): Buffer {
  const b = Buffer.alloc(8 + 16);
  b.writeUInt8(8, 0);
  b.writeUInt16BE(id & 0xffff, 4);
  b.writeUInt16BE(seq & 0xffff, 6);
  b.write("raven-tunnel-ping", 8, 16, "latin1");
  b.writeUInt16BE(checksum(b), 2);
  return b;
}

/** From a raw socket's datagram (IPv4 header + ICMP): the echo reply's id, seq and source, or null. */
export function parseEchoReply(packet: Buffer): { id: number; seq: number; from: string } | null {
  if (packet.length < 20 || packet[0]! >> 4 !== 4) return null;
  const ihl = (packet[0]! & 0x0f) * 4;
  if (packet.length < ihl + 8 || packet[9] !== 1 || packet[ihl] !== 0) return null;
  return {
    id: packet.readUInt16BE(ihl + 4),
    seq: packet.readUInt16BE(ihl + 6),
    from: `${packet[12]}.${packet[13]}.${packet[14]}.${packet[15]}`,
  };
}
