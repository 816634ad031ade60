// The rtnetlink codec as pure functions: request layout (header, fixed part, 4-byte aligned attributes,
// nested attributes flagged), the parsers against messages laid out as the kernel sends them, the closing
// ack/error with the kernel's own words, truncation, and the ICMP echo of the tunnel probe.
import { describe, expect, it } from "vitest";
import { NetlinkError, TunnelError } from "../../../shared/errors";
import {
  echoRequest,
  NLM_F,
  NLMSG,
  parseEchoReply,
  parseLink,
  parseRoute,
  repliesOf,
  requests,
  RTM,
  splitMessages,
} from "../../../lib/kernel/rtnetlink";

/** A reply message as the kernel lays it out: header (seq), then the body. */
function reply(type: number, flags: number, seq: number, body: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + body.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  h.writeUInt32LE(seq, 8);
  const pad = Buffer.alloc(((body.length + 3) & ~3) - body.length);
  return Buffer.concat([h, body, pad]);
}
const attr = (type: number, data: Buffer) => {
  const h = Buffer.alloc(4);
  h.writeUInt16LE(4 + data.length, 0);
  h.writeUInt16LE(type, 2);
  return Buffer.concat([h, data, Buffer.alloc(((data.length + 3) & ~3) - data.length)]);
};
const errorMsg = (seq: number, errno: number, text?: string) => {
  const body = Buffer.alloc(4 + 16);
  body.writeInt32LE(-errno, 0);
  return reply(
    NLMSG.ERROR,
    text ? NLM_F.ACK_TLVS : 0,
    seq,
    Buffer.concat([body, text ? attr(1, Buffer.from(`${text}\0`)) : Buffer.alloc(0)]),
  );
};

describe("rtnetlink requests", () => {
  it("lay out header, fixed part and aligned, nested attributes", () => {
    const m = requests
      .addVxlan({ name: "raven0", mac: "0e:52:c0:a8:00:03", mtu: 1450, vni: 200, port: 4472, local: "192.168.0.3" })
      .build(7);
    expect(m.readUInt32LE(0)).toBe(m.length);
    expect(m.readUInt16LE(4)).toBe(RTM.NEWLINK);
    expect(m.readUInt16LE(6)).toBe(NLM_F.REQUEST | NLM_F.ACK | NLM_F.CREATE | NLM_F.EXCL);
    expect(m.readUInt32LE(8)).toBe(7);
    expect(m.length % 4).toBe(0);
    // IFLA_IFNAME "raven0\0" (7 bytes, padded to 8) right after the 16-byte ifinfomsg.
    expect([m.readUInt16LE(32), m.readUInt16LE(34)]).toEqual([11, 3]);
    expect(m.subarray(36, 43).toString("latin1")).toBe("raven0\0");
    // The VXLAN port travels in network byte order: 4472 = 0x1178.
    expect(m.includes(Buffer.from([0x11, 0x78]))).toBe(true);
    // IFLA_LINKINFO is flagged nested.
    const at = m.indexOf(Buffer.from("vxlan\0", "latin1")) - 8;
    expect(m.readUInt16LE(at + 2)).toBe(18 | 0x8000);
  });

  it("are dumps or acknowledged changes, and refuse bad addresses before anything is sent", () => {
    expect(requests.routes().dump).toBe(true);
    expect(requests.routes().build(1).readUInt16LE(6)).toBe(NLM_F.REQUEST | NLM_F.DUMP);
    expect(requests.delRoute("10.0.0.0/24", 82).build(1).readUInt16LE(6) & NLM_F.ACK).toBe(NLM_F.ACK);
    expect(() => requests.replaceRoute({ dst: "10.0.0.0/33", via: null, oif: 2, mtu: 1400, protocol: 82 })).toThrow(
      TunnelError,
    );
    expect(() => requests.replaceNeighbour(2, "240.0.0.1", "zz:00:00:00:00:00")).toThrow(/not a MAC address/);
    expect(() => requests.replaceAddr(1, "10.0.0.256", 32)).toThrow(/not an IPv4 address/);
  });
});

describe("rtnetlink replies", () => {
  it("end at the ack or NLMSG_DONE, and a refusal names the request, errno and the kernel's words", () => {
    const link = Buffer.concat([Buffer.alloc(16), attr(3, Buffer.from("lo\0"))]);
    link.writeInt32LE(1, 4);
    link.writeUInt32LE(1, 8); // IFF_UP
    const dump = Buffer.concat([
      reply(RTM.NEWLINK, NLM_F.MULTI, 5, link),
      reply(NLMSG.DONE, NLM_F.MULTI, 5, Buffer.alloc(4)),
    ]);
    const [m] = repliesOf("dump links", dump);
    expect(parseLink(m!)).toMatchObject({ index: 1, name: "lo", up: true, kind: null, vxlan: null });
    expect(repliesOf("set link", errorMsg(9, 0))).toEqual([]);
    expect(() => repliesOf("replace address 10.0.0.1/32", errorMsg(9, 17, "Address already assigned"))).toThrow(
      NetlinkError,
    );
    expect(() => repliesOf("replace address 10.0.0.1/32", errorMsg(9, 17, "Address already assigned"))).toThrow(
      "replace address 10.0.0.1/32: EEXIST (Address already assigned)",
    );
    expect(() => repliesOf("delete route 10.0.0.0/24", errorMsg(9, 3))).toThrow(
      /^delete route 10\.0\.0\.0\/24: ESRCH$/,
    );
    expect(() =>
      repliesOf("dump routes", reply(RTM.NEWROUTE, NLM_F.MULTI | NLM_F.DUMP_INTR, 5, Buffer.alloc(12))),
    ).toThrow(/EINTR \(the dump was interrupted/);
  });

  it("refuses a message that overruns the reply", () => {
    const r = reply(RTM.NEWLINK, 0, 1, Buffer.alloc(16));
    r.writeUInt32LE(64, 0);
    expect(() => splitMessages(r)).toThrow(/overruns the 32-byte reply/);
  });

  it("parse a route with its gateway, device and MTU metric", () => {
    const rt = Buffer.alloc(12);
    rt.writeUInt8(2, 0); // AF_INET
    rt.writeUInt8(24, 1);
    rt.writeUInt8(254, 4);
    rt.writeUInt8(82, 5);
    const metrics = attr(2, Buffer.from([0x78, 0x05, 0, 0])); // RTAX_MTU 1400
    const body = Buffer.concat([
      rt,
      attr(1, Buffer.from([10, 244, 34, 0])),
      attr(4, Buffer.from([3, 0, 0, 0])),
      attr(5, Buffer.from([240, 168, 0, 1])),
      attr(8 | 0x8000, metrics),
    ]);
    expect(parseRoute(splitMessages(reply(RTM.NEWROUTE, 0, 1, body))[0]!)).toEqual({
      dst: "10.244.34.0/24",
      table: 254,
      protocol: 82,
      oif: 3,
      gateway: "240.168.0.1",
      mtu: 1400,
    });
  });
});

describe("ICMP echo", () => {
  it("builds a request whose checksum verifies, and reads a reply's id, sequence and source", () => {
    const req = echoRequest(0x1234, 7);
    let sum = 0;
    for (let i = 0; i < req.length; i += 2) sum += req.readUInt16BE(i);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    expect(sum).toBe(0xffff);
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip[9] = 1;
    ip.set([10, 244, 34, 0], 12);
    const echoReply = Buffer.from(req);
    echoReply[0] = 0;
    expect(parseEchoReply(Buffer.concat([ip, echoReply]))).toEqual({ id: 0x1234, seq: 7, from: "10.244.34.0" });
    expect(parseEchoReply(Buffer.concat([ip, req]))).toBeNull(); // a request, not a reply
    expect(parseEchoReply(Buffer.alloc(10))).toBeNull();
  });
});
